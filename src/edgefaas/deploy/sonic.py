"""The switch's routing (deploys/sonic.py) planned from inventory data: ASN, router id, neighbours.

Pure functions over the inventory's `sonic` hosts and a device's interface addresses, so
every refusal (a malformed address, an ASN out of range, a duplicate router id, a neighbour
no interface reaches) names the host and field before anything is written. The CONFIG_DB
entries themselves are templates/sonic/config_db.json.j2, with SONiC's table and field
names (sonic-bgp-neighbor.yang, sonic-loopback-interface.yang, sonic-bgp-peerrange.yang);
on a real switch SONiC's bgpcfgd turns them into FRR configuration, in the lab its stand-in.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any, Protocol

import jinja2

# The owner of every entry deploys/sonic.py writes (/etc/edgefaas/config_db/sonic.json on the device).
OWNER = "sonic"
TEMPLATE = Path(__file__).resolve().parents[3] / "templates" / "sonic" / "config_db.json.j2"

ASN_MIN, ASN_MAX = 1, 4294967295
# Numbers a BGP speaker must not use as its own or a peer's AS: AS_TRANS stands in for
# 4-byte ASNs towards old speakers (RFC 6793); the last 16- and 32-bit ASNs are reserved
# (RFC 7300).
RESERVED_ASNS = {
    23456: "AS_TRANS (RFC 6793)",
    65535: "reserved (RFC 7300)",
    4294967295: "reserved (RFC 7300)",
}
# SONiC's interface names for loopbacks (sonic-loopback-interface.yang).
LOOPBACK_NAME = re.compile(r"^Loopback\d{1,4}$")
# SONiC's BGP_PEER_RANGE key is a name; the blueprint's carry EDGEFAAS_ so uninstall can tell them.
PEER_RANGE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,48}$")


class InventoryProblems(ValueError):
    """Inventory data a plan refuses: every problem found, each naming its host and field."""

    def __init__(self, problems: Sequence[str]):
        super().__init__("; ".join(problems))
        self.problems = tuple(problems)


class RoutingError(InventoryProblems):
    """Inventory data deploys/sonic.py refuses."""


class HostDataLike(Protocol):
    """A host's inventory data, as pyinfra's or edgefaas.deploy.inventory's."""

    def get(self, key: str, default: Any = None) -> Any: ...


@dataclass(frozen=True)
class Neighbor:
    address: IPv4Address
    asn: int
    name: str  # the peer's name; its BGP_NEIGHBOR entry is named edgefaas-<name>


@dataclass(frozen=True)
class PeerRange:
    name: str
    ip_ranges: tuple[IPv4Network, ...]
    peer_asn: int | None


@dataclass(frozen=True)
class Routing:
    """One switch's routing, every default resolved."""

    host: str
    asn: int
    loopback_interface: str
    router_id: IPv4Address  # the loopback's address, as SONiC takes it for FRR's router-id
    neighbors: tuple[Neighbor, ...]
    peer_ranges: tuple[PeerRange, ...]
    bfd: bool
    keepalive: int
    holdtime: int


@dataclass(frozen=True)
class Entries:
    """What ensure() is given: entries the owner holds, and shared ones set only when absent or equal."""

    owned: dict[str, dict[str, str]]
    shared: dict[str, dict[str, str]]


def _asn(value: Any, where: str, problems: list[str]) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        problems.append(f"{where}: {value!r} is no AS number (an integer {ASN_MIN}..{ASN_MAX})")
        return None
    try:
        asn = int(value)
    except ValueError:
        problems.append(f"{where}: {value!r} is no AS number (an integer {ASN_MIN}..{ASN_MAX})")
        return None
    if not ASN_MIN <= asn <= ASN_MAX:
        problems.append(f"{where}: {asn} is out of range ({ASN_MIN}..{ASN_MAX})")
        return None
    if asn in RESERVED_ASNS:
        problems.append(f"{where}: {asn} is {RESERVED_ASNS[asn]}; choose another AS number")
        return None
    return asn


def _address(value: Any, where: str, problems: list[str]) -> IPv4Address | None:
    try:
        return IPv4Address(str(value).strip()) if isinstance(value, str) else IPv4Address(value)
    except ValueError:
        problems.append(f"{where}: {value!r} is no IPv4 address")
        return None


