"""EdgeFaaS checklist (SoW Task 3, deploys/edgefaas.py): the gateway on the K3S server, functions in pods.

    pytest -m lab tests/integration/test_edgefaas.py [--inventory inventories/mylab.py]

The gateway is called from the test runner through the switch's control-plane ACL, as a
user would; its admin password is read over SSH from its data directory, and the pods'
placement is checked with the Kubernetes API (the server's kubeconfig, as test_k3s.py).
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections import Counter
from typing import Any

import httpx
import pytest

from edgefaas.deploy import hosts
from edgefaas.deploy.gateways import database_plan, gateway_hosts
from tests.integration import fault_figures
from tests.integration.conftest import (
    GATEWAY_DATA_DIR,
    admin_password,
    connect,
    gateway_base,
    run_deploy,
    server_device,
)
from tests.integration.support import Callbacks, kubernetes_api, wait_for
from tests.openfaas_session import NEW_SECRET_VALUE, SECRET_VALUE, USER_AGENT, Session

kubernetes = pytest.importorskip("kubernetes")
from kubernetes import client as k8s  # noqa: E402

DATA_DIR = GATEWAY_DATA_DIR
NAMESPACE = "edgefaas-fn"
NAME_ANNOTATION = "edgefaas.io/function-name"
VERSION_ANNOTATION = "edgefaas.io/version"
CHAIN = ("FuncA", "FuncB", "FuncC")


@pytest.fixture(scope="module")
def caller(admin):
    """A fresh license on the standard plan and a client that calls functions with it."""
    answer = admin.post(
        "/system/licenses", json={"name": f"itest-{uuid.uuid4().hex[:8]}", "plan": "standard"}
    )
    assert answer.status_code == 201, answer.text
    license = answer.json()
    headers = {"Authorization": f"Bearer {license['token']}"}
    with httpx.Client(
        base_url=str(admin.base_url), headers=headers, timeout=60, trust_env=False, verify=admin.verify_tls
    ) as client:
        client.license_id = license["id"]  # type: ignore[attr-defined]
        client.verify_tls = admin.verify_tls  # type: ignore[attr-defined]
        yield client
    admin.delete(f"/system/licenses/{license['id']}")


@pytest.fixture(scope="module")
def api(inventory) -> k8s.CoreV1Api:
    return kubernetes_api(inventory)[0]


def _pods(api: k8s.CoreV1Api, function: str) -> list[Any]:
    """The function's pods that are running and not on their way out."""
    return [
        pod
        for pod in api.list_namespaced_pod(
            NAMESPACE, label_selector="app.kubernetes.io/managed-by=edgefaas"
        ).items
        if (pod.metadata.annotations or {}).get(NAME_ANNOTATION) == function
        and pod.status.phase == "Running"
        and not pod.metadata.deletion_timestamp
    ]


def _billed(admin: httpx.Client, license_id: str) -> Counter[str]:
    answer = admin.get("/system/billing", params={"license": license_id})
    assert answer.status_code == 200, answer.text
    return Counter({row["function"]: row["invocations"] for row in answer.json()["functions"]})


# -- the service ----------------------------------------------------------------------------------


@pytest.mark.devices("k3s_server")
def test_gateway_service_is_active_enabled_and_unprivileged(device):
    service = device.host.service("edgefaas-gateway")
    assert service.is_running, "edgefaas-gateway is not running"
    assert service.is_enabled, "edgefaas-gateway is not enabled"
    pid = service.systemd_properties.get("MainPID", "0")
    found = device.host.process.filter(pid=pid)
    assert found, f"edgefaas-gateway's main process (pid {pid}) is not running"
    owner, expected = str(found[0].user), device.data.get("edgefaas_user", "edgefaas")
    assert owner == expected, f"edgefaas-gateway runs as {owner}, not {expected}"
    mode = device.host.file(DATA_DIR).mode
    assert mode == 0o700, f"{DATA_DIR} has mode {mode:o}, not 700"
    mode = device.host.file(f"{DATA_DIR}/admin-password").mode
    assert mode == 0o600, f"{DATA_DIR}/admin-password has mode {mode:o}, not 600"


