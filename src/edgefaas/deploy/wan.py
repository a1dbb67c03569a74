"""The SD-WAN plan of every switch (its `wan.json`), planned and checked on the control machine.

Each switch announces, through STATE_DB ADVERTISE_NETWORK_TABLE, the gateway's anycast
address and one service address per public function (`edgefaas announce`,
edgefaas.sonic.announce). What it announces is this plan, rendered into
/etc/edgefaas/wan.json on every switch:

    {"anycast": "10.255.0.1/32", "pool": "10.255.1.0/24", "api_port": 8080, "service_port": 443,
     "asn": 65101, "api_profile": "FROM_SDN_SLB_ROUTES", "api_community": "65100:100",
     "function_profile": "FROM_SDN_APPLIANCE_ROUTES", "function_community": "65100:200",
     "functions": {"camera": {"address": "10.255.1.7", "id": 7}}}

A function's own BGP large community is `<asn>:<id>:<version>`: the switch's AS, the
address's offset in the pool, the revision the gateway reports. Addresses are stable: an
explicit one (`edgefaas_wan_addresses`) first, every other function at the pool address its
name hashes to (the next free one on a collision), so adding a function moves no other.

Inventory data (host data; every switch must agree): edgefaas_wan_anycast,
edgefaas_wan_function_pool (both unset: no WAN), edgefaas_wan_addresses {function: address},
edgefaas_wan_api_community / edgefaas_wan_function_community (standard AA:NN, set in APPL_DB
BGP_PROFILE_TABLE for SONiC's route-maps), edgefaas_wan_service_port, edgefaas_wan_reserved
(further subnets the pool must keep out of), k3s_cluster_cidr, k3s_service_cidr.
Every problem is refused before anything is announced, naming the host and field.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any

from edgefaas.deploy.sonic import HostDataLike, InventoryProblems, RoutingError, plan_routing, single_address

# Where the deploy renders the plan on each switch, and where `edgefaas announce` and the
# gateway read it.
PLAN_PATH = "/etc/edgefaas/wan.json"
# The only profiles SONiC's bgpcfgd accepts in ADVERTISE_NETWORK_TABLE (managers_rm.py).
API_PROFILE = "FROM_SDN_SLB_ROUTES"
FUNCTION_PROFILE = "FROM_SDN_APPLIANCE_ROUTES"
# K3S's own defaults (k3s server --cluster-cidr / --service-cidr).
K3S_CLUSTER_CIDR = "10.42.0.0/16"
K3S_SERVICE_CIDR = "10.43.0.0/16"
DEFAULTS: dict[str, Any] = {
    "edgefaas_wan_anycast": None,
    "edgefaas_wan_function_pool": None,
    "edgefaas_wan_addresses": {},
    "edgefaas_wan_api_community": "65100:100",
    "edgefaas_wan_function_community": "65100:200",
    "edgefaas_wan_service_port": 443,
    "edgefaas_wan_reserved": [],
    "edgefaas_gateway_port": 8080,
    "k3s_cluster_cidr": K3S_CLUSTER_CIDR,
    "k3s_service_cidr": K3S_SERVICE_CIDR,
    "loopback_pool": None,
}
# Keys every switch must give alike: one WAN, one anycast address, one pool.
COMMON = (
    "edgefaas_wan_anycast",
    "edgefaas_wan_function_pool",
    "edgefaas_wan_api_community",
    "edgefaas_wan_function_community",
    "edgefaas_wan_service_port",
)


class WanError(InventoryProblems):
    """Inventory data the WAN plan refuses."""


@dataclass(frozen=True)
class FunctionAddress:
    address: IPv4Address
    id: int  # the address's offset in the pool: the middle number of the function's large community


@dataclass(frozen=True)
class WanPlan:
    host: str
    anycast: IPv4Address
    pool: IPv4Network
    asn: int
    api_port: int
    service_port: int
    api_community: str
    function_community: str
    functions: dict[str, FunctionAddress]
    # The blueprint's CA on the switch when the gateway serves HTTPS only ("": plain HTTP).
    ca_file: str = ""

    def document(self) -> dict[str, Any]:
        """The switch's wan.json."""
        return {
            **({"ca_file": self.ca_file} if self.ca_file else {}),
            "anycast": f"{self.anycast}/32",
            "pool": str(self.pool),
            "asn": self.asn,
            "api_port": self.api_port,
            "service_port": self.service_port,
            "api_profile": API_PROFILE,
            "api_community": self.api_community,
            "function_profile": FUNCTION_PROFILE,
            "function_community": self.function_community,
            "functions": {
                name: {"address": str(f.address), "id": f.id} for name, f in sorted(self.functions.items())
            },
        }

    def render(self) -> str:
        return json.dumps(self.document(), indent=2, sort_keys=True) + "\n"


