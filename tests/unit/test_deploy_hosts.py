"""How deploys name and reach inventory hosts (edgefaas.deploy.hosts)."""

from __future__ import annotations

import pytest
from pyinfra.api.exceptions import DeployError

from edgefaas.deploy import hosts

pytestmark = pytest.mark.unit


class Data(dict):
    def __getattr__(self, key):
        return self[key]


class FakeHost:
    def __init__(self, name, groups=(), addresses=None, **data):
        self.name, self.groups, self.data = name, tuple(groups), Data(data)
        self._addresses = addresses or {}

    def get_fact(self, fact):
        return self._addresses


def test_the_address_others_reach_a_host_on_prefers_its_node_address():
    assert hosts.address(FakeHost("sonic-1", k3s_node_ip="10.0.0.5", ssh_hostname="mgmt")) == "10.0.0.5"
    assert hosts.address(FakeHost("sonic-1", ssh_hostname="10.77.0.11")) == "10.77.0.11"
    assert hosts.address(FakeHost("sonic-1")) == "sonic-1"


def test_the_node_name_defaults_to_the_inventory_name():
    assert hosts.node_name(FakeHost("jetson-1")) == "jetson-1"
    assert hosts.node_name(FakeHost("jetson-1", k3s_node_name="nano-7")) == "nano-7"


@pytest.mark.parametrize(
    ("groups", "role"),
    [(("sonic", "k3s_server"), "server"), (("jetson", "k3s_agent"), "agent"), (("sonic",), None)],
)
def test_the_k3s_role_comes_from_the_groups(groups, role):
    assert hosts.k3s_role(FakeHost("x", groups)) == role


def test_a_host_binds_to_its_node_address_or_its_management_interfaces_first_address():
    assert hosts.own_address(FakeHost("a", k3s_node_ip="10.1.1.1", mgmt_interface="eth0"), "x") == "10.1.1.1"
    found = FakeHost("b", addresses={"eth0": ["10.77.0.12", "10.77.0.99"]}, mgmt_interface="eth0")
    assert hosts.own_address(found, "x") == "10.77.0.12"
    bare = FakeHost("c", addresses={"eth1": ["10.9.9.9"]}, mgmt_interface="eth0")
    with pytest.raises(DeployError, match=r"^c: management interface eth0 has no IPv4 address for K3S"):
        hosts.own_address(bare, "for K3S to bind to")
