"""Every listening socket the blueprint leaves on a device, declared: who owns it and who may reach it.

The lab suite tests/integration/test_listeners.py lists every listening TCP and UDP socket
on every device and holds it against LISTENERS: a listener no row declares, a declared one
owned by another unit or user, or one bound to a wildcard address where the row says
loopback only, fails the suite. On SONiC switches it also holds the control-plane ACL
(the iptables INPUT rules caclmgrd writes from the deploys' CONFIG_DB tables) against the
rows' `acl`: the ACL must let the declared peers in, and nobody else, and must open no
port the table does not declare.

A row is per device role (device_roles: inventory groups, plus `all`, `gateway` for the hosts
that run an EdgeFaaS gateway and `database` for the one that runs their PostgreSQL), protocol
and port or port range. Ports that host data can move (edgefaas_gateway_port,
edgefaas_nats_client_port, ...) are declared at their defaults: a lab that moves one must say
so here. `owner` is the systemd
unit whose cgroup holds the process, or `kubepods` for a process in a K3S pod; `user` the
process's user name (a uid where the name is unknown on the host, as in a pod).

Reach (who may connect):
  loopback   the device itself: must be bound to 127.0.0.0/8 or ::1 only
  lab        the lab/management network (other devices, the operator): the ACL says whom
  pods       K3S pods and the K3S server's API server (kubelet-style ports)
  world      anyone who can route to the device, the SD-WAN side included

`acl` (SONiC only): the sources the control-plane ACL must admit to the port: "any",
"k3s_server" (its address), "gateways" (every gateway host's address), "other_gateways"
(every gateway host but this one). None: no deploy opens it (loopback, or SONiC's own
default rules: SSH, BGP, BFD, whose ACL this check leaves to SONiC). Both families are
checked: the deploys open IPv4 sources only, so IPv6 must admit nothing narrower rows forbid.

What the ACL cannot narrow: SONiC's caclmgrd (and the lab's stand-in) accepts TCP and UDP to
ports 1025-65535 from any sender whose packets arrive with TTL (hop limit) below 2, for
traceroute. A neighbour on the same segment can therefore reach a port above 1024 that the
table restricts to peers; each such service authenticates its callers as well (NATS token
and route password, PostgreSQL password, the agent's own source check).

No I/O here: the suite runs LISTING_COMMAND and `iptables -S INPUT` on each device;
parse_listing, parse_input_rules and the check_* functions are plain functions, tested in
tests/unit/test_ports.py.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from edgefaas.deploy import hosts
from edgefaas.deploy.gateways import database_plan, gateway_hosts

REACHES = ("loopback", "lab", "pods", "world")
ACL_SOURCES = ("any", "k3s_server", "gateways", "other_gateways")


@dataclass(frozen=True)
class Listener:
    """One declared listener (a row of the table)."""

    roles: tuple[str, ...]
    protocol: str  # tcp | udp
    ports: tuple[int, int]  # first, last (inclusive)
    owner: str  # systemd unit, or "kubepods"
    user: str
    reach: str
    acl: tuple[str, ...] | None
    why: str

    def covers(self, roles: Iterable[str], protocol: str, port: int) -> bool:
        return (
            protocol == self.protocol
            and self.ports[0] <= port <= self.ports[1]
            and bool(set(self.roles) & set(roles))
        )

    def describe(self) -> str:
        first, last = self.ports
        ports = str(first) if first == last else f"{first}-{last}"
        return f"{ports}/{self.protocol} {self.owner} as {self.user} ({self.reach})"


def _row(roles: str, spec: str, owner: str, user: str, reach: str, acl: str | None, why: str) -> Listener:
    port, protocol = spec.split("/")
    first, _, last = port.partition("-")
    return Listener(
        tuple(roles.split()),
        protocol,
        (int(first), int(last or first)),
        owner,
        user,
        reach,
        tuple(acl.split()) if acl else None,
        why,
    )


# fmt: off
LISTENERS: tuple[Listener, ...] = (
    # -- every device -------------------------------------------------------------------------------
    _row("all", "22/tcp", "ssh.service", "root", "world", None,
         "SSH: how pyinfra and the operator reach the device (SONiC's own ACL opens it)"),
    # -- SONiC: the switch's own services (the lab stands in for SONiC's containers) --------------
    _row("sonic", "6379/tcp", "redis-server.service", "redis", "loopback", None,
         "SONiC's Redis (CONFIG_DB, APPL_DB, STATE_DB): the switch's own daemons only"),
    _row("sonic", "179/tcp", "frr.service", "frr", "world", None,
         "BGP: the other switch and the SD-WAN provider edge (SONiC's own ACL opens it)"),
    _row("sonic", "2601/tcp", "frr.service", "frr", "loopback", None, "zebra's vty (vtysh)"),
    _row("sonic", "2605/tcp", "frr.service", "frr", "loopback", None, "bgpd's vty (vtysh)"),
    _row("sonic", "2616/tcp", "frr.service", "frr", "loopback", None, "staticd's vty (vtysh)"),
    _row("sonic", "2617/tcp", "frr.service", "frr", "loopback", None, "bfdd's vty (vtysh)"),
    _row("sonic", "3784/udp", "frr.service", "frr", "world", None,
         "BFD single-hop control packets from BGP peers (SONiC's own ACL opens it)"),
    _row("sonic", "3785/udp", "frr.service", "frr", "world", None, "BFD echo (RFC 5881)"),
    _row("sonic", "4784/udp", "frr.service", "frr", "world", None,
         "BFD multi-hop control packets (SONiC's own ACL opens it)"),
    _row("sonic", "49152-65535/udp", "frr.service", "frr", "world", None,
         "BFD's source ports, one per session, bound to the peering address (RFC 5881: 49152-65535)"),
    # -- K3S: the server ----------------------------------------------------------------------------
    _row("k3s_server", "6443/tcp", "k3s.service", "root", "lab", "any",
         "K3S supervisor and API server: agents join, kubectl and the gateways' accounts; TLS, "
         "client certificates or tokens"),
    _row("k3s_server", "6444/tcp", "k3s.service", "root", "loopback", None,
         "kube-apiserver behind the supervisor on 6443"),
    _row("k3s_server", "10257/tcp", "k3s.service", "root", "loopback", None,
         "kube-controller-manager's health and metrics"),
    _row("k3s_server", "10258/tcp", "k3s.service", "root", "loopback", None,
         "K3S's cloud-controller-manager's health and metrics"),
    _row("k3s_server", "10259/tcp", "k3s.service", "root", "loopback", None,
         "kube-scheduler's health and metrics"),
    # -- K3S: every node (the server's own kubelet, kube-proxy and containerd run in its process) --
    *(
        row
        for role, unit in (("k3s_server", "k3s.service"), ("k3s_agent", "k3s-agent.service"))
        for row in (
            _row(role, "10250/tcp", unit, "root", "pods", "any",
                 "kubelet: logs, exec and metrics for the API server (it checks client certificates)"),
            _row(role, "10248/tcp", unit, "root", "loopback", None, "kubelet's health check"),
            _row(role, "10249/tcp", unit, "root", "loopback", None, "kube-proxy's metrics"),
            _row(role, "10256/tcp", unit, "root", "loopback", None, "kube-proxy's health check"),
            _row(role, "10010/tcp", unit, "root", "loopback", None,
                 "containerd's CRI streaming server (exec/attach/port-forward, through the kubelet)"),
        )
    ),
    _row("k3s_agent", "6444/tcp", "k3s-agent.service", "root", "loopback", None,
         "the agent's client-side load balancer to the K3S server's API"),
    # -- node certification (deploys/nodeauth.py) ---------------------------------------------------
    _row("k3s_server", "8472/tcp", "edgefaas-nodeauth-server.service", "edgefaas-nodeauth", "lab", "any",
         "authentication server (HTTPS): enrollment (each device's secret), the CA and status"),
    _row("k3s_server", "8473/tcp", "edgefaas-nodeauth-server.service", "edgefaas-nodeauth", "loopback",
         None, "Parsec tenant admission webhook (HTTPS): the API server beside it calls it"),
    _row("k3s_agent", "8471/tcp", "edgefaas-nodeauth-agent.service", "edgefaas-nodeauth", "lab",
         "k3s_server", "authentication agent: answers the server's challenges, and only the server"),
    # -- EdgeFaaS gateways (deploys/edgefaas.py) --------------------------------------------------------
    _row("gateway", "8080/tcp", "edgefaas-gateway.service", "edgefaas", "world", "any",
         "the gateway's API and console, HTTPS only (admin password and license tokens)"),
    _row("gateway", "443/tcp", "edgefaas-gateway.service", "edgefaas", "world", "any",
         "functions at their SD-WAN addresses, HTTPS only (edgefaas_wan_service_port)"),
    _row("database", "5432/tcp", "postgresql@15-main.service", "postgres", "lab", "gateways",
         "PostgreSQL shared by the gateways, on the database host (password authentication)"),
    _row("gateway", "4222/tcp", "nats-server.service", "nats", "lab", "other_gateways",
         "NATS clients: the gateways' queue of asynchronous calls (token)"),
    _row("gateway", "6222/tcp", "nats-server.service", "nats", "lab", "other_gateways",
         "NATS cluster routes between the gateway hosts (route password)"),
    _row("gateway", "8222/tcp", "nats-server.service", "nats", "loopback", None,
         "NATS monitoring (health checks of the deploy)"),
    # -- the site's registry for image functions (deploys/registry.py) ----------------------------
    _row("k3s_server", "5000/tcp", "docker-registry.service", "docker-registry", "lab", "any",
         "OCI registry (HTTPS, htpasswd account): users push image functions, every K3S node pulls"),
    # -- Monitoring (deploys/monitoring.py): Debian's packages, as their user prometheus ----------------
    _row("k3s_server", "9090/tcp", "prometheus.service", "prometheus", "loopback", None,
         "Prometheus: the gateway beside it reads it for the console's plots (monitoring_prometheus_port)"),
    _row("k3s_server", "9093/tcp", "prometheus-alertmanager.service", "prometheus", "loopback", None,
         "Alertmanager: Prometheus beside it sends alerts (no cluster port: one for the site)"),
    _row("k3s_server k3s_agent", "9100/tcp", "prometheus-node-exporter.service", "prometheus", "lab",
         "k3s_server", "node exporter on the management address: Prometheus on the K3S server scrapes it"),
    # -- Triton (deploys/triton.py): a systemd service, or a host-network pod of K3S -----------------
    *(
        _row("sonic jetson", port, owner, user, "lab", "any", why)
        for owner, user in (("tritonserver.service", "triton"), ("kubepods", "10001"))
        for port, why in (
            ("8000/tcp", "Triton HTTP inference: functions and the face-expression demo"),
            ("8001/tcp", "Triton gRPC inference"),
            ("8002/tcp", "Triton metrics (Prometheus)"),
        )
    ),
)
# fmt: on

# One run per device: the listening sockets, then each listening process's user and cgroups
# (from the same listing, so a process that comes or goes in between cannot be misattributed).
LISTING_COMMAND = (
    "out=$(ss -Hltnup) || exit 1; printf '%s\\n' \"$out\"; echo '--owners--'; "
    "for p in $(printf '%s\\n' \"$out\" | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -un); do "
    'printf \'%s|%s|%s\\n\' "$p" "$(ps -o user:64= -p "$p" | tr -d \' \')" '
    "\"$(tr '\\n' ' ' < /proc/$p/cgroup 2>/dev/null)\"; done"
)
_SS_LINE = re.compile(r"^(?P<proto>tcp|udp)\s+\S+\s+\d+\s+\d+\s+(?P<local>\S+)\s+\S+\s*(?P<users>.*)$")
_USER = re.compile(r'\("(?P<process>[^"]*)",pid=(?P<pid>\d+)')


@dataclass(frozen=True)
class Owner:
    process: str
    pid: int
    user: str
    unit: str  # systemd unit, "kubepods", or "?" when the process was not seen


@dataclass(frozen=True)
class Socket:
    protocol: str
    address: str  # as ss prints it, without brackets or %interface: 0.0.0.0, *, ::, 127.0.0.1
    port: int
    owners: tuple[Owner, ...]

    def describe(self) -> str:
        who = ", ".join(f"{o.process} ({o.unit} as {o.user})" for o in self.owners) or "no process shown"
        return f"{self.protocol} {self.address}:{self.port} by {who}"


def unit_of_cgroups(cgroups: str) -> str:
    """The systemd unit a process runs in, from /proc/PID/cgroup; "kubepods" for a K3S pod."""
    if "kubepods" in cgroups:
        return "kubepods"
    paths = [line.split(":", 2)[2] for line in cgroups.split() if line.startswith("0::")]
    paths += [line.split(":", 2)[2] for line in cgroups.split() if ":name=systemd:" in line]
    for path in paths:
        for part in reversed(path.split("/")):
            if part.endswith((".service", ".scope")):
                return part
    return "?"


def parse_listing(text: str) -> list[Socket]:
    """LISTING_COMMAND's output as sockets with their owners; unparseable lines raise ValueError."""
    listing, _, owners_text = text.partition("--owners--")
    seen: dict[int, tuple[str, str]] = {}
    for line in owners_text.splitlines():
        if line.strip():
            pid, user, cgroups = [*line.split("|", 2), "", ""][:3]
            seen[int(pid)] = (user or "?", unit_of_cgroups(cgroups))
    sockets = []
    for line in listing.splitlines():
        if not line.strip():
            continue
        found = _SS_LINE.match(line.strip())
        if not found:
            raise ValueError(f"unexpected ss line: {line!r}")
        address, _, port = found["local"].rpartition(":")
        address = address.strip("[]").split("%")[0]
        owners = tuple(
            Owner(m["process"], int(m["pid"]), *seen.get(int(m["pid"]), ("?", "?")))
            for m in _USER.finditer(found["users"])
        )
        sockets.append(Socket(found["proto"], address, int(port), tuple(dict.fromkeys(owners))))
    return sockets


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:  # "*" and the like: every address
        return False