@pytest.mark.devices("k3s_server")
def test_gateway_uses_its_own_namespaced_kubernetes_account(device):
    """Not K3S's admin kubeconfig: an account that may run functions in one namespace, no more."""
    kubeconfig = device.host.file("/etc/edgefaas/gateway/kubeconfig")
    assert kubeconfig.user == "edgefaas" and kubeconfig.mode == 0o600
    assert "token:" in kubeconfig.content_string

    def can(verb: str, *args: str) -> str:
        result = device.host.run(
            f"kubectl --kubeconfig /etc/edgefaas/gateway/kubeconfig auth can-i {verb} {' '.join(args)}"
        )
        return result.stdout.strip()

    assert can("create", "deployments", "-n", NAMESPACE) == "yes"
    assert can("list", "nodes") == "yes"
    assert can("create", "deployments", "-n", "kube-system") == "no"
    # The functions' secrets (/system/secrets, as OpenFaaS's provider), and no other namespace's.
    assert can("create", "secrets", "-n", NAMESPACE) == "yes"
    assert can("get", "secrets", "-n", "kube-system") == "no"
    assert can("get", "secrets", "-n", "default") == "no"


def test_healthz_answers_through_the_control_plane_acl(admin):
    answer = httpx.get(f"{admin.base_url}/healthz", timeout=5, trust_env=False, verify=admin.verify_tls)
    assert answer.status_code == 200 and answer.text == "OK"


# -- Task 3.3: functions in pods on different devices, calling each other ------------------------


def test_funca_and_funcb_run_on_different_devices(api, inventory):
    placed = {
        name: wait_for(lambda n=name: _pods(api, n), 60, f"a running {name} pod", interval=0.5)
        for name in CHAIN
    }
    nodes = {name: {pod.spec.node_name for pod in pods} for name, pods in placed.items()}
    assert nodes["FuncA"].isdisjoint(nodes["FuncB"]), nodes
    profiles = {h.name: h.data.device_profile for h in inventory}
    assert {profiles[n] for n in nodes["FuncA"]} == {"sonic"}, nodes
    assert {profiles[n] for n in nodes["FuncB"]} == {"jetson"}, nodes


def test_the_chain_works_across_devices(caller, api):
    message = uuid.uuid4().hex
    answer = caller.post("/function/FuncA", json={"message": message})
    assert answer.status_code == 200, answer.text
    assert answer.headers["X-Call-Id"]
    a = answer.json()
    b, c = a["FuncB"], a["FuncB"]["FuncC"]
    assert (a["function"], b["function"], c["function"]) == CHAIN
    assert c["message"] == message  # FuncC's part, passed back up through FuncB and FuncA
    pods = {p.metadata.name: p.spec.node_name for name in CHAIN for p in _pods(api, name)}
    assert pods[a["host"]] != pods[b["host"]], f"FuncA and FuncB both answered from {pods[a['host']]}"


# -- the API lists (Demos 2 and 6) ----------------------------------------------------------------


def test_apis_lists_the_functions_with_descriptions(admin):
    answer = admin.get("/system/apis")
    assert answer.status_code == 200, answer.text
    apis = {entry["name"]: entry for entry in answer.json()}
    for name in (*CHAIN, "system_info"):
        assert name in apis, f"{name} not in /system/apis"
        assert apis[name]["route"] == f"/function/{name}"
        assert apis[name]["description"].strip(), f"{name} has no description"
    assert apis["FuncA"]["input_schema"]["properties"]["message"]["type"] == "string"


def test_nodes_lists_every_device_with_its_profile(admin, inventory):
    answer = admin.get("/system/nodes")
    assert answer.status_code == 200, answer.text
    nodes = {node["name"]: node for node in answer.json()}
    for host in inventory.get_group("k3s_server") + inventory.get_group("k3s_agent"):
        assert host.name in nodes, f"{host.name} is not in /system/nodes"
        node = nodes[host.name]
        assert node["profile"] == host.data.device_profile
        assert node["ready"] is True
        assert node["cpu"]["count"] > 0 and node["memory"]["total_bytes"] > 0
    placed = {name for node in nodes.values() for name in node["functions"]}
    assert set(CHAIN) <= placed


