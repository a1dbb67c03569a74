"""Lab stand-in for SONiC's caclmgrd: the control-plane ACL from CONFIG_DB.

SONiC's caclmgrd (sonic-host-services, scripts/caclmgrd) turns CTRLPLANE tables of
ACL_TABLE and their ACL_RULE entries into the INPUT chain. This stand-in translates the
same tables with the same semantics:

- always accepted, in caclmgrd's order: loopback from 127.0.0.1/::1, BFD (once a BFD
  session exists), established and related flows, ICMP echo/unreachable/time-exceeded
  (and IPv6 neighbour discovery), DHCP, BGP (tcp/179);
- each CTRLPLANE table's services: SSH tcp/22, SNMP tcp+udp/161, NTP udp/123, ANY (every
  protocol and port), EXTERNAL_CLIENT tcp only, to the L4_DST_PORT or L4_DST_PORT_RANGE
  its rules give; the table's address family comes from its first rule with SRC_IP or
  SRC_IPV6 and rules of the other family are dropped; rules are applied in descending
  PRIORITY, compared as strings as caclmgrd does; IP_PROTOCOL is not read (caclmgrd
  does not read it: EXTERNAL_CLIENT is tcp only);
- the addresses of LOOPBACK_INTERFACE, INTERFACE, PORTCHANNEL_INTERFACE and
  VLAN_INTERFACE dropped after the rules, then TTL<2 probes accepted, then everything
  else dropped, but only if some rule was generated (no rules, no default drop).

Where it differs, and why:
- caclmgrd leaves BGP and BFD closed on the management port eth0 (`! -i eth0`); the lab's
  devices have one port, eth0, which carries what front-panel ports carry on a switch,
  so the stand-in does not exclude it (MGMT_PORT is None).
- caclmgrd flushes and deletes every filter chain; the stand-in rewrites INPUT alone, in
  one iptables-restore, and keeps other software's jumps to its own chains (K3S's) at
  the head of INPUT, as they were before, so a rebuild does not cut K3S off until its
  next resync.
- rules that would make iptables fail (bad address, port, action) are reported and
  skipped, so one malformed entry cannot block the whole update; a table whose rules
  name different destination ports is reported and skipped, because caclmgrd would
  apply whichever port it read last to every rule of the table.
- BFD counts as present once a BGP_NEIGHBOR has bfd "true" or STATE_DB
  BFD_SESSION_TABLE has an entry: the lab's FRR bfdd writes nothing to STATE_DB.

Runs on the device with the standard library and python3-redis only.
"""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from dataclasses import dataclass, field

# caclmgrd's ACL_SERVICES (REDFISH needs platform support, which the lab lacks).
SERVICES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "NTP": (("udp",), ("123",)),
    "SNMP": (("tcp", "udp"), ("161",)),
    "SSH": (("tcp",), ("22",)),
    "EXTERNAL_CLIENT": (("tcp",), ()),
    "ANY": (("any",), ("0",)),
}
ACTIONS = ("ACCEPT", "DROP")
INTERFACE_TABLES = ("LOOPBACK_INTERFACE", "VLAN_INTERFACE", "PORTCHANNEL_INTERFACE", "INTERFACE")
# The lab's eth0 is management port and data port at once (see the module docstring).
MGMT_PORT: str | None = None


@dataclass
class Ruleset:
    v4: list[str] = field(default_factory=list)
    v6: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    acl_rules: int = 0


def _both(ruleset: Ruleset, v4: str, v6: str | None = None) -> None:
    ruleset.v4.append(v4)
    ruleset.v6.append(v4 if v6 is None else v6)


def _exclude(mgmt_port: str | None) -> str:
    return f" ! -i {mgmt_port}" if mgmt_port else ""


def _ports(rule: dict[str, str]) -> tuple[str, ...] | None:
    """EXTERNAL_CLIENT's destination ports from one rule (None when it names none)."""
    if "L4_DST_PORT" in rule:
        port = int(rule["L4_DST_PORT"])
        if not 0 <= port <= 65535:
            raise ValueError(f"L4_DST_PORT {port} out of range")
        return (str(port),)
    if "L4_DST_PORT_RANGE" in rule:
        start, end = (int(p) for p in rule["L4_DST_PORT_RANGE"].split("-"))
        if not 0 <= start <= end <= 65535:
            raise ValueError(f"L4_DST_PORT_RANGE {rule['L4_DST_PORT_RANGE']} is not a port range")
        # caclmgrd expands a range into one rule per port; one multiport-free rule per port
        # keeps its semantics.
        return tuple(str(p) for p in range(start, end + 1))
    return None


