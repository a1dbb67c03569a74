"""The switches' peering with the SD-WAN provider edge (PE), from inventory data `sdwan_peers`.

Each entry {name, address, asn} becomes one more BGP neighbour of every switch: a
BGP_NEIGHBOR entry with BFD on, written and removed by deploys/sonic.py exactly as the
neighbours between the switches are (the `sonic` owner), so a peer no longer listed is
removed by the next deploy. The PE is the operator's (in the lab: edgefaas.lab.wan's
stand-in); it accepts the switches as peers and announces the WAN's client subnets, which
the switches learn as their return routes. Through it, what a switch announces in STATE_DB
ADVERTISE_NETWORK_TABLE reaches the WAN.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from ipaddress import IPv4Address
from typing import Any

from edgefaas.deploy.sonic import ASN_MAX, ASN_MIN, RESERVED_ASNS, Neighbor, Routing, RoutingError

# The peer's name is part of its BGP_NEIGHBOR name (edgefaas-sdwan-<name>) and FRR's description.
PEER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,47}$")
# What a PE's BGP_NEIGHBOR name starts with after the blueprint's own `edgefaas-`.
NAME_PREFIX = "sdwan-"


def sdwan_peers(host: str, data: Any, own_asn: int | None = None) -> tuple[Neighbor, ...]:
    """The PEs a switch peers with, from its `sdwan_peers`; RoutingError naming host and field."""
    given = data.get("sdwan_peers") or []
    if not isinstance(given, (list, tuple)):
        raise RoutingError([f"{host}: sdwan_peers: {given!r} must be a list of {{name, address, asn}}"])
    problems: list[str] = []
    found: list[Neighbor] = []
    for i, entry in enumerate(given):
        where = f"{host}: sdwan_peers[{i}]"
        if not isinstance(entry, Mapping) or not {"name", "address", "asn"} <= set(entry):
            problems.append(f"{where}: {entry!r} needs 'name', 'address' and 'asn'")
            continue
        name = str(entry["name"])
        if not PEER_NAME.match(name):
            problems.append(f"{where}.name: {name!r} must be 1-48 letters, digits, '.', '_' or '-'")
        try:
            address = IPv4Address(str(entry["address"]).strip())
        except ValueError:
            problems.append(f"{where}.address: {entry['address']!r} is no IPv4 address")
            address = None
        asn = _asn(entry["asn"], f"{where}.asn", problems)
        if asn is not None and own_asn is not None and asn == own_asn:
            problems.append(
                f"{where}.asn: {asn} is the switch's own AS number; the provider edge is an eBGP peer "
                "in an AS of its own"
            )
        if address is not None and asn is not None and PEER_NAME.match(name):
            found.append(Neighbor(address, asn, NAME_PREFIX + name))
    seen: set[IPv4Address] = set()
    for peer in found:
        if peer.address in seen:
            problems.append(f"{host}: sdwan_peers: {peer.address} is listed twice")
        seen.add(peer.address)
    if problems:
        raise RoutingError(problems)
    return tuple(found)


def _asn(value: Any, where: str, problems: list[str]) -> int | None:
    try:
        asn = int(value) if not isinstance(value, bool) else None
    except (TypeError, ValueError):
        asn = None
    if asn is None or not ASN_MIN <= asn <= ASN_MAX:
        problems.append(f"{where}: {value!r} is no AS number (an integer {ASN_MIN}..{ASN_MAX})")
        return None
    if asn in RESERVED_ASNS:
        problems.append(f"{where}: {asn} is {RESERVED_ASNS[asn]}; choose another AS number")
        return None
    return asn


def with_sdwan_peers(routing: Routing, data: Any) -> Routing:
    """`routing` with the switch's PEs added to its neighbours (same timers, BFD as planned).

    A PE at the address of a switch neighbour is refused: one BGP_NEIGHBOR key cannot be both."""
    peers = sdwan_peers(routing.host, data, routing.asn)
    taken = {n.address: n.name for n in routing.neighbors}
    clashes = [
        f"{routing.host}: sdwan_peers: {p.address} ({p.name.removeprefix(NAME_PREFIX)}) is already the "
        f"BGP neighbour {taken[p.address]}"
        for p in peers
        if p.address in taken
    ]
    if routing.router_id in {p.address for p in peers}:
        clashes.append(f"{routing.host}: sdwan_peers: {routing.router_id} is the switch's own router id")
    if clashes:
        raise RoutingError(clashes)
    return dataclasses.replace(routing, neighbors=routing.neighbors + peers)
