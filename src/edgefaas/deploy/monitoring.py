"""What deploys/monitoring.py plans from the inventory: where Prometheus runs, what it scrapes, and
which gateway the alert goes to. Plain functions of the inventory, tested in
tests/unit/test_deploy_monitoring.py; the operations are in the deploy file.

Prometheus and Alertmanager run on the K3S server, beside its gateway, on loopback only: that
gateway plots from it (/system/plots), and nothing else needs to reach them. Every K3S node runs
a node exporter on its management address, which only the K3S server may reach.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pyinfra.api.exceptions import DeployError

from edgefaas.deploy import hosts
from edgefaas.deploy.gateways import gateway_hosts, gateway_url, k3s_server
from edgefaas.deploy.settings import setting
from edgefaas.deploy.triton import host_ports

ALERT_PATH = "/system/alert"


@dataclass(frozen=True)
class Target:
    name: str  # the inventory name: the `device` label
    address: str
    port: int

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "address": self.address, "port": self.port}


def enabled(current: Any) -> bool:
    value = setting(current, "monitoring")
    if not isinstance(value, bool):
        raise DeployError(f"{current.name}: monitoring must be True or False, not {value!r}")
    return value


def monitoring_host(inventory: Iterable[Any]) -> Any:
    """The host Prometheus and Alertmanager run on: the K3S server."""
    return k3s_server(inventory)


def monitoring_url(current: Any, inventory: Iterable[Any]) -> str:
    """What the gateway on `current` plots from: its loopback Prometheus, where it runs; else ""."""
    everyone = list(inventory)
    if not enabled(current) or monitoring_host(everyone).name != current.name:
        return ""
    return f"http://127.0.0.1:{int(setting(current, 'monitoring_prometheus_port'))}"


def _nodes(everyone: list[Any]) -> list[Any]:
    return [other for other in everyone if hosts.k3s_role(other) is not None]


def node_targets(inventory: Iterable[Any], port: int) -> list[Target]:
    """Every K3S node at its management address (node exporter, kubelet)."""
    return [Target(other.name, hosts.address(other), port) for other in _nodes(list(inventory))]


def gateway_targets(inventory: Iterable[Any]) -> list[Target]:
    return [
        Target(other.name, hosts.address(other), int(setting(other, "edgefaas_gateway_port")))
        for other in gateway_hosts(list(inventory))
    ]


def triton_targets(inventory: Iterable[Any]) -> list[Target]:
    """Every Triton server's metrics port (deploys/triton.py: host data triton_server)."""
    return [
        Target(other.name, hosts.address(other), host_ports(other.data)["metrics_port"])
        for other in inventory
        if other.data.get("triton_server")
    ]


def webhook_url(current: Any, inventory: Iterable[Any]) -> str:
    """The one gateway Alertmanager on `current` calls: its own when it runs one (127.0.0.1 is in its
    certificate), else the first gateway. One, because every gateway acts on the same functions:
    two receivers would scale twice per alert."""
    everyone = list(inventory)
    gateways = gateway_hosts(everyone)
    if not gateways:
        raise DeployError("no gateway host for Alertmanager's webhook: deploys/edgefaas.py runs them")
    if any(other.name == current.name for other in gateways):
        return gateway_url(current, "127.0.0.1") + ALERT_PATH
    return gateway_url(current, hosts.address(gateways[0])) + ALERT_PATH