def test_nodes_show_their_k3s_role_and_certification_and_removals_say_why(admin, inventory):
    nodes = {node["name"]: node for node in admin.get("/system/nodes").json()}
    for host in inventory.get_group("k3s_server"):
        assert nodes[host.name]["role"] == "server"
    certifying = any(h.data.get("parsec_service") for h in inventory.get_group("k3s_agent"))
    for host in inventory.get_group("k3s_agent"):
        node = nodes[host.name]
        assert node["role"] == "agent"
        if certifying:  # deploys/nodeauth.py ran: every agent was certified, with when and which serial
            assert node["certification"]["state"] == "certified", node["certification"]
            assert node["certification"]["at"] and node["certification"]["serial"]
    removals = admin.get("/system/node-removals")
    assert removals.status_code == 200, removals.text
    for removal in removals.json():  # the node authentication suite leaves some behind in the lab
        assert removal["reason"].startswith("removed from the cluster: ") and removal["node"]


# -- billing and refusals -------------------------------------------------------------------------


def test_each_call_is_billed_exactly_once(admin, caller):
    """Three chain calls bill FuncA, FuncB and FuncC three times each: the nested calls included."""
    before = _billed(admin, caller.license_id)
    for _ in range(3):
        assert caller.post("/function/FuncA", json={"message": "bill"}).status_code == 200
    for _ in range(2):
        assert caller.post("/function/FuncC", json={"message": "bill"}).status_code == 200
    after = _billed(admin, caller.license_id)
    assert after - before == Counter({"FuncA": 3, "FuncB": 3, "FuncC": 5})


def test_a_forged_token_is_refused_and_not_billed(admin, caller):
    token = caller.headers["Authorization"].removeprefix("Bearer ")
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    before = _billed(admin, caller.license_id)
    answer = httpx.post(
        f"{admin.base_url}/function/FuncC",
        headers={"Authorization": f"Bearer {forged}"},
        trust_env=False,
        verify=admin.verify_tls,
    )
    assert answer.status_code == 403, answer.text
    unsigned = httpx.post(f"{admin.base_url}/function/FuncC", trust_env=False, verify=admin.verify_tls)
    assert unsigned.status_code == 401
    assert _billed(admin, caller.license_id) == before


def test_license_tokens_are_signed_by_a_key_that_lives_only_in_parsec(server, caller):
    """Tamper-proof licenses: The signing key is in Parsec, never in a file."""
    if server.data.get("edgefaas_license_signer") != "parsec":
        pytest.skip("this inventory's gateway signs licenses with HMAC (edgefaas_license_signer)")
    token = caller.headers["Authorization"].removeprefix("Bearer ")
    header = token.split(".")[0]  # a JWS compact token: the algorithm is in its JOSE header
    assert json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["alg"] == "ES256"
    with server.host.sudo("edgefaas"):
        keys = server.host.check_output("/opt/edgefaas/venv/bin/edgefaas parsec keys")
    assert "edgefaas-license" in keys, f"no edgefaas-license key in the gateway's Parsec keys:\n{keys}"
    # No HMAC key and no private key file beside the ledger.
    assert not server.host.file(f"{DATA_DIR}/license-key").exists, f"{DATA_DIR}/license-key exists"
    # The one key file there is the gateway's TLS key (made on the switch, certified by the CA):
    # it signs no license.
    listing = server.host.check_output(
        f"grep -rlI 'PRIVATE KEY' {DATA_DIR} /etc/edgefaas | grep -vx {DATA_DIR}/tls.key || true"
    )
    assert listing.strip() == "", f"private key files on the gateway's server:\n{listing}"


