"""The local backend for real: FuncA -> FuncB -> FuncC as processes behind a live gateway.

The gateway runs under uvicorn on a free loopback port (in a thread, or as a process for
the SIGKILL test); each function is a runtime process the backend supervises.
"""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from edgefaas.backends.base import FunctionSpec
from edgefaas.backends.local import LocalBackend
from edgefaas.gateway.ledger import SqliteLedger
from tests.unit.live_gateway import LiveGateway, free_port

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = ROOT / "functions"
ADMIN = ("admin", "local-test")
HOST = os.uname().nodename


def _code(name: str) -> str:
    return (FUNCTIONS / f"{name}.py").read_text()


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    gateway = LiveGateway(tmp_path_factory.mktemp("gateway"), ADMIN[1])
    for name in ("FuncC", "FuncB", "FuncA"):
        answer = gateway.admin.post("/system/functions", json={"service": name, "code": _code(name)})
        assert answer.status_code == 202, answer.text
    license = gateway.admin.post("/system/licenses", json={"name": "chain", "plan": "standard"}).json()
    gateway.license_id, gateway.token = license["id"], license["token"]
    yield gateway
    gateway.stop()


def _call_a(client: httpx.Client, token: str, message: str = "hi") -> httpx.Response:
    return client.post(
        "/function/FuncA", json={"message": message}, headers={"Authorization": f"Bearer {token}"}
    )


def test_funca_reaches_funcc_through_the_gateway(live):
    with httpx.Client(base_url=live.url, timeout=30) as client:
        answer = _call_a(client, live.token, "across pods")
    assert answer.status_code == 200, answer.text
    chain = answer.json()
    assert chain["function"] == "FuncA" and chain["host"] == HOST
    assert chain["FuncB"]["function"] == "FuncB"
    assert chain["FuncB"]["FuncC"] == {
        "function": "FuncC",
        "host": HOST,
        "call_id": chain["FuncB"]["FuncC"]["call_id"],
        "message": "across pods",
    }
    assert chain["call_id"] == answer.headers["x-call-id"]
    # Each hop was billed to the caller's license, with the hop above as its parent.
    bill = live.admin.get("/system/billing", params={"license": live.license_id, "detail": "calls"}).json()
    by_id = {c["call_id"]: c for c in bill["calls"]}
    a = by_id[chain["call_id"]]
    b = by_id[chain["FuncB"]["call_id"]]
    c = by_id[chain["FuncB"]["FuncC"]["call_id"]]
    assert (a["function"], b["function"], c["function"]) == ("FuncA", "FuncB", "FuncC")
    assert b["parent_call_id"] == a["call_id"] and c["parent_call_id"] == b["call_id"]


