"""The lab bridge, each device's network namespace, and the rules that keep the lab contained.

Every device gets a network namespace made here (not by systemd-nspawn) so that its
management interface can be called `eth0`, as on a SONiC switch, and so that teardown
is one `ip netns del`. Lab traffic never leaves the bridge: IP forwarding stays off on
the lab machine and FORWARD rules drop anything crossing between the bridge and the rest.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import subprocess
from pathlib import Path

RULE_TAG = "edgefaas-lab"


class NetworkError(RuntimeError):
    pass


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise NetworkError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc


def link_exists(name: str, netns: str | None = None) -> bool:
    prefix = ["-n", netns] if netns else []
    return _ip(*prefix, "link", "show", name, check=False).returncode == 0


def machine_networks() -> list[ipaddress.IPv4Network]:
    """Networks this machine routes to or sits on (for subnet clash checks)."""
    nets: list[ipaddress.IPv4Network] = []
    for route in json.loads(_ip("-j", "-4", "route", "show", "table", "all").stdout or "[]"):
        dst = route.get("dst", "")
        if dst in ("default", "") or route.get("type") in ("local", "broadcast"):
            continue
        try:
            nets.append(ipaddress.IPv4Network(dst, strict=False))
        except ValueError:
            continue
    for link in json.loads(_ip("-j", "-4", "addr").stdout or "[]"):
        for addr in link.get("addr_info", []):
            nets.append(ipaddress.IPv4Network(f"{addr['local']}/{addr['prefixlen']}", strict=False))
    return nets


def forwarding_enabled() -> bool:
    return Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() != "0"


def _iptables(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["iptables", "-w", *args], capture_output=True, text=True)


def _containment_rules(bridge: str, lab: str) -> list[list[str]]:
    comment = ["-m", "comment", "--comment", f"{RULE_TAG}:{lab}"]
    return [
        ["FORWARD", "-i", bridge, "!", "-o", bridge, *comment, "-j", "DROP"],
        ["FORWARD", "-o", bridge, "!", "-i", bridge, *comment, "-j", "DROP"],
    ]


def ensure_bridge(bridge: str, gateway: str, prefixlen: int, lab: str) -> bool:
    """Create the bridge and containment rules; return True when something changed."""
    changed = False
    if not link_exists(bridge):
        _ip("link", "add", bridge, "type", "bridge")
        changed = True
    cidr = f"{gateway}/{prefixlen}"
    if cidr not in _ip("-4", "addr", "show", "dev", bridge).stdout:
        _ip("addr", "add", cidr, "dev", bridge)
        changed = True
    if "UP" not in json.loads(_ip("-j", "link", "show", bridge).stdout)[0].get("flags", []):
        _ip("link", "set", bridge, "up")
        changed = True
    for rule in _containment_rules(bridge, lab):
        if _iptables("-C", *rule).returncode != 0:
            proc = _iptables("-I", *rule)
            if proc.returncode != 0:
                raise NetworkError(f"iptables -I {' '.join(rule)}: {proc.stderr.strip()}")
            changed = True
    return changed


def remove_bridge(bridge: str, lab: str) -> None:
    for rule in _containment_rules(bridge, lab):
        while _iptables("-C", *rule).returncode == 0:
            _iptables("-D", *rule)
    if link_exists(bridge):
        _ip("link", "del", bridge)


def netns_name(lab: str, device: str) -> str:
    return f"efl-{lab}-{device}"


def host_veth_name(lab: str, device: str) -> str:
    # Unique per (lab, device) and within Linux's 15-character limit.
    return "efv" + hashlib.sha1(f"{lab}/{device}".encode()).hexdigest()[:11]


def netns_exists(name: str) -> bool:
    return Path("/run/netns", name).exists()


def ensure_device_netns(lab: str, device: str, bridge: str) -> str:
    """Give a device a namespace whose `eth0` is plugged into the lab bridge."""
    ns = netns_name(lab, device)
    veth = host_veth_name(lab, device)
    if not netns_exists(ns):
        _ip("netns", "add", ns)
    if not link_exists("eth0", ns):
        if link_exists(veth):
            _ip("link", "del", veth)
        peer = veth[:-1] + "p"
        _ip("link", "add", veth, "type", "veth", "peer", "name", peer)
        _ip("link", "set", peer, "netns", ns)
        _ip("-n", ns, "link", "set", peer, "name", "eth0")
    _ip("link", "set", veth, "master", bridge)
    _ip("link", "set", veth, "up")
    _ip("-n", ns, "link", "set", "lo", "up")
    return ns


# The provider edge's side of the cloud segment, a bridge inside the `wan` device's namespace.
CLOUD_BRIDGE = "cloud"


def ensure_cloud_segment(wan_ns: str, address: str, prefixlen: int) -> None:
    """The cloud segment's bridge inside the provider edge's namespace, with the PE's address.

    Only the `wan` device is on both the lab bridge and this one, so whatever reaches the cloud
    goes through the PE's routing (its forwarding is on in its own namespace alone)."""
    if not link_exists(CLOUD_BRIDGE, wan_ns):
        _ip("-n", wan_ns, "link", "add", CLOUD_BRIDGE, "type", "bridge")
    _ip("-n", wan_ns, "addr", "replace", f"{address}/{prefixlen}", "dev", CLOUD_BRIDGE)
    _ip("-n", wan_ns, "link", "set", CLOUD_BRIDGE, "up")