def test_a_token_edited_by_one_byte_is_refused_and_not_billed(admin, caller):
    token = caller.headers["Authorization"].removeprefix("Bearer ")
    claims = token.split(".")[1]
    index = len(claims) // 2
    swapped = "B" if claims[index] == "A" else "A"
    edited = token.replace(claims, claims[:index] + swapped + claims[index + 1 :])
    before = _billed(admin, caller.license_id)
    answer = httpx.post(
        f"{admin.base_url}/function/FuncC",
        headers={"Authorization": f"Bearer {edited}"},
        trust_env=False,
        verify=admin.verify_tls,
    )
    assert answer.status_code in (401, 403), answer.text
    assert _billed(admin, caller.license_id) == before


def test_an_unknown_function_is_404(caller):
    answer = caller.post(f"/function/NoSuch{uuid.uuid4().hex[:6]}", json={})
    assert answer.status_code == 404, answer.text


# -- Demo 5: an update under load ----------------------------------------------------------------


class Load:
    """A few threads calling FuncA (so FuncC, through the chain) until told to stop."""

    def __init__(self, base_url: str, headers: dict[str, str], verify: Any, threads: int = 4) -> None:
        self.base_url, self.headers, self.verify = base_url, headers, verify
        self.stop = threading.Event()
        self.ok = 0
        self.failures: list[str] = []
        self.revisions: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def run(self) -> None:
        with httpx.Client(
            base_url=self.base_url, headers=self.headers, timeout=30, trust_env=False, verify=self.verify
        ) as client:
            while not self.stop.is_set():
                try:
                    answer = client.post("/function/FuncA", json={"message": "load"})
                    if answer.status_code == 200:
                        revision = answer.json()["FuncB"]["FuncC"].get("revision", "original")
                        with self.lock:
                            self.ok += 1
                            self.revisions[revision] += 1
                    else:
                        with self.lock:
                            self.failures.append(f"{answer.status_code} {answer.text[:200]}")
                except httpx.HTTPError as exc:
                    with self.lock:
                        self.failures.append(f"{type(exc).__name__}: {exc}")


def test_an_update_under_steady_load_loses_no_call(admin, caller, api):
    """Demo 5: FuncC gets new code while four threads call FuncA -> FuncB -> FuncC; no call fails."""
    original = admin.get("/system/function/FuncC").json()
    source = _function_source(api)
    revision = uuid.uuid4().hex[:12]
    marked = source.replace('"message": str(message),', f'"message": str(message), "revision": "{revision}",')
    assert marked != source, "FuncC's source changed shape: update this test"
    body = {
        "service": "FuncC",
        "code": marked,
        "constraints": original["constraints"],
        "limits": original["limits"],
        "public": original["public"],
    }
    try:
        with Load(str(caller.base_url), dict(caller.headers), caller.verify_tls) as load:
            wait_for(lambda: load.ok >= 10, 30, "calls flowing before the update", interval=0.5)
            started = time.monotonic()
            answer = admin.put("/system/functions", json=body)
            rolled = time.monotonic() - started
            assert answer.status_code == 200, answer.text
            assert answer.json()["version"] == original["version"] + 1
            # Keep calling until every pod of the old version has left (preStop and drain included).
            wait_for(
                lambda: all(
                    (p.metadata.annotations or {}).get(VERSION_ANNOTATION) == str(original["version"] + 1)
                    for p in api.list_namespaced_pod(NAMESPACE).items
                    if (p.metadata.annotations or {}).get(NAME_ANNOTATION) == "FuncC"
                ),
                90,
                "the old FuncC pods to leave",
                interval=0.5,
            )
            time.sleep(1)
        print(f"rollout {rolled:.1f} s; {load.ok} calls, revisions {dict(load.revisions)}")
        assert not load.failures, (
            f"{len(load.failures)} failed of {load.ok + len(load.failures)}: {load.failures[:5]}"
        )
        assert load.revisions[revision] > 0, "no call reached the new version"
        assert load.ok >= 20
    finally:
        restore = {**body, "code": source}
        answer = admin.put("/system/functions", json=restore)
        assert answer.status_code == 200, answer.text


