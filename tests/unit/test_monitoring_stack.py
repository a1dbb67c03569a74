"""Monitoring with real parts: Debian's Prometheus scrapes a real gateway over HTTPS (verified by a CA
file, from the scrape configuration deploys/monitoring.py installs), the gateway's /system/plots
reads the console's panels back from it, and Alertmanager (with the deploy's rule and receiver)
fires APIHighInvocationRate into the gateway's /system/alert under load, which scales the
function up, and back down when the load stops.
"""

from __future__ import annotations

import ssl
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml

from edgefaas.gateway.plots import PANELS

from .live_gateway import LiveGateway, free_port
from .prometheus_server import alertmanager, binary, loopback_ca, prometheus, render, targets_up, wait_for

pytestmark = pytest.mark.unit

PASSWORD = "monitoring-test-password"
NAMESPACE = "local"
CODE = "def handle(event, context):\n    return 'ok'\n"


def scrape_config(gateway: LiveGateway, ca: Path, **overrides: object) -> str:
    """templates/monitoring/prometheus.yml.j2 for one gateway, scraped every second."""
    values: dict[str, object] = {
        "scrape_interval": "1s",
        "evaluation_interval": "1s",
        "rule_file": "rules.yml",
        "alertmanager": "127.0.0.1:1",
        "gateway_scheme": "https",
        "ca_file": str(ca),
        "metrics_password_file": "",
        "gateways": [{"name": "sonic-1", "address": "127.0.0.1", "port": gateway.port}],
        "nodes": [],
        "tritons": [],
        "kube_token_file": "",
    }
    values.update(overrides)
    return render("prometheus.yml.j2", **values)


@pytest.fixture
def tls(tmp_path):
    return loopback_ca(tmp_path / "tls")


def _deploy(gateway: LiveGateway, name: str, labels: dict[str, str] | None = None) -> None:
    answer = gateway.admin.post(
        "/system/functions", json={"service": name, "code": CODE, "labels": labels or {}, "public": True}
    )
    assert answer.status_code == 202, answer.text
    wait_for(lambda: gateway.functions()[name]["availableReplicas"] >= 1, 30, f"{name} ready")


