"""edgefaas.perf.triton: the servers and the gateway an inventory names; which server to measure."""

from __future__ import annotations

from collections import Counter

import pytest

from edgefaas.deploy.inventory import HostData, Inventory, InventoryHost
from edgefaas.perf import triton

pytestmark = pytest.mark.unit

# -- inventory -> URLs ----------------------------------------------------------------------------


def _inventory(*hosts: tuple[str, tuple[str, ...], dict]) -> Inventory:
    return Inventory(tuple(InventoryHost(name, groups, HostData(data)) for name, groups, data in hosts))


def test_targets_from_inventory():
    inventory = _inventory(
        ("sonic-1", ("sonic", "k3s_server"), {"ssh_hostname": "10.77.0.11", "triton_server": True}),
        ("sonic-2", ("sonic", "k3s_agent"), {"ssh_hostname": "10.77.0.12", "triton_server": False}),
        (
            "jetson-1",
            ("jetson", "k3s_agent"),
            {
                "ssh_hostname": "10.77.0.13",
                "triton_server": True,
                "triton_http_port": 9000,
                "triton_grpc_port": 9001,
            },
        ),
    )
    targets = triton.targets_from_inventory(inventory)
    assert [s.name for s in targets.servers] == ["sonic-1", "jetson-1"]
    assert targets.servers[0].http_url == "http://10.77.0.11:8000"
    assert targets.servers[0].grpc_url == "10.77.0.11:8001"
    assert targets.servers[1].http_url == "http://10.77.0.13:9000"
    assert targets.servers[1].grpc_url == "10.77.0.13:9001"
    # The gateway in the scheme the site serves (HTTPS by default); Triton's own endpoint stays HTTP.
    assert targets.gateway_url == "https://10.77.0.11:8080"
    assert targets.gateway.host == "sonic-1"


def test_gateway_port_and_url_from_host_data():
    server = (
        "s",
        ("k3s_server",),
        {"ssh_hostname": "192.0.2.1", "triton_server": 1, "edgefaas_gateway_port": 31112},
    )
    assert triton.targets_from_inventory(_inventory(server)).gateway_url == "https://192.0.2.1:31112"
    plain = ("s", ("k3s_server",), {**server[2], "edgefaas_gateway_tls": False})
    assert triton.targets_from_inventory(_inventory(plain)).gateway_url == "http://192.0.2.1:31112"
    wrong = ("s", ("k3s_server",), {**server[2], "edgefaas_gateway_tls": "yes"})
    with pytest.raises(triton.BenchError, match="edgefaas_gateway_tls must be True or False"):
        triton.targets_from_inventory(_inventory(wrong))
    configured = (
        "s",
        ("k3s_server",),
        {"triton_server": True, "edgefaas_gateway_url": "http://gw.example:80/"},
    )
    targets = triton.targets_from_inventory(_inventory(configured))
    assert targets.gateway_url == "http://gw.example:80"
    assert targets.servers[0].http_url == "http://s:8000"  # no ssh_hostname: the host's name


def test_inventory_without_a_k3s_server_has_no_gateway():
    targets = triton.targets_from_inventory(_inventory(("d", ("jetson",), {"triton_server": True})))
    assert targets.gateway_url is None


def test_inventory_without_triton_is_refused():
    with pytest.raises(triton.BenchError, match="triton_server"):
        triton.targets_from_inventory(_inventory(("s", ("k3s_server",), {"ssh_hostname": "10.0.0.1"})))


def test_pick_server():
    servers = [
        triton.TritonServer("sonic-1", "http://10.77.0.11:8000", "10.77.0.11:8001"),
        triton.TritonServer("sonic-2", "http://10.77.0.12:8000", "10.77.0.12:8001"),
    ]
    used = Counter({"http://10.77.0.99:8000": 7, "http://10.77.0.12:8000/": 2, "http://10.77.0.11:8000": 1})
    chosen, why = triton.pick_server(servers, None, used)
    assert chosen.name == "sonic-2"  # the unknown server is skipped
    assert "2 of 10" in why
    assert triton.pick_server(servers, "sonic-1", used)[0].name == "sonic-1"
    assert triton.pick_server(servers, "10.77.0.11:8000", used)[0].name == "sonic-1"
    assert triton.pick_server(servers, None, Counter())[0].name == "sonic-1"
    with pytest.raises(triton.BenchError, match="--server"):
        triton.pick_server(servers, "jetson-1", used)