def check_listeners(
    sockets: Iterable[Socket], roles: Iterable[str], table: Iterable[Listener] = LISTENERS
) -> list[str]:
    """What in `sockets` (one device's, whose roles are `roles`) the table does not allow."""
    roles, table = set(roles), list(table)
    problems = []
    for socket in sockets:
        rows = [row for row in table if row.covers(roles, socket.protocol, socket.port)]
        if not rows:
            problems.append(f"undeclared listener: {socket.describe()}")
            continue
        if not socket.owners:
            problems.append(f"listener with no process to check its owner against: {socket.describe()}")
            continue
        owners = {(owner.unit, owner.user) for owner in socket.owners}
        matching = [row for row in rows if all(pair == (row.owner, row.user) for pair in owners)]
        if not matching:
            declared = "; ".join(row.describe() for row in rows)
            problems.append(f"owner differs: {socket.describe()}, declared {declared}")
            continue
        if all(row.reach == "loopback" for row in matching) and not is_loopback(socket.address):
            problems.append(f"declared loopback-only, bound to {socket.address}: {socket.describe()}")
    return problems


@dataclass(frozen=True)
class AclRule:
    """One plain ACCEPT rule of the INPUT chain: a protocol, its destination ports, a source."""

    protocol: str
    ports: tuple[int, ...]
    source: str  # a network, 0.0.0.0/0 (::/0 for IPv6) for any