def _family(rule: dict[str, str]) -> int | None:
    if rule.get("SRC_IPV6") or rule.get("DST_IPV6"):
        return 6
    if rule.get("SRC_IP") or rule.get("DST_IP"):
        return 4
    return None


def _check_rule(rule: dict[str, str]) -> None:
    for name, version in (("SRC_IP", 4), ("DST_IP", 4), ("SRC_IPV6", 6), ("DST_IPV6", 6)):
        if rule.get(name):
            net = ipaddress.ip_network(rule[name], strict=False)
            if net.version != version:
                raise ValueError(f"{name} {rule[name]} is not IPv{version}")
    if rule.get("PACKET_ACTION") not in ACTIONS:
        raise ValueError(f"PACKET_ACTION {rule.get('PACKET_ACTION')!r} is not one of {', '.join(ACTIONS)}")
    if rule.get("IN_PORTS") and not rule["IN_PORTS"].replace("-", "").replace(".", "").isalnum():
        raise ValueError(f"IN_PORTS {rule['IN_PORTS']!r} is not an interface name")
    _ports(rule)


def _table_rules(name: str, rules: dict[str, dict], service: str, out: Ruleset):
    """caclmgrd's walk over one table's rules: (family, ports, {priority: rule}) or None."""
    by_priority: dict[str, dict[str, str]] = {}
    family: int | None = None
    ports = SERVICES[service][1]
    seen_ports: set[tuple[str, ...]] = set()
    for rule_id in sorted(rules):
        rule = {k.upper(): str(v) for k, v in rules[rule_id].items()}
        where = f"ACL_RULE|{name}|{rule_id}"
        if not rule:
            out.problems.append(f"{where}: empty rule, skipped")
            continue
        if "PRIORITY" not in rule:
            out.problems.append(f"{where}: no PRIORITY, skipped")
            continue
        try:
            _check_rule(rule)
        except ValueError as exc:
            out.problems.append(f"{where}: {exc}, skipped")
            continue
        if rule["PRIORITY"] in by_priority:
            out.problems.append(
                f"{where}: PRIORITY {rule['PRIORITY']} repeats another rule's; it replaces it"
            )
        if service == "EXTERNAL_CLIENT":
            named = _ports(rule)
            if named is not None:
                seen_ports.add(named)
                ports = named
        rule_family = _family(rule)
        family = family or rule_family
        if rule_family and rule_family != family:
            out.problems.append(f"{where}: an IPv{rule_family} rule in an IPv{family} table, skipped")
            continue
        by_priority[rule["PRIORITY"]] = rule
    if family is None:
        if rules:
            out.problems.append(f"ACL_TABLE|{name}: no rule says IPv4 or IPv6 (SRC_IP/SRC_IPV6), skipped")
        return None
    if len(seen_ports) > 1:
        listed = ", ".join(sorted("-".join(p) if len(p) == 1 else f"{p[0]}-{p[-1]}" for p in seen_ports))
        out.problems.append(
            f"ACL_TABLE|{name}: its rules name different destination ports ({listed}); caclmgrd applies "
            "one port to every rule of a table, so give each port its own table; skipped"
        )
        return None
    if not ports:
        out.problems.append(f"ACL_TABLE|{name}: no destination port (L4_DST_PORT) for {service}, skipped")
        return None
    return family, ports, by_priority


def _rule_spec(rule: dict[str, str], protocol: str, port: str) -> str:
    spec = "-A INPUT"
    if protocol != "any":
        spec += f" -p {protocol}"
    if rule.get("SRC_IPV6"):
        spec += f" -s {rule['SRC_IPV6']}"
    elif rule.get("SRC_IP"):
        spec += f" -s {rule['SRC_IP']}"
    if rule.get("DST_IPV6"):
        spec += f" -d {rule['DST_IPV6']}"
    elif rule.get("DST_IP"):
        spec += f" -d {rule['DST_IP']}"
    if rule.get("IN_PORTS"):
        spec += f" -i {rule['IN_PORTS']}"
    if port != "0":
        spec += f" --dport {port}"
    return f"{spec} -j {rule['PACKET_ACTION']}"