def single_address(value: Any, where: str, problems: list[str], as_: str = "") -> IPv4Address | None:
    """One IPv4 address, with or without its /32 (`as_`: what must be one, for the message)."""
    text = str(value)
    if "/" in text:
        try:
            iface = IPv4Interface(text)
        except ValueError:
            problems.append(f"{where}: {value!r} is no IPv4 address")
            return None
        if iface.network.prefixlen != 32:
            problems.append(f"{where}: {value!r} must be a single address (/32){as_}")
            return None
        return iface.ip
    return _address(value, where, problems)


def _int(value: Any, where: str, low: int, high: int, problems: list[str]) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = None
    if number is None or isinstance(value, bool) or not low <= number <= high:
        problems.append(f"{where}: {value!r} must be an integer {low}..{high}")
        return None
    return number


def _ssh_address(name: str, data: HostDataLike) -> IPv4Address | None:
    """The host's ssh_hostname when it is an IPv4 address: where the lab's switches peer."""
    try:
        return IPv4Address(str(data.get("ssh_hostname") or name))
    except ValueError:
        return None


def _neighbors(
    name: str,
    data: HostDataLike,
    others: Sequence[tuple[str, int | None, IPv4Address | None]],
    problems: list[str],
) -> tuple[Neighbor, ...] | None:
    given = data.get("bgp_neighbors")
    if given is None:
        if any(asn is None or address is None for _, asn, address in others):
            return None
        return tuple(Neighbor(address, asn, peer) for peer, asn, address in others)  # type: ignore[arg-type]
    if not isinstance(given, (list, tuple)):
        problems.append(f"{name}: bgp_neighbors: {given!r} must be a list of {{address, asn, name}}")
        return None
    found: list[Neighbor] = []
    for i, entry in enumerate(given):
        where = f"{name}: bgp_neighbors[{i}]"
        if not isinstance(entry, Mapping) or "address" not in entry or "asn" not in entry:
            problems.append(f"{where}: {entry!r} needs at least 'address' and 'asn'")
            continue
        address = _address(entry["address"], f"{where}.address", problems)
        asn = _asn(entry["asn"], f"{where}.asn", problems)
        label = str(entry.get("name") or (str(address) if address else ""))
        if address is not None and asn is not None:
            found.append(Neighbor(address, asn, label))
    seen: set[IPv4Address] = set()
    for neighbor in found:
        if neighbor.address in seen:
            problems.append(f"{name}: bgp_neighbors: {neighbor.address} is listed twice")
        seen.add(neighbor.address)
    return tuple(found)


def _peer_ranges(name: str, data: HostDataLike, problems: list[str]) -> tuple[PeerRange, ...]:
    given = data.get("bgp_peer_ranges") or []
    ranges: list[PeerRange] = []
    for i, entry in enumerate(given if isinstance(given, (list, tuple)) else [given]):
        where = f"{name}: bgp_peer_ranges[{i}]"
        if not isinstance(entry, Mapping) or "name" not in entry or "ip_range" not in entry:
            problems.append(f"{where}: {entry!r} needs 'name' and 'ip_range' (and 'peer_asn' for eBGP)")
            continue
        label = str(entry["name"])
        if not PEER_RANGE_NAME.match(label):
            problems.append(f"{where}.name: {label!r} must be 1-48 letters, digits, '_' or '-'")
        raw = entry["ip_range"]
        networks: list[IPv4Network] = []
        for text in [raw] if isinstance(raw, str) else list(raw):
            try:
                networks.append(IPv4Network(str(text)))
            except ValueError:
                problems.append(
                    f"{where}.ip_range: {text!r} is no IPv4 network (a.b.c.d/len, host bits zero)"
                )
        peer_asn = _asn(entry["peer_asn"], f"{where}.peer_asn", problems) if "peer_asn" in entry else None
        ranges.append(PeerRange(label, tuple(networks), peer_asn))
    return tuple(ranges)


