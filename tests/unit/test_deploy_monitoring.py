"""What deploys/monitoring.py plans from an inventory: where Prometheus runs and which gateway plots
from it, every target it scrapes (named by device), the one gateway the alert goes to, and the
listeners it adds to the declared table."""

from __future__ import annotations

import pytest
from pyinfra.api.exceptions import DeployError

from edgefaas.deploy import monitoring
from edgefaas.deploy.ports import LISTENERS, check_listeners, parse_listing, table_problems

from .deploy_fakes import FakeHost

pytestmark = pytest.mark.unit


def lab() -> list[FakeHost]:
    return [
        FakeHost("sonic-1", ("sonic", "k3s_server"), k3s_node_ip="10.77.0.11", triton_server=True),
        FakeHost("sonic-2", ("sonic", "k3s_agent"), k3s_node_ip="10.77.0.12", triton_server=True),
        FakeHost("jetson-1", ("jetson", "k3s_agent"), k3s_node_ip="10.77.0.21", triton_server=True,
                 triton_metrics_port=9802),
        FakeHost("wan-1", ("wan",), ssh_hostname="10.77.0.99"),
    ]  # fmt: skip


def test_prometheus_runs_on_the_k3s_server_and_only_its_gateway_plots_from_it():
    hosts = lab()
    assert monitoring.monitoring_host(hosts).name == "sonic-1"
    assert monitoring.monitoring_url(hosts[0], hosts) == "http://127.0.0.1:9090"
    assert monitoring.monitoring_url(hosts[1], hosts) == ""
    hosts[0].data["monitoring_prometheus_port"] = 9191
    assert monitoring.monitoring_url(hosts[0], hosts) == "http://127.0.0.1:9191"
    hosts[0].data["monitoring"] = False
    assert monitoring.monitoring_url(hosts[0], hosts) == ""
    hosts[0].data["monitoring"] = "yes"
    with pytest.raises(DeployError, match="monitoring must be True or False"):
        monitoring.monitoring_url(hosts[0], hosts)


def test_every_node_gateway_and_triton_server_is_a_target_named_by_its_device():
    hosts = lab()
    nodes = monitoring.node_targets(hosts, 9100)
    assert [(t.name, t.address, t.port) for t in nodes] == [
        ("sonic-1", "10.77.0.11", 9100),
        ("sonic-2", "10.77.0.12", 9100),
        ("jetson-1", "10.77.0.21", 9100),
    ]
    assert [(t.name, t.port) for t in monitoring.gateway_targets(hosts)] == [
        ("sonic-1", 8080),
        ("sonic-2", 8080),
    ]
    assert [(t.name, t.port) for t in monitoring.triton_targets(hosts)] == [
        ("sonic-1", 8002),
        ("sonic-2", 8002),
        ("jetson-1", 9802),
    ]


def test_the_alert_goes_to_one_gateway_its_own_where_it_runs_one():
    hosts = lab()
    assert monitoring.webhook_url(hosts[0], hosts) == "https://127.0.0.1:8080/system/alert"
    hosts[0].groups = ("k3s_server",)
    hosts[1].groups = ("edgefaas_gateway", "k3s_agent")
    assert monitoring.webhook_url(hosts[0], hosts) == "https://10.77.0.12:8080/system/alert"
    hosts[0].data["edgefaas_gateway_tls"] = False
    assert monitoring.webhook_url(hosts[0], hosts) == "http://10.77.0.12:8080/system/alert"


def test_the_listeners_it_adds_are_declared_loopback_or_for_the_server_alone():
    assert table_problems() == []
    server = (
        'tcp LISTEN 0 4096 127.0.0.1:9090 0.0.0.0:* users:(("prometheus",pid=10,fd=7))\n'
        'tcp LISTEN 0 4096 127.0.0.1:9093 0.0.0.0:* users:(("prometheus-alert",pid=11,fd=7))\n'
        'tcp LISTEN 0 4096 10.77.0.11:9100 0.0.0.0:* users:(("prometheus-node",pid=12,fd=3))\n'
        "--owners--\n"
        "10|prometheus|0::/system.slice/prometheus.service\n"
        "11|prometheus|0::/system.slice/prometheus-alertmanager.service\n"
        "12|prometheus|0::/system.slice/prometheus-node-exporter.service\n"
    )
    assert check_listeners(parse_listing(server), {"all", "sonic", "k3s_server"}, LISTENERS) == []
    # Prometheus on every address, or an Alertmanager cluster port, is refused.
    wide = server.replace("127.0.0.1:9090", "0.0.0.0:9090")
    assert any("loopback-only" in p for p in check_listeners(parse_listing(wide), {"all", "k3s_server"}))
    cluster = server.replace(
        "--owners--", 'tcp LISTEN 0 4096 *:9094 *:* users:(("prometheus-alert",pid=11,fd=8))\n--owners--'
    )
    assert any(
        "undeclared listener" in p for p in check_listeners(parse_listing(cluster), {"all", "k3s_server"})
    )
    agent = parse_listing(
        'tcp LISTEN 0 4096 10.77.0.21:9100 0.0.0.0:* users:(("prometheus-node",pid=12,fd=3))\n--owners--\n'
        "12|prometheus|0::/system.slice/prometheus-node-exporter.service\n"
    )
    assert check_listeners(agent, {"all", "jetson", "k3s_agent"}) == []