def _get(data: HostDataLike, key: str) -> Any:
    value = data.get(key)
    return DEFAULTS.get(key) if value is None else value


def standard_community(value: Any, where: str, problems: list[str]) -> str | None:
    """A BGP community AA:NN (two 16-bit numbers), as BGP_PROFILE_TABLE's community_id holds it."""
    text = str(value).strip()
    parts = text.split(":")
    if len(parts) != 2 or not all(p.isdigit() and int(p) <= 65535 for p in parts):
        problems.append(f"{where}: {value!r} is no BGP community (AA:NN, each 0..65535)")
        return None
    return f"{int(parts[0])}:{int(parts[1])}"


def large_community(value: Any, where: str, problems: list[str]) -> str | None:
    """A BGP large community GA:LD1:LD2 (three 32-bit numbers)."""
    parts = str(value).strip().split(":")
    if len(parts) != 3 or not all(p.isdigit() and int(p) <= 4294967295 for p in parts):
        problems.append(f"{where}: {value!r} is no BGP large community (GA:LD1:LD2, each 0..4294967295)")
        return None
    return ":".join(str(int(p)) for p in parts)


def _network(value: Any, where: str, problems: list[str]) -> IPv4Network | None:
    try:
        return IPv4Network(str(value).strip())
    except ValueError:
        problems.append(f"{where}: {value!r} is no IPv4 network (a.b.c.d/len, host bits zero)")
        return None


def _port(value: Any, where: str, problems: list[str]) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).isdigit():
        problems.append(f"{where}: {value!r} must be a TCP port 1..65535")
        return None
    if not 1 <= int(value) <= 65535:
        problems.append(f"{where}: {value!r} must be a TCP port 1..65535")
        return None
    return int(value)


def public_functions(data: HostDataLike) -> list[str]:
    """The functions anyone may call: those a WAN client reaches by address."""
    functions = data.get("edgefaas_functions") or {}
    public = set(data.get("edgefaas_public_functions") or ())
    return sorted(n for n, s in functions.items() if (s or {}).get("public", n in public))


def _reserved(name: str, data: HostDataLike, problems: list[str]) -> list[tuple[str, IPv4Network]]:
    """(what, subnet) the pool and the anycast address must keep out of."""
    found: list[tuple[str, IPv4Network]] = []
    for key in ("k3s_cluster_cidr", "k3s_service_cidr", "loopback_pool"):
        value = _get(data, key)
        if value is not None:
            network = _network(value, f"{name}: {key}", problems)
            if network is not None:
                found.append((key, network))
    extra = _get(data, "edgefaas_wan_reserved")
    for i, value in enumerate([extra] if isinstance(extra, str) else list(extra)):
        network = _network(value, f"{name}: edgefaas_wan_reserved[{i}]", problems)
        if network is not None:
            found.append((f"edgefaas_wan_reserved[{i}]", network))
    for key in ("ssh_hostname", "bgp_address"):
        with contextlib.suppress(ValueError):
            found.append((f"{key} of {name}", IPv4Network(f"{data.get(key)}/32")))
    return found