def _plan(hosts: Sequence[tuple[str, HostDataLike]], complete: bool) -> tuple[dict[str, Routing], list[str]]:
    """Every host's routing and every problem; with complete=False (host data without the
    group defaults) only what the data gives explicitly is checked."""
    problems: list[str] = []
    asns: dict[str, int | None] = {}
    router_ids: dict[str, IPv4Address | None] = {}
    addresses: dict[str, IPv4Address | None] = {}
    for index, (name, data) in enumerate(hosts, start=1):
        if data.get("bgp_asn") is not None:
            asns[name] = _asn(data.get("bgp_asn"), f"{name}: bgp_asn", problems)
        elif data.get("bgp_asn_base") is not None:
            base = _asn(data.get("bgp_asn_base"), f"{name}: bgp_asn_base", problems)
            asns[name] = (
                _asn(base + index, f"{name}: bgp_asn (bgp_asn_base + {index})", problems) if base else None
            )
        else:
            asns[name] = None
            if complete:
                problems.append(f"{name}: bgp_asn: not given, and no bgp_asn_base to derive it from")
        if data.get("loopback_address") is not None:
            router_ids[name] = single_address(
                data.get("loopback_address"), f"{name}: loopback_address", problems, ", as a loopback is"
            )
        elif data.get("loopback_pool") is not None:
            router_ids[name] = _pool_address(name, data.get("loopback_pool"), index, problems)
        else:
            router_ids[name] = None
            if complete:
                problems.append(f"{name}: loopback_address: not given, and no loopback_pool to take it from")
        if data.get("bgp_address") is not None:
            addresses[name] = _address(data.get("bgp_address"), f"{name}: bgp_address", problems)
        else:
            addresses[name] = _ssh_address(name, data)

    owner_of: dict[IPv4Address, str] = {}
    for name, router_id in router_ids.items():
        if router_id is None:
            continue
        if router_id in owner_of:
            problems.append(
                f"{name}: loopback_address: router id {router_id} is {owner_of[router_id]}'s too; "
                "every switch needs its own"
            )
        else:
            owner_of[router_id] = name

    plans: dict[str, Routing] = {}
    unreachable: set[str] = set()
    for name, data in hosts:
        others = []
        if data.get("bgp_neighbors") is None:
            for peer, peer_data in hosts:
                if peer == name:
                    continue
                if (
                    complete
                    and addresses[peer] is None
                    and peer_data.get("bgp_address") is None
                    and peer not in unreachable
                ):
                    unreachable.add(peer)
                    problems.append(
                        f"{peer}: bgp_address: not given and ssh_hostname "
                        f"{peer_data.get('ssh_hostname') or peer!r} is no IPv4 address; set bgp_address "
                        f"(where its peers reach it) or bgp_neighbors on {name}"
                    )
                others.append((peer, asns[peer], addresses[peer]))
        neighbors = _neighbors(name, data, others, problems)
        for neighbor in neighbors or ():
            if neighbor.address == router_ids.get(name):
                problems.append(f"{name}: bgp_neighbors: {neighbor.address} is the switch's own router id")
        peer_ranges = _peer_ranges(name, data, problems)
        loopback = str(data.get("loopback_interface") or "Loopback0")
        if not LOOPBACK_NAME.match(loopback):
            problems.append(
                f"{name}: loopback_interface: {loopback!r} must be Loopback<N>, as SONiC names them"
            )
        keepalive = _int(data.get("bgp_keepalive", 60), f"{name}: bgp_keepalive", 1, 65535, problems)
        holdtime = _int(data.get("bgp_holdtime", 180), f"{name}: bgp_holdtime", 3, 65535, problems)
        if keepalive is not None and holdtime is not None and keepalive * 3 > holdtime:
            problems.append(
                f"{name}: bgp_holdtime {holdtime} must be at least 3 x bgp_keepalive ({keepalive})"
            )
        asn, router_id = asns[name], router_ids[name]
        if complete and None not in (asn, router_id, neighbors, keepalive, holdtime):
            plans[name] = Routing(
                host=name,
                asn=asn,  # type: ignore[arg-type]
                loopback_interface=loopback,
                router_id=router_id,  # type: ignore[arg-type]
                neighbors=neighbors,  # type: ignore[arg-type]
                peer_ranges=peer_ranges,
                bfd=bool(data.get("bgp_bfd", True)),
                keepalive=keepalive,  # type: ignore[arg-type]
                holdtime=holdtime,  # type: ignore[arg-type]
            )
    return plans, problems