ANY_SOURCE = frozenset({"0.0.0.0/0", "::/0"})


def parse_input_rules(text: str, any_source: str = "0.0.0.0/0") -> list[AclRule]:
    """The plain ACCEPT rules of `iptables -S INPUT` (`ip6tables`: any_source "::/0"): a protocol,
    a port or list of ports, maybe a source.

    Rules with any other match (an interface, a TTL, a connection state, ICMP) or a port range
    are SONiC's own defaults (loopback, replies, traceroute, DHCP) and are left out.
    """
    rules = []
    for line in text.splitlines():
        words = line.split()
        if words[:2] != ["-A", "INPUT"] or words[-2:] != ["-j", "ACCEPT"]:
            continue
        options = dict(zip(words[2:-2:2], words[3:-2:2], strict=False))
        known = {"-s", "-p", "-m", "--dport", "--dports"}
        if set(options) - known or len(words[2:-2]) % 2:
            continue
        ports_text = options.get("--dport") or options.get("--dports")
        if not ports_text or "-p" not in options or ":" in ports_text:
            continue
        if options.get("-m") not in (options["-p"], "multiport"):
            continue
        ports = tuple(int(p) for p in ports_text.split(","))
        rules.append(AclRule(options["-p"], ports, options.get("-s", any_source)))
    return rules