def _slot(name: str, size: int) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") % size


def allocate(
    names: Iterable[str], pool: IPv4Network, explicit: Mapping[str, IPv4Address], taken: Iterable[IPv4Address]
) -> tuple[dict[str, FunctionAddress], list[str]]:
    """Every function's address: explicit ones as given, the others at their name's hash slot
    among the pool's host addresses, probing onward past used ones. (addresses, problems)."""
    hosts = list(pool.hosts()) if pool.prefixlen < 31 else list(pool)
    used = {a for a in taken} | set(explicit.values())
    out = {n: FunctionAddress(a, int(a) - int(pool.network_address)) for n, a in explicit.items()}
    problems = []
    for name in sorted(set(names) - set(explicit)):
        start = _slot(name, len(hosts))
        for step in range(len(hosts)):
            candidate = hosts[(start + step) % len(hosts)]
            if candidate not in used:
                used.add(candidate)
                out[name] = FunctionAddress(candidate, int(candidate) - int(pool.network_address))
                break
        else:
            problems.append(
                f"edgefaas_wan_function_pool: {pool} has no free address left for function {name}"
            )
    return out, problems


def plan_wan(hosts: Sequence[tuple[str, HostDataLike]]) -> dict[str, WanPlan]:
    """Every `sonic` host's WAN plan (name, data with group defaults, in inventory order);
    {} when no switch sets edgefaas_wan_anycast and edgefaas_wan_function_pool.
    Raises WanError naming every problem."""
    problems: list[str] = []
    if not hosts:
        return {}
    enabled = [
        n for n, d in hosts if _get(d, "edgefaas_wan_anycast") or _get(d, "edgefaas_wan_function_pool")
    ]
    if not enabled:
        return {}
    first_name, first = hosts[0]
    for key in COMMON:
        for name, data in hosts[1:]:
            if _get(data, key) != _get(first, key):
                problems.append(
                    f"{name}: {key}: {_get(data, key)!r} differs from {first_name}'s {_get(first, key)!r}; "
                    "every switch announces the same WAN"
                )
    for key in ("edgefaas_wan_anycast", "edgefaas_wan_function_pool"):
        for name, data in hosts:
            if _get(data, key) is None:
                problems.append(f"{name}: {key}: not given, but the WAN is configured on {enabled[0]}")
    if problems:
        raise WanError(problems)

    anycast = single_address(
        _get(first, "edgefaas_wan_anycast"), f"{first_name}: edgefaas_wan_anycast", problems
    )
    pool = _network(
        _get(first, "edgefaas_wan_function_pool"), f"{first_name}: edgefaas_wan_function_pool", problems
    )
    api_community = standard_community(
        _get(first, "edgefaas_wan_api_community"), f"{first_name}: edgefaas_wan_api_community", problems
    )
    function_community = standard_community(
        _get(first, "edgefaas_wan_function_community"),
        f"{first_name}: edgefaas_wan_function_community",
        problems,
    )
    service_port = _port(
        _get(first, "edgefaas_wan_service_port"), f"{first_name}: edgefaas_wan_service_port", problems
    )
    if pool is not None and pool.prefixlen < 16:
        # A function's id is its route-map entry's sequence number, below FRR's 65535.
        problems.append(f"{first_name}: edgefaas_wan_function_pool: {pool} is too large (at least /16)")
        pool = None
    if pool is not None and pool.prefixlen > 30:
        problems.append(f"{first_name}: edgefaas_wan_function_pool: {pool} is too small (at most /30)")
        pool = None
    if pool is not None and anycast is not None and anycast in pool:
        problems.append(
            f"{first_name}: edgefaas_wan_anycast: {anycast} is inside edgefaas_wan_function_pool {pool}"
        )

    api_ports: dict[str, int | None] = {}
    for name, data in hosts:
        api_ports[name] = _port(
            _get(data, "edgefaas_gateway_port"), f"{name}: edgefaas_gateway_port", problems
        )
        if service_port is not None and api_ports[name] == service_port:
            problems.append(
                f"{name}: edgefaas_wan_service_port: {service_port} is the gateway's API port too"
            )
        for what, subnet in _reserved(name, data, problems):
            if pool is not None and pool.overlaps(subnet):
                problems.append(f"{name}: edgefaas_wan_function_pool: {pool} overlaps {what} ({subnet})")
            if anycast is not None and anycast in subnet:
                problems.append(f"{name}: edgefaas_wan_anycast: {anycast} is inside {what} ({subnet})")

    # Explicit addresses, from every switch's data: two claims on one address must agree.
    explicit: dict[str, IPv4Address] = {}
    claimed: dict[IPv4Address, tuple[str, str]] = {}
    wanted = set()
    for name, data in hosts:
        wanted |= set(public_functions(data))
        given = _get(data, "edgefaas_wan_addresses")
        if not isinstance(given, Mapping):
            problems.append(f"{name}: edgefaas_wan_addresses: {given!r} must map function names to addresses")
            continue
        for function, value in sorted(given.items()):
            where = f"{name}: edgefaas_wan_addresses[{function!r}]"
            address = single_address(value, where, problems)
            if address is None:
                continue
            if pool is not None and address not in pool:
                problems.append(f"{where}: {address} is outside edgefaas_wan_function_pool {pool}")
                continue
            if pool is not None and address in (pool.network_address, pool.broadcast_address):
                problems.append(f"{where}: {address} is the pool's network or broadcast address")
                continue
            other = claimed.get(address)
            if other is not None and other[1] != function:
                problems.append(
                    f"{where}: {address} is claimed by {other[0]} for function {other[1]!r}; "
                    "one address serves one function"
                )
                continue
            if function in explicit and explicit[function] != address:
                problems.append(
                    f"{where}: {address}, but another switch gives {function!r} {explicit[function]}"
                )
                continue
            claimed[address] = (name, function)
            explicit[function] = address
    for function in sorted(set(explicit) - wanted):
        problems.append(
            f"{claimed[explicit[function]][0]}: edgefaas_wan_addresses[{function!r}]: no public function "
            f"{function!r} (edgefaas_functions with public, or edgefaas_public_functions)"
        )

    try:
        routing = plan_routing(hosts)
    except RoutingError as exc:
        problems += list(exc.problems)
        routing = {}
    if problems or pool is None or anycast is None:
        raise WanError(problems or ["the WAN plan is incomplete"])
    functions, more = allocate(wanted, pool, explicit, [anycast])
    if more:
        raise WanError(more)
    return {
        name: WanPlan(
            host=name,
            anycast=anycast,
            pool=pool,
            asn=routing[name].asn,
            api_port=api_ports[name],  # type: ignore[arg-type]
            service_port=service_port,  # type: ignore[arg-type]
            api_community=api_community,  # type: ignore[arg-type]
            function_community=function_community,  # type: ignore[arg-type]
            functions=functions,
        )
        for name, _data in hosts
    }


def check_interfaces(plan: WanPlan, interfaces: Mapping[str, Iterable[IPv4Interface]]) -> None:
    """Refuses a plan whose pool or anycast address falls in a subnet of the switch's own
    interfaces (its management or lab network), seen on the device before anything is announced."""
    problems = []
    for ifname, ifaces in interfaces.items():
        for iface in ifaces:
            if iface.network.prefixlen == 32 or ifname == "lo":
                continue
            if plan.pool.overlaps(iface.network):
                problems.append(
                    f"{plan.host}: edgefaas_wan_function_pool: {plan.pool} overlaps "
                    f"{ifname}'s subnet {iface.network}"
                )
            if plan.anycast in iface.network:
                problems.append(
                    f"{plan.host}: edgefaas_wan_anycast: {plan.anycast} is inside "
                    f"{ifname}'s subnet {iface.network}"
                )
    if problems:
        raise WanError(problems)
