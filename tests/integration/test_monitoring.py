"""Monitoring (deploys/monitoring.py), checked as an operator would: Prometheus, Alertmanager and the
node exporters run where they should; every target Prometheus knows is up; the gateways' metrics
carry OpenFaaS's names and labels; the console's plots answer; a load spike fires
APIHighInvocationRate, whose webhook raises the function's replicas, which fall back to the
minimum once the load stops; `kubectl top nodes` answers.

Figures (reports/monitoring-figures.txt, also printed): the time from the alert firing in
Alertmanager to the new replicas answering; the gateway's CPU time per call with Prometheus
scraping it every few seconds and with Prometheus stopped.

Prometheus and Alertmanager listen on the K3S server's loopback only, so their APIs are read on
the server over SSH (curl), never from the test runner.
"""

from __future__ import annotations

import json
import shlex
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from edgefaas.deploy.gateways import gateway_hosts
from edgefaas.deploy.settings import setting
from tests.integration.conftest import REPO, Device
from tests.integration.support import wait_for

pytestmark = pytest.mark.lab

FIGURES = REPO / "reports" / "monitoring-figures.txt"
CODE = "def handle(event, context):\n    return 'ok'\n"
SCALE = {"com.openfaas.scale.min": "1", "com.openfaas.scale.max": "3", "com.openfaas.scale.factor": "34"}


def _figure(line: str) -> None:
    print(line)
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    with Path(FIGURES).open("a") as out:
        out.write(line + "\n")


def _local_api(server: Device, port_key: str, path: str) -> dict:
    port = int(setting(server, port_key))
    out = server.host.check_output(f"curl -fsS {shlex.quote(f'http://127.0.0.1:{port}{path}')}")
    return json.loads(out)


def prometheus(server: Device, path: str) -> dict:
    return _local_api(server, "monitoring_prometheus_port", path)


def query(server: Device, promql: str) -> list[dict]:
    from urllib.parse import quote

    return prometheus(server, f"/api/v1/query?query={quote(promql)}")["data"]["result"]


def firing(server: Device, function: str) -> list[dict]:
    alerts = _local_api(server, "monitoring_alertmanager_port", "/api/v2/alerts?active=true")
    return [
        a
        for a in alerts
        if a["labels"].get("alertname") == "APIHighInvocationRate"
        and a["labels"].get("function_name") == function
    ]


@pytest.mark.devices("k3s_server")
def test_prometheus_and_alertmanager_run_on_the_server_on_loopback(device):
    for unit in ("prometheus.service", "prometheus-alertmanager.service"):
        service = device.host.service(unit)
        assert service.is_running and service.is_enabled, unit
    assert device.host.socket("tcp://127.0.0.1:9090").is_listening
    assert not device.host.socket("tcp://0.0.0.0:9090").is_listening
    assert not device.host.socket("tcp://0.0.0.0:9094").is_listening, "Alertmanager must have no cluster port"
    for secret in ("/etc/prometheus/edgefaas-admin-password", "/etc/prometheus/k3s-token"):
        found = device.host.file(secret)
        assert found.exists and found.mode == 0o640 and found.group == "prometheus", secret


@pytest.mark.devices("k3s_agent")
def test_every_agent_runs_a_node_exporter_on_its_management_address(device):
    service = device.host.service("prometheus-node-exporter.service")
    assert service.is_running and service.is_enabled
    assert device.host.socket(f"tcp://{device.address}:9100").is_listening


def test_every_target_is_up(server, inventory):
    def states() -> dict[str, str]:
        targets = prometheus(server, "/api/v1/targets")["data"]["activeTargets"]
        return {
            f"{t['labels']['job']} {t['labels'].get('device')} {t['scrapeUrl']}": t["health"] for t in targets
        }

    wait_for(
        lambda: all(h == "up" for h in states().values()) and states(), 90, lambda: f"targets {states()}"
    )
    seen = states()
    jobs = {key.split()[0] for key in seen}
    assert {"edgefaas-gateway", "node", "triton", "k3s-apiserver", "k3s-kubelet", "k3s-cadvisor"} <= jobs, (
        seen
    )
    nodes = {h.name for h in inventory if "k3s_server" in h.groups or "k3s_agent" in h.groups}
    assert {key.split()[1] for key in seen if key.startswith("node ")} == nodes


@pytest.fixture(scope="module")
def public_function(admin):
    """A public function of this suite's own (no license needed to call it): its name."""
    name = f"mon-{uuid.uuid4().hex[:6]}"
    deployed = admin.post("/system/functions", json={"service": name, "code": CODE, "public": True})
    assert deployed.status_code == 202, deployed.text
    wait_for(lambda: _function(admin, name).get("availableReplicas", 0) >= 1, 180, f"{name} ready")
    yield name
    admin.request("DELETE", "/system/functions", json={"functionName": name})


def _function(admin, name: str) -> dict:
    return admin.get(f"/system/function/{name}").json()