def _ip2me(interfaces: dict[str, dict[str, dict]], out: Ruleset) -> None:
    for table in INTERFACE_TABLES:
        for key in sorted(interfaces.get(table, {})):
            if "|" not in key:
                continue
            cidr = key.split("|", 1)[1]
            try:
                net = ipaddress.ip_interface(cidr).network
            except ValueError:
                out.problems.append(f"{table}|{key}: {cidr!r} is not an address, skipped")
                continue
            addr = (
                next(net.hosts(), net.network_address) if table == "VLAN_INTERFACE" else net.network_address
            )
            rule = f"-A INPUT -d {addr}/{net.max_prefixlen} -j DROP"
            (out.v4 if net.version == 4 else out.v6).append(rule)


def translate(
    acl_tables: dict[str, dict],
    acl_rules: dict[str, dict],
    interfaces: dict[str, dict[str, dict]] | None = None,
    bfd_allowed: bool = False,
    mgmt_port: str | None = MGMT_PORT,
) -> Ruleset:
    """CONFIG_DB's tables (keys without the table name, lists decoded) -> INPUT rules."""
    out = Ruleset()
    _both(out, "-A INPUT -s 127.0.0.1/32 -i lo -j ACCEPT", "-A INPUT -s ::1/128 -i lo -j ACCEPT")
    if bfd_allowed:
        _both(out, f"-A INPUT -p udp -m multiport --dports 3784,4784{_exclude(mgmt_port)} -j ACCEPT")
    _both(out, "-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT")
    for kind in ("echo-request", "echo-reply", "destination-unreachable", "time-exceeded"):
        _both(
            out,
            f"-A INPUT -p icmp --icmp-type {kind} -j ACCEPT",
            f"-A INPUT -p icmpv6 --icmpv6-type {kind} -j ACCEPT",
        )
    for kind in (
        "neighbor-solicitation",
        "neighbor-advertisement",
        "router-solicitation",
        "router-advertisement",
    ):
        out.v6.append(f"-A INPUT -p icmpv6 --icmpv6-type {kind} -j ACCEPT")
    _both(out, "-A INPUT -p udp --dport 67:68 -j ACCEPT")
    _both(out, "-A INPUT -p udp --dport 546:547 -j ACCEPT")
    _both(out, f"-A INPUT -p tcp --dport 179{_exclude(mgmt_port)} -j ACCEPT")

    rules_by_table: dict[str, dict[str, dict]] = {}
    for key, rule in acl_rules.items():
        table, sep, rule_id = key.partition("|")
        if not sep:
            out.problems.append(f"ACL_RULE|{key}: key is not TABLE|RULE, skipped")
            continue
        rules_by_table.setdefault(table, {})[rule_id] = rule
    for name in sorted(acl_tables):
        table = acl_tables[name]
        if not table or table.get("type") != "CTRLPLANE":
            continue
        services = table.get("services")
        if not services:
            out.problems.append(f"ACL_TABLE|{name}: CTRLPLANE table without services, skipped")
            continue
        if isinstance(services, str):
            services = services.split(",")
        for service in services:
            if service not in SERVICES:
                out.problems.append(f"ACL_TABLE|{name}: unrecognized service {service!r}, ignored")
                continue
            walked = _table_rules(name, rules_by_table.get(name, {}), service, out)
            if walked is None:
                continue
            family, ports, by_priority = walked
            target = out.v6 if family == 6 else out.v4
            # caclmgrd sorts the PRIORITY strings themselves, highest first.
            for priority in sorted(by_priority, reverse=True):
                for protocol in SERVICES[service][0]:
                    for port in ports:
                        target.append(_rule_spec(by_priority[priority], protocol, port))
                        out.acl_rules += 1

    _ip2me(interfaces or {}, out)
    out.v4.append("-A INPUT -p icmp -m ttl --ttl-lt 2 -j ACCEPT")
    out.v6.append("-A INPUT -p ipv6-icmp -m hl --hl-lt 2 -j ACCEPT")
    for protocol in ("udp", "tcp"):
        out.v4.append(f"-A INPUT -p {protocol} -m ttl --ttl-lt 2 --dport 1025:65535 -j ACCEPT")
        out.v6.append(f"-A INPUT -p {protocol} -m hl --hl-lt 2 --dport 1025:65535 -j ACCEPT")
    if out.acl_rules > 0:
        _both(out, "-A INPUT -j DROP")
    return out


