"""How the deploys name and reach the hosts of an inventory: one definition of each.

`other` is any pyinfra host object (the one being deployed or another from the inventory).
"""

from __future__ import annotations

from typing import Any

from pyinfra.api.exceptions import DeployError
from pyinfra.facts.hardware import Ipv4Addrs


def address(other: Any) -> str:
    """The address other devices reach `other` on: its K3S node address if set, else SSH's."""
    return other.data.get("k3s_node_ip") or other.data.get("ssh_hostname") or other.name


def node_name(other: Any) -> str:
    """`other`'s name as a K3S node."""
    return other.data.get("k3s_node_name") or other.name


def k3s_role(other: Any) -> str | None:
    """ "server", "agent", or None for a host in neither K3S group."""
    if "k3s_server" in other.groups:
        return "server"
    if "k3s_agent" in other.groups:
        return "agent"
    return None


def own_address(current: Any, purpose: str) -> str:
    """The address the host being deployed binds to: host data `k3s_node_ip`, else the first
    IPv4 address of its management interface; `purpose` says what for, in the error."""
    if current.data.get("k3s_node_ip"):
        return current.data.k3s_node_ip
    iface = current.data.mgmt_interface
    addresses = current.get_fact(Ipv4Addrs).get(iface)
    if not addresses:
        raise DeployError(f"{current.name}: management interface {iface} has no IPv4 address {purpose}")
    return addresses[0]