def test_updating_funcb_under_steady_load_fails_no_call(live):
    new_code = _code("FuncB").replace('"host": context.hostname,', '"host": context.hostname, "revision": 2,')
    assert new_code != _code("FuncB")
    old_pid = live.backend._functions["FuncB"].replicas[0].process.pid
    results: list[tuple[int, bool]] = []
    stop = threading.Event()

    def load():
        with httpx.Client(base_url=live.url, timeout=30) as client:
            while not stop.is_set():
                try:
                    answer = _call_a(client, live.token)
                    results.append((answer.status_code, answer.json().get("FuncB", {}).get("revision") == 2))
                except (httpx.HTTPError, ValueError) as exc:
                    results.append((0, False))
                    print("failed call:", exc)

    workers = [threading.Thread(target=load) for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        _wait_for(lambda: len(results) >= 20, "calls before the update")
        started = time.monotonic()
        update = live.admin.put("/system/functions", json={"service": "FuncB", "code": new_code})
        rollout = time.monotonic() - started
        assert update.status_code == 200, update.text
        assert update.json()["version"] == 2
        _wait_for(lambda: sum(new for _, new in results) >= 20, "calls answered by the new FuncB")
        _wait_for(lambda: not _alive(old_pid), "the old FuncB to drain and exit")
    finally:
        stop.set()
        for worker in workers:
            worker.join(30)
    failed = [status for status, _ in results if status != 200]
    assert failed == [], f"{len(failed)} of {len(results)} calls failed during the rollout"
    print(f"rollout {rollout:.2f}s, {len(results)} calls, none failed")


def test_code_that_fails_at_import_is_refused_and_the_old_version_keeps_serving(live):
    broken = "import no_such_module_here\n\ndef handle(event, context):\n    return {}\n"
    answer = live.admin.put("/system/functions", json={"service": "FuncC", "code": broken})
    assert answer.status_code == 400
    assert (
        "exited with status 3" in answer.json()["error"] and "no_such_module_here" in answer.json()["error"]
    )
    with httpx.Client(base_url=live.url, timeout=30) as client:
        assert _call_a(client, live.token).status_code == 200
    assert live.admin.get("/system/function/FuncC").json()["version"] == 1


def test_a_killed_function_is_restarted_and_calls_wait_for_it(live):
    pid = live.backend._functions["FuncC"].replicas[0].process.pid
    os.kill(pid, signal.SIGKILL)
    with httpx.Client(base_url=live.url, timeout=30) as client:
        answer = _call_a(client, live.token)
    assert answer.status_code == 200, answer.text
    status = live.admin.get("/system/function/FuncC").json()
    assert status["restarts"] >= 1 and status["availableReplicas"] == 1


def test_a_function_scaled_to_zero_wakes_for_a_call(live):
    scaled = live.admin.post("/system/scale-function/FuncC", json={"replicas": 0})
    assert scaled.status_code == 202 and scaled.json()["availableReplicas"] == 0
    with httpx.Client(base_url=live.url, timeout=30) as client:
        assert _call_a(client, live.token).status_code == 200
    status = live.admin.get("/system/function/FuncC").json()
    assert status["replicas"] == 1 and status["availableReplicas"] == 1


def test_nodes_and_apis_describe_this_machine_and_the_functions(live):
    (node,) = live.admin.get("/system/nodes").json()
    assert node["name"] == HOST and node["ready"] is True
    assert node["functions"] == ["FuncA", "FuncB", "FuncC"]
    assert node["memory"]["total_bytes"] > 0 and node["cpu"]["count"] >= 1
    assert node["labels"]["kubernetes.io/hostname"] == HOST
    apis = {api["name"]: api for api in live.admin.get("/system/apis").json()}
    assert apis["FuncA"]["description"].startswith("FuncA: the head of the chain")
    assert apis["FuncA"]["output_schema"]["required"] == ["function", "host", "call_id", "FuncB"]
    logs = live.admin.get("/system/logs", params={"name": "FuncA", "tail": 5})
    assert logs.status_code == 200 and "FuncA" in logs.text


def test_constraints_that_no_node_meets_and_images_are_refused(live):
    placed = {"service": "Nowhere", "code": _code("FuncC"), "constraints": ["edgefaas.io/profile=mars-rover"]}
    answer = live.admin.post("/system/functions", json=placed)
    assert (
        answer.status_code == 400
        and "no node satisfies constraint edgefaas.io/profile=mars-rover" in answer.text
    )
    image = live.admin.post("/system/functions", json={"service": "Img", "image": "example/img:1"})
    assert image.status_code == 400 and "kubernetes" in image.json()["error"]


def test_the_backend_stops_its_processes_and_restores_them(tmp_path):
    spec = FunctionSpec(name="sysinfo", code=_code("system_info"), public=True)
    first = LocalBackend(tmp_path, drain_delay=0)
    first.start()
    try:
        first.deploy(spec)
        pid = first._functions["sysinfo"].replicas[0].process.pid
        info = httpx.get(first.endpoint("sysinfo"), timeout=10).json()
        assert info["name"] == HOST and "memory" in info and "gpus" in info
    finally:
        first.close()
    assert not _alive(pid)
    second = LocalBackend(tmp_path, drain_delay=0)
    second.start()
    try:
        restored = second.get("sysinfo")
        assert restored.available_replicas == 1 and restored.spec.public is True
        assert httpx.get(second.endpoint("sysinfo"), timeout=10).status_code == 200
        second.scale("sysinfo", 2)
        assert second.get("sysinfo").available_replicas == 2
        assert len({second.endpoint("sysinfo") for _ in range(4)}) == 2  # round robin over both
    finally:
        second.close()


def test_functions_get_their_env_vars_but_not_the_gateways_secrets(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEFAAS_ADMIN_PASSWORD", "secret")
    code = "import os\n\ndef handle(event, context):\n    return dict(os.environ)\n"
    backend = LocalBackend(tmp_path, drain_delay=0)
    backend.start()
    try:
        backend.deploy(FunctionSpec(name="env", code=code, env_vars={"MODEL": "resnet"}))
        seen = httpx.get(backend.endpoint("env"), timeout=10).json()
    finally:
        backend.close()
    assert seen["MODEL"] == "resnet" and seen["EDGEFAAS_FUNCTION_NAME"] == "env"
    assert "EDGEFAAS_ADMIN_PASSWORD" not in seen


ECHO = 'def handle(event, context):\n    return {"ok": True}\n'


def test_answered_calls_survive_a_gateway_sigkill(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    gateway_main = "from edgefaas.gateway.cli import gateway; gateway()"
    options = {"--backend": "local", "--host": "127.0.0.1", "--port": str(port), "--data-dir": str(tmp_path),
               "--admin-password": "pw", "--log-level": "warning"}  # fmt: skip
    command = [sys.executable, "-c", gateway_main, *(part for pair in options.items() for part in pair)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: _answers(url + "/healthz"), "the gateway to listen", timeout=20)
        deployed = httpx.post(url + "/system/functions", auth=("admin", "pw"), timeout=30,
                              json={"service": "Echo", "code": ECHO, "public": True})  # fmt: skip
        assert deployed.status_code == 202, deployed.text
        answered: list[str] = []

        def load():
            with httpx.Client(base_url=url, timeout=10) as client:
                while True:
                    try:
                        answer = client.post("/function/Echo")
                    except httpx.HTTPError:
                        return  # the gateway is gone
                    if answer.status_code == 200:
                        answered.append(answer.headers["x-call-id"])

        workers = [threading.Thread(target=load) for _ in range(4)]
        for worker in workers:
            worker.start()
        _wait_for(lambda: len(answered) >= 150, "calls to be answered")
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
        for worker in workers:
            worker.join(15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    ledger = SqliteLedger(tmp_path / "gateway.db")
    try:
        billed = {entry.call_id for entry in ledger.entries("public")}
    finally:
        ledger.close()
    missing = set(answered) - billed
    assert not missing, f"{len(missing)} of {len(answered)} answered calls are not in the ledger"
    # Orphaned function processes notice the gateway is gone and exit by themselves.
    _wait_for(lambda: not _processes_under(tmp_path), "the orphaned function to exit", timeout=10)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[-1][0] != "Z"
    except OSError:
        return False


def _processes_under(folder: Path) -> list[int]:
    """Runtime processes whose command line names a file in ``folder`` (the ones this test made)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if "edgefaas.runtime" in cmdline and str(folder) in cmdline and _alive(int(entry.name)):
                found.append(int(entry.name))
    return found


def _wait_for(condition, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