def _pool_address(name: str, pool: Any, index: int, problems: list[str]) -> IPv4Address | None:
    try:
        network = IPv4Network(str(pool))
    except ValueError:
        problems.append(f"{name}: loopback_pool: {pool!r} is no IPv4 network (a.b.c.d/len, host bits zero)")
        return None
    if index >= network.num_addresses:
        problems.append(f"{name}: loopback_address: loopback_pool {network} has no address number {index}")
        return None
    return network[index]


def plan_routing(hosts: Sequence[tuple[str, HostDataLike]]) -> dict[str, Routing]:
    """The routing of every `sonic` host (name, data with group defaults), in inventory order:
    an unset bgp_asn is bgp_asn_base + the host's position (1, 2, ...), an unset
    loopback_address that position's address in loopback_pool, unset bgp_neighbors every
    other host (at its bgp_address, else its ssh_hostname). Raises RoutingError naming
    every problem."""
    plans, problems = _plan(hosts, complete=True)
    if problems:
        raise RoutingError(problems)
    return plans


def check_routing(hosts: Sequence[tuple[str, HostDataLike]]) -> list[str]:
    """The problems in what an inventory file itself gives (no group defaults), for the check
    run when an inventory loads; deploys/sonic.py checks again with every default resolved."""
    return _plan(hosts, complete=False)[1]


def interface_addresses(ip_json: str) -> dict[str, list[IPv4Interface]]:
    """The IPv4 addresses per interface from `ip -j -4 addr show`."""
    found: dict[str, list[IPv4Interface]] = {}
    for link in json.loads(ip_json or "[]"):
        for info in link.get("addr_info", []):
            if info.get("family") == "inet":
                found.setdefault(link["ifname"], []).append(
                    IPv4Interface(f"{info['local']}/{info['prefixlen']}")
                )
    return found


def local_addresses(
    routing: Routing, interfaces: Mapping[str, Iterable[IPv4Interface]]
) -> dict[IPv4Address, IPv4Address]:
    """Each neighbour's local address: the switch's address on the interface whose subnet
    holds the neighbour. Raises RoutingError for a neighbour no interface reaches."""
    problems = []
    found: dict[IPv4Address, IPv4Address] = {}
    for neighbor in routing.neighbors:
        local = next(
            (
                iface.ip
                for ifaces in interfaces.values()
                for iface in ifaces
                if iface.network.prefixlen < 32 and neighbor.address in iface.network
            ),
            None,
        )
        if local is None:
            have = ", ".join(f"{n} {i}" for n, ifaces in interfaces.items() for i in ifaces) or "none"
            problems.append(
                f"{routing.host}: bgp_neighbors: {neighbor.address} ({neighbor.name}) is in no subnet of the "
                f"switch's interfaces ({have})"
            )
        elif local == neighbor.address:
            problems.append(f"{routing.host}: bgp_neighbors: {neighbor.address} is the switch's own address")
        else:
            found[neighbor.address] = local
    if problems:
        raise RoutingError(problems)
    return found


def config_db_entries(routing: Routing, interfaces: Mapping[str, Iterable[IPv4Interface]]) -> Entries:
    """The CONFIG_DB entries for `routing` on a switch with these interface addresses."""
    local = local_addresses(routing, interfaces)
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)
    env.filters["json"] = json.dumps
    rendered = env.from_string(TEMPLATE.read_text()).render(
        asn=routing.asn,
        loopback_interface=routing.loopback_interface,
        router_id=routing.router_id,
        neighbors=[
            {"address": n.address, "asn": n.asn, "name": n.name, "local_addr": local[n.address]}
            for n in routing.neighbors
        ],
        peer_ranges=[
            {
                "name": r.name.upper().replace("-", "_"),
                "ip_ranges": [str(n) for n in r.ip_ranges],
                "peer_asn": r.peer_asn,
                "local_addr": routing.router_id,
            }
            for r in routing.peer_ranges
        ],
        bfd=routing.bfd,
        keepalive=routing.keepalive,
        holdtime=routing.holdtime,
    )
    wanted = json.loads(rendered)
    return Entries(owned=wanted["owned"], shared=wanted["shared"])