def test_the_deploys_templates_are_what_prometheus_and_alertmanager_accept(tmp_path):
    """promtool and amtool (Debian's, beside the servers) check the rendered files."""
    rules = render("alert-rules.yml.j2", threshold=5, window="10s", hold="5s")
    assert yaml.safe_load(rules)["groups"][0]["rules"][0]["alert"] == "APIHighInvocationRate"
    (tmp_path / "rules.yml").write_text(rules)
    checked = subprocess.run(
        [binary("promtool"), "check", "rules", str(tmp_path / "rules.yml")], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    (tmp_path / "password").write_text("x\n")
    (tmp_path / "ca.pem").write_text("")
    config = render(
        "alertmanager.yml.j2",
        group_wait="5s",
        group_interval="10s",
        repeat_interval="30s",
        webhook_url="https://10.0.0.1:8080/system/alert",
        password_file=str(tmp_path / "password"),
        ca_file=str(tmp_path / "ca.pem"),
    )
    (tmp_path / "alertmanager.yml").write_text(config)
    checked = subprocess.run(
        [binary("amtool"), "check-config", str(tmp_path / "alertmanager.yml")], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # Every kind of target the site has, the K3S jobs with their token and CA.
    full = render(
        "prometheus.yml.j2",
        scrape_interval="15s",
        evaluation_interval="15s",
        rule_file=str(tmp_path / "rules.yml"),
        alertmanager="127.0.0.1:9093",
        gateway_scheme="https",
        ca_file=str(tmp_path / "ca.pem"),
        metrics_password_file=str(tmp_path / "password"),
        gateways=[{"name": "sonic-1", "address": "10.0.0.1", "port": 8080}],
        nodes=[
            {"name": "sonic-1", "address": "10.0.0.1", "port": 9100},
            {"name": "jetson-1", "address": "10.0.0.3", "port": 9100},
        ],
        tritons=[{"name": "jetson-1", "address": "10.0.0.3", "port": 8002}],
        kube_token_file=str(tmp_path / "password"),
        kube_ca_file=str(tmp_path / "ca.pem"),
        kube_api="127.0.0.1:6443",
        kube_server_name="sonic-1",
        kubelets=[{"name": "sonic-1", "address": "10.0.0.1", "port": 10250}],
    )
    (tmp_path / "prometheus.yml").write_text(full)
    checked = subprocess.run(
        [binary("promtool"), "check", "config", "--syntax-only", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    jobs = {job["job_name"] for job in yaml.safe_load(full)["scrape_configs"]}
    assert jobs == {"edgefaas-gateway", "node", "triton", "k3s-apiserver", "k3s-kubelet", "k3s-cadvisor"}


def test_plots_read_the_gateways_metrics_back_from_a_real_prometheus(tmp_path, tls):
    ca, cert, key = tls
    prometheus_port = free_port()
    gateway = LiveGateway(
        tmp_path / "gw",
        PASSWORD,
        tls=(cert, key),
        ca=ca,
        prometheus_url=f"http://127.0.0.1:{prometheus_port}",
    )
    try:
        _deploy(gateway, "hello")
        with prometheus(tmp_path / "prom", prometheus_port, scrape_config(gateway, ca)) as url:
            scrape = f"https://127.0.0.1:{gateway.port}/metrics"
            wait_for(lambda: targets_up(url).get(scrape) == "up", 30, "the gateway scraped over HTTPS")
            for _ in range(20):
                assert gateway.admin.post("/function/hello", content=b"x").status_code == 200
            # The metric under OpenFaaS's name and labels, as Prometheus holds it.
            query = f'gateway_function_invocation_total{{function_name="hello.{NAMESPACE}",code="200"}}'

            def counted() -> float:
                found = httpx.get(f"{url}/api/v1/query", params={"query": query}, trust_env=False).json()
                return sum(float(r["value"][1]) for r in found["data"]["result"])

            wait_for(lambda: counted() >= 20, 30, "20 calls counted in Prometheus")

            def calls_plotted() -> dict | None:
                # A counter's first sample is where its series starts, not an increase: calls must
                # go on between scrapes for the rate to show them.
                for _ in range(5):
                    gateway.admin.post("/function/hello", content=b"x")
                answer = gateway.admin.get("/system/plots/calls", params={"minutes": 5, "step": 5})
                assert answer.status_code == 200, answer.text
                body = answer.json()
                lines = {s["name"]: s for s in body["series"]}
                line = lines.get(f"hello.{NAMESPACE}")
                return body if line and any(v > 0 for _, v in line["points"]) else None

            body = wait_for(calls_plotted, 30, "calls plotted for hello")
            assert body["unit"] == "calls/s" and body["step"] == 5
            assert body["query"] == PANELS["calls"].query.format(window="60s")

            latency = gateway.admin.get("/system/plots/latency", params={"minutes": 5}).json()
            (line,) = [s for s in latency["series"] if s["name"] == f"hello.{NAMESPACE}"]
            assert line["points"] and all(0 < v < 60 for _, v in line["points"])
            listed = gateway.admin.get("/system/plots").json()
            assert listed["prometheus"] is True and {p["panel"] for p in listed["panels"]} == set(PANELS)
            # Panels whose exporters are not here answer with no series, not an error.
            for panel in ("cpu", "memory", "triton_inferences", "triton_queue"):
                answer = gateway.admin.get(f"/system/plots/{panel}")
                assert answer.status_code == 200 and answer.json()["series"] == [], (panel, answer.text)

        # Prometheus gone: a reason and a retry, never a 500.
        gone = gateway.admin.get("/system/plots/calls")
        assert gone.status_code == 503 and "cannot be reached" in gone.json()["error"]
    finally:
        gateway.stop()


def test_plots_refuse_what_is_not_a_panel_and_need_the_admin(tmp_path):
    gateway = LiveGateway(tmp_path / "gw", PASSWORD, prometheus_url=f"http://127.0.0.1:{free_port()}")
    plain = LiveGateway(tmp_path / "plain", PASSWORD)
    try:
        cases = [
            ("/system/plots/calls", {"minutes": "0"}, 400, "minutes"),
            ("/system/plots/calls", {"minutes": "x"}, 400, "minutes"),
            ("/system/plots/calls", {"minutes": "1441"}, 400, "minutes"),
            ("/system/plots/calls", {"step": "1"}, 400, "step"),
            ("/system/plots/calls", {"minutes": "1440", "step": "5"}, 400, "step"),
            ("/system/plots/up", {}, 404, "panel"),
            # No way to hand it a query of one's own: the parameter is not read.
            ("/system/plots/sum(up)", {}, 404, "panel"),
        ]
        for path, params, status, field in cases:
            answer = gateway.admin.get(path, params=params)
            assert answer.status_code == status and field in answer.json()["error"], (
                path,
                params,
                answer.text,
            )
        anonymous = httpx.get(f"{gateway.url}/system/plots/calls", trust_env=False)
        assert anonymous.status_code == 401
        none = plain.admin.get("/system/plots/calls")
        assert none.status_code == 503 and "--prometheus-url" in none.json()["error"]
        assert plain.admin.get("/system/plots").json()["prometheus"] is False
    finally:
        gateway.stop()
        plain.stop()


def test_a_load_spike_fires_the_alert_which_scales_up_and_back_down(tmp_path, tls):
    ca, cert, key = tls
    gateway = LiveGateway(tmp_path / "gw", PASSWORD, tls=(cert, key), ca=ca)
    password_file = tmp_path / "admin-password"
    password_file.write_text(PASSWORD + "\n")
    password_file.chmod(0o600)
    labels = {"com.openfaas.scale.min": "1", "com.openfaas.scale.max": "3", "com.openfaas.scale.factor": "34"}
    stop = threading.Event()
    try:
        _deploy(gateway, "busy", labels)
        manager_port = free_port()
        receiver = render(
            "alertmanager.yml.j2",
            group_wait="1s",
            group_interval="2s",
            repeat_interval="1h",
            webhook_url=f"https://127.0.0.1:{gateway.port}/system/alert",
            password_file=str(password_file),
            ca_file=str(ca),
        )
        # A short window and a low threshold, as the lab's inventory sets them (monitoring_alert_*).
        rules = render("alert-rules.yml.j2", threshold=3, window="5s", hold="1s")
        config = scrape_config(gateway, ca, alertmanager=f"127.0.0.1:{manager_port}")
        with (
            alertmanager(tmp_path / "am", manager_port, receiver),
            prometheus(tmp_path / "prom", free_port(), config, rules) as url,
        ):
            wait_for(lambda: "up" in targets_up(url).values(), 30, "the gateway scraped")
            assert gateway.functions()["busy"]["replicas"] == 1

            def load() -> None:
                verify = ssl.create_default_context(cafile=str(ca))
                with httpx.Client(base_url=gateway.url, verify=verify, trust_env=False, timeout=10) as caller:
                    while not stop.is_set():
                        caller.post("/function/busy", content=b"x")
                        time.sleep(0.05)

            spike = threading.Thread(target=load, daemon=True)
            started = time.monotonic()
            spike.start()
            # 1 + ceil(3 * 34 %) = 3: the firing alert reached /system/alert with the admin's password.
            wait_for(lambda: gateway.functions()["busy"]["replicas"] == 3, 60, "scaled up by the alert")
            scaled_after = time.monotonic() - started
            wait_for(lambda: gateway.functions()["busy"]["availableReplicas"] == 3, 30, "new replicas ready")
            stop.set()
            spike.join(15)
            wait_for(lambda: gateway.functions()["busy"]["replicas"] == 1, 90, "back to min once resolved")
            assert scaled_after < 60
    finally:
        stop.set()
        gateway.stop()