def _function_source(api) -> str:
    """FuncC's source as deployed (its code ConfigMap), the one the deploy will compare with."""
    pods = _pods(api, "FuncC")
    assert pods, "FuncC has no running pod"
    volumes = [v for v in pods[0].spec.volumes if v.name == "code"]
    assert volumes, f"{pods[0].metadata.name} has no volume named code"
    return api.read_namespaced_config_map(volumes[0].config_map.name, NAMESPACE).data["handler.py"]


# -- gateways on every switch, sharing their state ------------------------------------------------

SLEEPER = """
import time


def handle(event, context):
    data = event.json(default={}) or {}
    time.sleep(float(data.get("seconds", 1)))
    return {"call_id": context.call_id, "host": context.hostname}
"""


@pytest.fixture(scope="module")
def gateways(inventory, admin, port) -> list[httpx.Client]:
    """An admin client of every gateway (the first is `admin`'s), or a skip where there is one."""
    found = gateway_hosts(inventory)
    if len(found) < 2:
        pytest.skip(f"{len(found)} gateway host(s) in this inventory: nothing is shared")
    password = admin_password(server_device(inventory))
    clients = [
        httpx.Client(
            base_url=gateway_base(server_device(inventory), hosts.address(g), port),
            auth=("admin", password),
            timeout=60,
            trust_env=False,
            verify=admin.verify_tls,
        )
        for g in found
    ]
    for client in clients:
        client.verify_tls = admin.verify_tls  # type: ignore[attr-defined]
    yield clients
    for client in clients:
        client.close()


def _callers(gateways: list[httpx.Client], token: str) -> list[httpx.Client]:
    return [
        httpx.Client(
            base_url=str(g.base_url),
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
            trust_env=False,
            verify=g.verify_tls,
        )
        for g in gateways
    ]


def test_every_gateway_gives_the_same_answers(gateways, caller):
    """Active-active: functions, plans, a license made through one, its billing: the same on each."""
    seen = []
    for gateway in gateways:
        functions = {f["name"]: f["version"] for f in gateway.get("/system/functions").json()}
        plans = sorted(p["name"] for p in gateway.get("/system/plans").json())
        seen.append((functions, plans))
    assert all(view == seen[0] for view in seen), f"gateways disagree: {seen}"
    token = caller.headers["Authorization"].removeprefix("Bearer ")
    for client in _callers(gateways, token):
        with client:
            answer = client.post("/function/FuncC", json={"message": "any gateway"})
            assert answer.status_code == 200, f"{client.base_url}: {answer.status_code} {answer.text}"
    bills = [_billed(g, caller.license_id) for g in gateways]
    assert all(bill == bills[0] for bill in bills), f"gateways bill differently: {bills}"