def test_the_gateways_metrics_have_openfaas_names_and_labels(server, admin, inventory, public_function):
    namespace = _function(admin, public_function).get("namespace", "edgefaas-fn")
    full = f"{public_function}.{namespace}"
    for _ in range(5):
        assert admin.post(f"/function/{full}", content=b"x").status_code == 200

    def counted() -> list[dict]:
        return query(server, f'gateway_function_invocation_total{{function_name="{full}",code="200"}}')

    wait_for(counted, 60, f"gateway_function_invocation_total for {full}")
    for metric in (
        "gateway_functions_seconds_bucket",
        "gateway_service_count",
        "gateway_function_invocation_started",
    ):
        assert query(server, f'{metric}{{function_name="{full}"}}'), metric
    # Every gateway scraped: they all serve every function.
    scraped = {r["metric"]["device"] for r in query(server, 'up{job="edgefaas-gateway"} == 1')}
    assert scraped == {h.name for h in gateway_hosts(list(inventory))}


def test_the_console_plots_answer_from_prometheus(admin, inventory):
    panels = admin.get("/system/plots").json()
    assert panels["prometheus"] is True
    cpu = wait_for(
        lambda: admin.get("/system/plots/cpu", params={"minutes": 5}).json()["series"], 60, "cpu series"
    )
    nodes = {h.name for h in inventory if "k3s_server" in h.groups or "k3s_agent" in h.groups}
    assert {s["name"] for s in cpu} == nodes
    memory = admin.get("/system/plots/memory", params={"minutes": 5}).json()["series"]
    assert all(0 < p[1] <= 100 for s in memory for p in s["points"])
    for panel in ("calls", "latency", "triton_inferences", "triton_queue"):
        assert admin.get(f"/system/plots/{panel}").status_code == 200, panel


def _gateway_cpu_seconds(server: Device) -> float:
    # The process's own user + system time (/proc/PID/stat fields 14 and 15): systemd's
    # CPUUsageNSec is "[not set]" where CPU accounting is off (the lab's devices among them).
    out = server.host.check_output(
        "pid=$(systemctl show -p MainPID --value edgefaas-gateway.service); "
        "echo $(getconf CLK_TCK) $(cut -d' ' -f14,15 /proc/$pid/stat)"
    )
    ticks, user, system = (int(v) for v in out.split())
    return (user + system) / ticks


def test_a_load_spike_fires_the_alert_scales_up_and_falls_back(server, admin):
    name = f"spike-{uuid.uuid4().hex[:6]}"
    deployed = admin.post(
        "/system/functions", json={"service": name, "code": CODE, "labels": SCALE, "public": True}
    )
    assert deployed.status_code == 202, deployed.text
    stop = threading.Event()
    try:
        wait_for(
            lambda: admin.get(f"/system/function/{name}").json().get("availableReplicas", 0) >= 1,
            180,
            f"{name}",
        )
        namespace = admin.get(f"/system/function/{name}").json().get("namespace", "edgefaas-fn")
        threshold = float(setting(server, "monitoring_alert_threshold"))

        def load() -> None:
            with httpx.Client(
                base_url=str(admin.base_url), verify=admin.verify_tls, trust_env=False, timeout=30
            ) as c:
                while not stop.is_set():
                    c.post(f"/function/{name}", content=b"x")
                    time.sleep(1 / (4 * threshold))

        callers = [threading.Thread(target=load, daemon=True) for _ in range(4)]
        for caller in callers:
            caller.start()
        wait_for(
            lambda: firing(server, f"{name}.{namespace}"), 180, "APIHighInvocationRate firing in Alertmanager"
        )
        fired = time.monotonic()
        scaled = wait_for(
            lambda: (lambda f: f if f["replicas"] > 1 else None)(
                admin.get(f"/system/function/{name}").json()
            ),
            120,
            "replicas raised by the alert",
        )
        wait_for(
            lambda: admin.get(f"/system/function/{name}").json()["availableReplicas"] >= scaled["replicas"],
            180,
            "the new replicas answering",
        )
        took = time.monotonic() - fired
        window = setting(server, "monitoring_alert_window")
        _figure(
            f"scale-up: alert firing -> {scaled['replicas']} replicas answering in {took:.1f} s "
            f"(threshold {threshold:g}/s over {window})"
        )
        stop.set()
        for caller in callers:
            caller.join(30)
        wait_for(
            lambda: admin.get(f"/system/function/{name}").json()["replicas"] == 1, 300, "back to the minimum"
        )
    finally:
        stop.set()
        admin.request("DELETE", "/system/functions", json={"functionName": name})


def test_gateway_cpu_per_call_with_and_without_prometheus_scraping(server, admin, public_function):
    """A figure, not a threshold: the gateway's CPU time per call, Prometheus on and stopped."""
    calls = 300

    def per_call() -> float:
        before = _gateway_cpu_seconds(server)
        for _ in range(calls):
            assert admin.post(f"/function/{public_function}", content=b"x").status_code == 200
        return (_gateway_cpu_seconds(server) - before) / calls

    scraped = per_call()
    server.host.run("sudo systemctl stop prometheus.service")
    try:
        alone = per_call()
    finally:
        server.host.run("sudo systemctl start prometheus.service")
    interval = setting(server, "monitoring_scrape_interval")
    _figure(
        f"gateway CPU per call: {scraped * 1000:.2f} ms with Prometheus scraping every {interval}, "
        f"{alone * 1000:.2f} ms with it stopped ({calls} calls each)"
    )
    assert scraped > 0 and alone > 0