def check_acl(
    rules: Iterable[AclRule],
    roles: Iterable[str],
    peers: Mapping[str, Iterable[str]],
    listening: Iterable[tuple[str, int]],
    table: Iterable[Listener] = LISTENERS,
) -> list[str]:
    """What the switch's control-plane ACL (`rules`) admits that the table does not, or refuses
    that it promises. `peers` gives the addresses behind each ACL source name but "any";
    `listening` the (protocol, port) the device listens on: a declared service that is not
    deployed here needs no opening (pass none for a family the lab does not address, IPv6:
    then only what its rules admit too widely is reported)."""
    roles, table, rules, listening = set(roles), list(table), list(rules), set(listening)
    problems = []
    for row in table:
        if row.acl is None or not set(row.roles) & roles:
            continue
        expected = set()
        for name in row.acl:
            expected |= ANY_SOURCE if name == "any" else {_host_network(a) for a in peers.get(name, ())}
        for port in range(row.ports[0], row.ports[1] + 1):
            found = {r.source for r in rules if r.protocol == row.protocol and port in r.ports}
            if not expected & ANY_SOURCE and found - expected:
                problems.append(
                    f"ACL admits {', '.join(sorted(found - expected))} to {port}/{row.protocol}, "
                    f"declared {' '.join(row.acl)} only ({row.why})"
                )
            if (row.protocol, port) in listening and not found & ANY_SOURCE and expected - found:
                problems.append(
                    f"ACL does not admit {', '.join(sorted(expected - found))} to {port}/{row.protocol}, "
                    f"declared reachable by {' '.join(row.acl)} ({row.why})"
                )
    for rule in rules:
        for port in rule.ports:
            rows = [row for row in table if row.covers(roles, rule.protocol, port)]
            if not rows:
                problems.append(
                    f"ACL opens {port}/{rule.protocol} to {rule.source}: no listener is declared there"
                )
            elif all(row.reach == "loopback" for row in rows):
                problems.append(f"ACL opens {port}/{rule.protocol} to {rule.source}: declared loopback-only")
    return problems