def foreign_jumps(listing: str) -> list[str]:
    """Rules in `iptables -S INPUT` output that jump to another program's own chain."""
    kept = []
    for line in listing.splitlines():
        words = line.split()
        if words[:2] != ["-A", "INPUT"] or "-j" not in words:
            continue
        target = words[words.index("-j") + 1]
        if target not in ("ACCEPT", "DROP", "REJECT", "RETURN", "LOG"):
            kept.append(line)
    return kept


def restore_text(rules: list[str], keep: list[str] = ()) -> str:
    """iptables-restore --noflush input that replaces INPUT with `keep` + `rules` at once."""
    return "\n".join(["*filter", ":INPUT ACCEPT [0:0]", "-F INPUT", *keep, *rules, "COMMIT", ""])


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _apply(command: str, rules: list[str]) -> None:
    listing = subprocess.run([command, "-w", "-S", "INPUT"], capture_output=True, text=True)
    keep = foreign_jumps(listing.stdout) if listing.returncode == 0 else []
    proc = subprocess.run(
        [f"{command}-restore", "-w", "--noflush"],
        input=restore_text(rules, keep),
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{command}-restore failed: {proc.stderr.strip()}")


def apply_from_file(path: str) -> None:
    """Apply the ACL of a config_db.json before the network comes up (and the database)."""
    import json

    with open(path) as f:
        config = json.load(f)
    ruleset = translate(config.get("ACL_TABLE", {}), config.get("ACL_RULE", {}), config)
    for problem in ruleset.problems:
        _log(f"caclmgrd-lab: {problem}")
    for command, rules in (("iptables", ruleset.v4), ("ip6tables", ruleset.v6)):
        try:
            _apply(command, rules)
        except (RuntimeError, OSError) as exc:
            _log(f"caclmgrd-lab: {exc}")
            continue
        _log(f"caclmgrd-lab: applied {len(rules)} {command} INPUT rules from {path}")


def main() -> None:
    if sys.argv[1:2] == ["--from-file"]:
        apply_from_file(sys.argv[2])
        return
    try:
        from . import sonic_db
    except ImportError:  # run as a script from the device's copy
        import sonic_db

    watched = {
        "CONFIG_DB": ("ACL_TABLE", "ACL_RULE", "BGP_NEIGHBOR", *INTERFACE_TABLES),
        "STATE_DB": ("BFD_SESSION_TABLE",),
    }
    last: tuple[list[str], list[str]] | None = None

    def rebuild() -> bool:
        nonlocal last
        config = sonic_db.connect("CONFIG_DB")
        tables = sonic_db.read_tables(config, ("ACL_TABLE", "ACL_RULE", "BGP_NEIGHBOR", *INTERFACE_TABLES))
        state = sonic_db.connect("STATE_DB")
        bfd = any(str(n.get("bfd", "")).lower() == "true" for n in tables["BGP_NEIGHBOR"].values()) or bool(
            sonic_db.read_table(state, "BFD_SESSION_TABLE")
        )
        ruleset = translate(tables["ACL_TABLE"], tables["ACL_RULE"], tables, bfd_allowed=bfd)
        for problem in ruleset.problems:
            _log(f"caclmgrd-lab: {problem}")
        if last == (ruleset.v4, ruleset.v6):
            return True
        applied = True
        for command, rules in (("iptables", ruleset.v4), ("ip6tables", ruleset.v6)):
            try:
                _apply(command, rules)
            except (RuntimeError, OSError) as exc:
                _log(f"caclmgrd-lab: {exc}")
                applied = False
                continue
            _log(f"caclmgrd-lab: applied {len(rules)} {command} INPUT rules ({ruleset.acl_rules} from ACLs)")
        last = (ruleset.v4, ruleset.v6) if applied else None
        return applied

    sonic_db.run_forever("caclmgrd-lab", watched, rebuild, _log)


if __name__ == "__main__":
    main()