def ensure_cloud_device_netns(lab: str, device: str, wan_ns: str) -> str:
    """Give a cloud device a namespace whose `eth0` is plugged into the cloud segment's bridge
    in the provider edge's namespace (not into the lab bridge)."""
    ns = netns_name(lab, device)
    veth = host_veth_name(lab, device)
    if not netns_exists(ns):
        _ip("netns", "add", ns)
    if not link_exists("eth0", ns):
        for where in (None, wan_ns):
            if link_exists(veth, where):
                _ip(*(["-n", where] if where else []), "link", "del", veth)
        peer = veth[:-1] + "p"
        _ip("link", "add", veth, "type", "veth", "peer", "name", peer)
        _ip("link", "set", peer, "netns", ns)
        _ip("-n", ns, "link", "set", peer, "name", "eth0")
        _ip("link", "set", veth, "netns", wan_ns)
    _ip("-n", wan_ns, "link", "set", veth, "master", CLOUD_BRIDGE)
    _ip("-n", wan_ns, "link", "set", veth, "up")
    _ip("-n", ns, "link", "set", "lo", "up")
    return ns


def ensure_route(destination: str, via: str, bridge: str) -> bool:
    """A route on the lab machine to a lab network behind a lab device (the cloud segment, via
    the provider edge): the lab machine is an end of that traffic, never a router of it."""
    wanted = f"{destination} via {via} dev {bridge}"
    if wanted in _ip("-4", "route", "show", destination).stdout:
        return False
    _ip("route", "replace", destination, "via", via, "dev", bridge)
    return True


def configure_from_outside(ns: str, address: str, prefixlen: int, gateway: str) -> None:
    """Give a device's `eth0` its address and default route from the lab machine.

    For devices of a foreign architecture: their systemd-networkd runs under qemu-user,
    whose netlink emulation it cannot use ("Could not setup manager: Protocol not
    supported"), so the address it would have set is set from outside the namespace.
    """
    _ip("-n", ns, "addr", "replace", f"{address}/{prefixlen}", "dev", "eth0")
    _ip("-n", ns, "link", "set", "eth0", "up")
    _ip("-n", ns, "route", "replace", "default", "via", gateway, "dev", "eth0")


def remove_device_netns(lab: str, device: str) -> None:
    ns = netns_name(lab, device)
    if netns_exists(ns):
        _ip("netns", "del", ns, check=False)
    veth = host_veth_name(lab, device)
    if link_exists(veth):
        _ip("link", "del", veth, check=False)