def _host_network(address: str) -> str:
    return str(ipaddress.ip_network(address))  # 10.0.0.1 -> 10.0.0.1/32, fd00::1 -> fd00::1/128


def table_problems(table: Iterable[Listener] = LISTENERS) -> list[str]:
    """Rows that cannot be checked as written (unknown reach or ACL source, inverted range)."""
    problems = []
    for row in table:
        if row.protocol not in ("tcp", "udp") or not 1 <= row.ports[0] <= row.ports[1] <= 65535:
            problems.append(f"bad protocol or ports: {row}")
        if row.reach not in REACHES:
            problems.append(f"unknown reach {row.reach!r}: {row}")
        if row.acl is not None and (set(row.acl) - set(ACL_SOURCES) or row.reach == "loopback"):
            problems.append(f"bad acl {row.acl!r} for reach {row.reach}: {row}")
        if not row.why:
            problems.append(f"no reason given: {row}")
    return problems


def device_roles(current: Any, inventory: Iterable[Any]) -> set[str]:
    """The table's roles of inventory host `current`."""
    everyone = list(inventory)
    roles = {"all", *current.groups}
    if any(other.name == current.name for other in gateway_hosts(everyone)):
        roles.add("gateway")
        plan = database_plan(current, everyone)
        if plan.host is not None and plan.host.name == current.name:
            roles.add("database")
    return roles


def acl_peers(current: Any, inventory: Iterable[Any]) -> dict[str, list[str]]:
    """The addresses behind the ACL source names, as `current` sees them."""
    everyone = list(inventory)
    gateways = gateway_hosts(everyone)
    servers = [other for other in everyone if "k3s_server" in other.groups]
    return {
        "k3s_server": [hosts.address(other) for other in servers[:1]],
        "gateways": [hosts.address(other) for other in gateways],
        "other_gateways": [hosts.address(other) for other in gateways if other.name != current.name],
    }