def test_a_call_retried_through_the_other_gateway_runs_and_is_billed_once(gateways, admin):
    """16 callers; every call is sent to one gateway and retried, same X-Call-Id, through the other."""
    answer = admin.post(
        "/system/licenses", json={"name": f"itest-{uuid.uuid4().hex[:8]}", "plan": "standard"}
    )
    assert answer.status_code == 201, answer.text
    license = answer.json()
    callers = _callers(gateways, license["token"])
    mismatches: list[str] = []
    keys: list[str] = []
    lock = threading.Lock()

    def user(number: int) -> None:
        for _ in range(5):
            key = uuid.uuid4().hex
            first, retry = callers[number % 2], callers[(number + 1) % 2]
            answers = [
                c.post("/function/FuncC", json={"message": key}, headers={"X-Call-Id": key})
                for c in (first, retry)
            ]
            with lock:
                keys.append(key)
                if [a.status_code for a in answers] != [200, 200] or answers[0].json() != answers[1].json():
                    mismatches.append(f"{key}: {[(a.status_code, a.text[:120]) for a in answers]}")
                elif answers[1].headers.get("X-Call-Id") != key:
                    mismatches.append(
                        f"{key}: the retry answered X-Call-Id {answers[1].headers.get('X-Call-Id')}"
                    )

    try:
        threads = [threading.Thread(target=user, args=(n,)) for n in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        assert not mismatches, f"{len(mismatches)} of {len(keys)} retries differ: {mismatches[:5]}"
        billed = _billed(admin, license["id"])
        assert billed["FuncC"] == len(keys), f"{len(keys)} calls, each retried once, billed {billed['FuncC']}"
    finally:
        for client in callers:
            client.close()
        admin.delete(f"/system/licenses/{license['id']}")


def test_queued_async_calls_all_complete_after_a_gateway_is_killed(gateways, admin, caller, inventory):
    """Calls queued through the first gateway, which is then SIGKILLed: every one completes, once."""
    name = f"itest-sleep-{uuid.uuid4().hex[:6]}"
    deployed = admin.post("/system/functions", json={"service": name, "code": SLEEPER, "public": False})
    assert deployed.status_code in (200, 201, 202), deployed.text
    first = server_device(inventory)
    callbacks = Callbacks(first.address)
    try:
        wait_for(
            lambda: caller.post(f"/function/{name}", json={"seconds": 0}).status_code == 200,
            120,
            f"{name} to answer",
            interval=1,
        )
        before = _billed(admin, caller.license_id)[name]
        sent = []
        for _ in range(24):
            key = uuid.uuid4().hex
            answer = caller.post(
                f"/async-function/{name}",
                json={"seconds": 1},
                headers={"X-Call-Id": key, "X-Callback-Url": callbacks.url},
            )
            assert answer.status_code == 202, answer.text
            assert answer.headers.get("X-Call-Id") == key
            sent.append(key)
        killed = time.monotonic()
        first.host.run("sudo systemctl kill --signal=SIGKILL edgefaas-gateway.service")
        admin_after_restart(admin)
        restarted = time.monotonic() - killed
        wait_for(
            lambda: set(sent) <= set(callbacks.received),
            180,
            lambda: f"callbacks of {len(set(sent) - set(callbacks.received))} of {len(sent)} queued calls",
            interval=1,
        )
        doubled = {k: n for k, n in callbacks.received.items() if n > 1}
        print(f"{len(sent)} queued, {len(callbacks.received)} called back, repeated callbacks {doubled}")
        billed = _billed(admin_after_restart(admin), caller.license_id)[name] - before
        fault_figures.record(
            "gateway SIGKILL (queued async calls)",
            calls=len(sent),
            failed=0,
            lost=len(set(sent) - set(callbacks.received)),
            billing_errors=abs(billed - len(sent)),
            recover_s=restarted,
            detail=f"{sum(n > 1 for n in callbacks.received.values())} repeated callbacks",
        )
        assert billed == len(sent), f"{len(sent)} async calls, billed {billed}"
    finally:
        callbacks.close()
        admin_after_restart(admin).request("DELETE", "/system/functions", json={"functionName": name})


def admin_after_restart(admin: httpx.Client) -> httpx.Client:
    """`admin`, once its gateway answers again (systemd restarts a killed gateway)."""
    wait_for(lambda: _healthy(admin), 60, f"{admin.base_url} to answer after its restart", interval=0.5)
    return admin


def _healthy(client: httpx.Client) -> bool:
    try:
        return client.get("/healthz").status_code == 200
    except httpx.HTTPError:
        return False


def test_the_database_restarted_under_load_loses_no_billed_call(gateways, admin, inventory):
    """PostgreSQL restarted while 8 callers call through both gateways and retry with their keys."""
    plan = database_plan(server_device(inventory), list(inventory))
    if plan.host is None:
        pytest.skip("the gateways' database is not deployed by this inventory")
    database = connect(plan.host.name, plan.host.data, plan.host.groups)
    answer = admin.post(
        "/system/licenses", json={"name": f"itest-{uuid.uuid4().hex[:8]}", "plan": "standard"}
    )
    assert answer.status_code == 201, answer.text
    license = answer.json()
    callers = _callers(gateways, license["token"])
    stop = threading.Event()
    done: list[str] = []
    refused: Counter[str] = Counter()
    lock = threading.Lock()

    def user(number: int) -> None:
        while not stop.is_set():
            key = uuid.uuid4().hex
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                try:
                    got = callers[number % 2].post("/function/FuncC", json={}, headers={"X-Call-Id": key})
                except httpx.HTTPError as exc:
                    got = None
                    with lock:
                        refused[type(exc).__name__] += 1
                if got is not None and got.status_code == 200:
                    with lock:
                        done.append(key)
                    break
                if got is not None:
                    with lock:
                        refused[f"{got.status_code} {got.json().get('message', '')[:60]}"] += 1
                time.sleep(0.2)

    threads = [threading.Thread(target=user, args=(n,)) for n in range(8)]
    try:
        for thread in threads:
            thread.start()
        wait_for(lambda: len(done) >= 20, 60, "calls flowing before the restart", interval=0.5)
        restarted = database.host.run("sudo systemctl restart postgresql")
        assert restarted.rc == 0, restarted.stderr
        count = len(done)
        wait_for(lambda: len(done) >= count + 20, 90, "calls flowing after the restart", interval=0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
        for client in callers:
            client.close()
    print(f"{len(done)} calls succeeded; refused on the way: {dict(refused)}")
    assert all(code.startswith("503") for code in refused if code[0].isdigit()), f"not 503: {dict(refused)}"
    billed = _billed(admin, license["id"])["FuncC"]
    assert billed == len(done) == len(set(done)), f"{len(done)} calls succeeded, {billed} billed"
    admin.delete(f"/system/licenses/{license['id']}")


# -- the deploy ----------------------------------------------------------------------------------


def test_an_openfaas_cli_session_works_and_its_secret_shows_nowhere(admin, server):
    """faas-cli's requests, in its order (tests/openfaas_session.py), against the site's gateway on
    K3S: the secret is a Kubernetes Secret mounted at /var/openfaas/secrets/<name>; its value is in
    no answer, in no log line of the function, and nowhere in the gateway's journal."""
    suffix = uuid.uuid4().hex[:6]
    licenses: list[str] = []

    def token() -> str:
        made = admin.post("/system/licenses", json={"name": f"itest-cli-{suffix}", "plan": "standard"})
        assert made.status_code == 201, made.text
        licenses.append(made.json()["id"])
        return made.json()["token"]

    since = server.host.check_output("date '+%Y-%m-%d %H:%M:%S'")  # journalctl reads local time
    with httpx.Client(
        base_url=str(admin.base_url),
        auth=admin.auth,
        headers={"User-Agent": USER_AGENT},
        timeout=60,
        trust_env=False,
        verify=admin.verify_tls,
    ) as cli:
        names = {"function": f"cli-{suffix}", "secret": f"cli-{suffix}-key"}
        session = Session(cli, NAMESPACE, "kubernetes", token, **names, ready_s=120)
        try:
            session.run()
        finally:
            cli.request("DELETE", "/system/functions", json={"functionName": session.function})
            for secret in (session.secret, session.file_secret):
                cli.request("DELETE", "/system/secrets", json={"name": secret})
            for license_id in licenses:
                admin.delete(f"/system/licenses/{license_id}")
    journal = server.host.check_output(f"journalctl -u edgefaas-gateway --since '{since}' --no-pager -o cat")
    for value in (SECRET_VALUE, NEW_SECRET_VALUE):
        assert value not in journal, "the gateway's journal shows the secret's value"


def test_redeploy_changes_nothing(inventory_path, admin):
    """Idempotence: with nothing new, a second run changes nothing, functions included."""
    before = {f["name"]: f["version"] for f in admin.get("/system/functions").json()}
    run = run_deploy(inventory_path, "deploys/edgefaas.py", timeout=300)
    assert run.returncode == 0, run.output[-3000:]
    assert run.operations and run.changed_nothing, f"the re-run changed something:\n{run.describe()}"
    after = {f["name"]: f["version"] for f in admin.get("/system/functions").json()}
    assert after == before, f"function versions went from {before} to {after}"
