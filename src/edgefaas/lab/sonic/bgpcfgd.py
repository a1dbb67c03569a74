"""Lab stand-in for SONiC's bgpcfgd: FRR's configuration from CONFIG_DB and STATE_DB.

SONiC's bgpcfgd (sonic-buildimage, src/sonic-bgpcfgd) renders FRR configuration in the
bgp container from CONFIG_DB and pushes it to FRR live. This stand-in renders the parts
the blueprint uses, after bgpcfgd's templates (docker-fpm-frr/frr/bgpd) and managers:

- `router bgp <DEVICE_METADATA|localhost bgp_asn>` with bgpcfgd's global settings
  (log-neighbor-changes, no default ipv4-unicast, no ebgp-requires-policy); router-id
  from DEVICE_METADATA bgp_router_id, else Loopback0's IPv4 address, else the first
  loopback's; `network <that address>/32` so peers learn the loopback (bgpd.main.conf.j2);
- BGP_NEIGHBOR|<ip>: remote-as asn, description name, timers when keepalive/holdtime
  differ from 60/180, timers connect 10, shutdown when admin_status is down, activated
  in its address family with soft-reconfiguration inbound (general/instance.conf.j2);
  `neighbor <ip> bfd` when the entry's `bfd` is "true" (the leaf of sonic-bgp-common.yang
  that SONiC's frrcfgd renders; bgpcfgd's own templates have no BFD);
- BGP_PEER_RANGE|<name>: a passive peer group, ebgp-multihop 255, remote-as peer_asn,
  `bgp listen range` per ip_range, update-source src_address (dynamic/instance.conf.j2);
- STATE_DB ADVERTISE_NETWORK_TABLE|[<vrf>|]<prefix>: `network <prefix>` with
  `no bgp network import-check` while any is advertised; `route-map <profile>_RM` when
  the entry names a profile SONiC knows (FROM_SDN_SLB_ROUTES, FROM_SDN_APPLIANCE_ROUTES),
  whose route-map sets the community of APPL_DB BGP_PROFILE_TABLE:<profile> community_id
  and origin incomplete (managers_advertise_rt.py, managers_rm.py); deleting the key
  withdraws the prefix.
- LOOPBACK_INTERFACE entries become dummy netdevs with their addresses (what intfmgrd
  does on a switch), removed when the entries go; on a kernel without dummy netdevs the
  addresses go on `lo`, labelled lo:LoopbackN.

Left out: VRFs other than default, BGP_MONITORS, STATIC_ROUTE, BGP_AGGREGATE_ADDRESS,
SRv6, allow-lists and the peer route-maps SONiC's policies templates add, and the
AS-path prepend of a profile's route-map (bgpcfgd takes that ASN from its deployment-id
constants, which the lab has none of). It owns FRR's whole configuration and applies it
with FRR's frr-reload.py, which changes only what differs and never restarts bgpd;
bgpcfgd pushes vtysh commands instead. Like bgpcfgd, it leaves alone what others put into
FRR: EDGEFAAS_* prefix-lists and route-maps and the entries of other route-maps that use
them (edgefaas.sonic.announce's per-function communities) are carried over from the running
configuration into every reload. Malformed entries are logged and skipped.

Runs on the device with the standard library and python3-redis only.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field

# The profiles bgpcfgd accepts in ADVERTISE_NETWORK_TABLE (managers_rm.py ROUTE_MAPS).
ROUTE_MAPS = ("FROM_SDN_SLB_ROUTES", "FROM_SDN_APPLIANCE_ROUTES")
LOOPBACK = re.compile(r"^Loopback\d{1,4}$")
PEER_GROUP = re.compile(r"^[A-Za-z0-9_.-]{1,63}$")
FRR_CONF = "/etc/frr/frr.conf"
FRR_RELOAD = "/usr/lib/frr/frr-reload.py"
VTYSH = "/usr/bin/vtysh"


@dataclass
class Rendered:
    text: str
    problems: list[str] = field(default_factory=list)
    # Loopback netdev name -> its addresses ("10.1.0.1/32").
    loopbacks: dict[str, set[str]] = field(default_factory=dict)


def _asn(value: object) -> int:
    asn = int(str(value))
    if not 1 <= asn <= 4294967295:
        raise ValueError(f"ASN {asn} out of range 1-4294967295")
    return asn


def _loopbacks(table: dict[str, dict], problems: list[str]) -> dict[str, set[str]]:
    loopbacks: dict[str, set[str]] = {}
    for key in sorted(table):
        name, _, cidr = key.partition("|")
        if not LOOPBACK.match(name):
            problems.append(f"LOOPBACK_INTERFACE|{key}: {name!r} is not a LoopbackN name, skipped")
            continue
        if not cidr:
            loopbacks.setdefault(name, set())
            continue
        try:
            addr = ipaddress.ip_interface(cidr)
        except ValueError:
            problems.append(f"LOOPBACK_INTERFACE|{key}: {cidr!r} is not an address/prefix, skipped")
            continue
        loopbacks.setdefault(name, set()).add(str(addr))
    return loopbacks


def _loopback_v4(loopbacks: dict[str, set[str]], name: str) -> str | None:
    v4 = sorted(a for a in loopbacks.get(name, ()) if ipaddress.ip_interface(a).version == 4)
    return str(ipaddress.ip_interface(v4[0]).ip) if v4 else None


def _router_id(metadata: dict, loopbacks: dict[str, set[str]], problems: list[str]) -> str | None:
    if metadata.get("bgp_router_id"):
        try:
            return str(ipaddress.IPv4Address(metadata["bgp_router_id"]))
        except ValueError:
            problems.append(
                f"DEVICE_METADATA|localhost: bgp_router_id {metadata['bgp_router_id']!r} is not IPv4"
            )
    for name in sorted(loopbacks, key=lambda n: (n != "Loopback0", int(n[len("Loopback") :]))):
        address = _loopback_v4(loopbacks, name)
        if address:
            return address
    return None


def _neighbor(
    key: str, entry: dict, problems: list[str]
) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, list[str]] | None:
    where = f"BGP_NEIGHBOR|{key}"
    vrf, sep, ip = key.rpartition("|")
    if sep and vrf != "default":
        problems.append(f"{where}: VRF {vrf!r} is not supported by the lab stand-in, skipped")
        return None
    try:
        addr = ipaddress.ip_address(ip)
        asn = _asn(entry.get("asn", ""))
        keepalive = int(entry.get("keepalive", 60))
        holdtime = int(entry.get("holdtime", 180))
        if not (0 <= keepalive <= 65535 and (holdtime == 0 or 3 <= holdtime <= 65535)):
            raise ValueError(f"timers {keepalive}/{holdtime} out of range")
        if entry.get("local_addr"):
            ipaddress.ip_address(entry["local_addr"])
        admin = entry.get("admin_status", "up")
        if admin not in ("up", "down"):
            raise ValueError(f"admin_status {admin!r} is not up or down")
        bfd = str(entry.get("bfd", "false")).lower()
        if bfd not in ("true", "false"):
            raise ValueError(f"bfd {entry['bfd']!r} is not true or false")
        name = str(entry.get("name", ""))
        if any(c in name for c in "\n\r!"):
            raise ValueError(f"name {name!r} cannot be an FRR description")
    except ValueError as exc:
        problems.append(f"{where}: {exc}, skipped")
        return None
    lines = [f" neighbor {addr} remote-as {asn}"]
    if name:
        lines.append(f" neighbor {addr} description {name}")
    if keepalive != 60 or holdtime != 180:
        lines.append(f" neighbor {addr} timers {keepalive} {holdtime}")
    lines.append(f" neighbor {addr} timers connect 10")
    if bfd == "true":
        lines.append(f" neighbor {addr} bfd")
    if admin == "down":
        lines.append(f" neighbor {addr} shutdown")
    return addr, lines


def _peer_range(key: str, entry: dict, problems: list[str]) -> tuple[str, list[str]] | None:
    where = f"BGP_PEER_RANGE|{key}"
    name = str(entry.get("name") or key)
    try:
        if not PEER_GROUP.match(name):
            raise ValueError(f"name {name!r} is not a peer-group name")
        if "peer_asn" not in entry:
            # bgpcfgd falls back to its deployment-id ASN map, which the lab has none of.
            raise ValueError("no peer_asn")
        asn = _asn(entry["peer_asn"])
        ranges = [
            ipaddress.ip_network(r.strip()) for r in str(entry.get("ip_range", "")).split(",") if r.strip()
        ]
        if not ranges:
            raise ValueError("no ip_range")
        source = str(ipaddress.ip_interface(entry["src_address"]).ip) if entry.get("src_address") else None
    except (ValueError, TypeError) as exc:
        problems.append(f"{where}: {exc}, skipped")
        return None
    lines = [
        f" neighbor {name} peer-group",
        f" neighbor {name} passive",
        f" neighbor {name} ebgp-multihop 255",
        f" neighbor {name} remote-as {asn}",
    ]
    if source:
        lines.append(f" neighbor {name} update-source {source}")
    lines += [f" bgp listen range {r} peer-group {name}" for r in ranges]
    return name, lines


def _advertisements(
    table: dict[str, dict], profiles: dict[str, dict], problems: list[str]
) -> tuple[list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str | None]], list[str]]:
    routes = []
    used: set[str] = set()
    for key in sorted(table):
        where = f"ADVERTISE_NETWORK_TABLE|{key}"
        vrf, sep, prefix = key.rpartition("|")
        if sep and vrf != "default":
            problems.append(f"{where}: VRF {vrf!r} is not supported by the lab stand-in, skipped")
            continue
        try:
            network = ipaddress.ip_network(prefix)
        except ValueError:
            problems.append(f"{where}: {prefix!r} is not a prefix, skipped")
            continue
        data = {k: v for k, v in table[key].items() if k}
        profile = data.get("profile")
        if data and profile not in ROUTE_MAPS:
            problems.append(f"{where}: profile {profile!r} is not one of {', '.join(ROUTE_MAPS)}, skipped")
            continue
        routes.append((network, profile))
        if profile:
            used.add(profile)
    route_maps = []
    for profile in sorted(used):
        community = str(profiles.get(profile, {}).get("community_id", ""))
        parts = community.split(":")
        if len(parts) != 2 or not all(p.isdigit() and int(p) < 65536 for p in parts):
            # bgpcfgd makes no route-map then; FRR announces no prefix whose route-map is missing.
            problems.append(
                f"BGP_PROFILE_TABLE:{profile}: community_id {community!r} missing or not AA:NN; "
                f"prefixes with profile {profile} are not announced"
            )
            continue
        route_maps += [
            f"route-map {profile}_RM permit 100",
            f" set community {community}",
            " set origin incomplete",
            "exit",
            "!",
        ]
    return routes, route_maps


def render(config: dict[str, dict], state: dict[str, dict], appl: dict[str, dict], hostname: str) -> Rendered:
    """FRR's integrated configuration from the tables (keys without the table name)."""
    problems: list[str] = []
    loopbacks = _loopbacks(config.get("LOOPBACK_INTERFACE", {}), problems)
    head = [
        "frr defaults traditional",
        f"hostname {hostname}",
        "log syslog informational",
        "service integrated-vtysh-config",
        "!",
    ]
    metadata = config.get("DEVICE_METADATA", {}).get("localhost", {})
    raw_asn = str(metadata.get("bgp_asn", ""))
    if raw_asn.lower() in ("", "none", "null"):
        return Rendered("\n".join(head) + "\n", problems, loopbacks)
    try:
        asn = _asn(raw_asn)
    except ValueError as exc:
        problems.append(f"DEVICE_METADATA|localhost: bgp_asn {raw_asn!r}: {exc}; no BGP configured")
        return Rendered("\n".join(head) + "\n", problems, loopbacks)

    bgp = [f"router bgp {asn}"]
    router_id = _router_id(metadata, loopbacks, problems)
    if router_id:
        bgp.append(f" bgp router-id {router_id}")
    bgp += [" bgp log-neighbor-changes", " no bgp default ipv4-unicast", " no bgp ebgp-requires-policy"]
    routes, route_maps = _advertisements(
        state.get("ADVERTISE_NETWORK_TABLE", {}), appl.get("BGP_PROFILE_TABLE", {}), problems
    )
    if routes:
        bgp.append(" no bgp network import-check")
    families: dict[int, list[str]] = {4: [], 6: []}
    lo0 = _loopback_v4(loopbacks, "Loopback0")
    if lo0:
        families[4].append(f"  network {lo0}/32")
    for network, profile in routes:
        families[network.version].append(
            f"  network {network}" + (f" route-map {profile}_RM" if profile else "")
        )
    neighbors = config.get("BGP_NEIGHBOR", {})
    parsed = [n for key in neighbors if (n := _neighbor(key, neighbors[key], problems))]
    for addr, lines in sorted(parsed, key=lambda n: (n[0].version, int(n[0]))):
        bgp += lines
        families[addr.version] += [
            f"  neighbor {addr} activate",
            f"  neighbor {addr} soft-reconfiguration inbound",
        ]
    ranges = config.get("BGP_PEER_RANGE", {})
    for key in sorted(ranges):
        group = _peer_range(key, ranges[key], problems)
        if group:
            name, lines = group
            bgp += lines
            for family in (4, 6):
                families[family].append(f"  neighbor {name} activate")
    for family, lines in families.items():
        if lines:
            bgp += [" !", f" address-family ipv{family} unicast", *lines, " exit-address-family"]
    bgp += ["exit", "!"]
    return Rendered("\n".join([*head, *bgp, *route_maps]) + "\n", problems, loopbacks)


def loopback_commands(
    wanted: dict[str, set[str]], present: dict[str, set[str]], dummy: bool = True
) -> list[list[str]]:
    """`ip` commands that make the loopbacks `present` into `wanted`.

    With `dummy`, each LoopbackN is a dummy netdev, as on a switch. Kernels built without
    dummy interfaces get the addresses on `lo` instead, labelled lo:LoopbackN: FRR sees
    the same connected /32s, only under `lo`.
    """
    if not dummy:
        commands = []
        for name in sorted(set(present) | set(wanted)):
            have, want = present.get(name, set()), wanted.get(name, set())
            commands += [["ip", "addr", "del", a, "dev", "lo"] for a in sorted(have - want)]
            commands += [
                ["ip", "addr", "add", a, "dev", "lo", "label", f"lo:{name}"] for a in sorted(want - have)
            ]
        return commands
    commands = [["ip", "link", "del", name] for name in sorted(set(present) - set(wanted))]
    for name in sorted(wanted):
        have = present.get(name)
        if have is None:
            commands += [["ip", "link", "add", name, "type", "dummy"], ["ip", "link", "set", name, "up"]]
            have = set()
        commands += [["ip", "addr", "del", a, "dev", name] for a in sorted(have - wanted[name])]
        commands += [["ip", "addr", "add", a, "dev", name] for a in sorted(wanted[name] - have)]
    return commands


def present_loopbacks(ip_json: str, dummy: bool = True) -> dict[str, set[str]]:
    """The loopbacks in `ip -j addr show` output: LoopbackN netdevs, or lo:LoopbackN labels."""
    present: dict[str, set[str]] = {}
    for link in json.loads(ip_json or "[]"):
        name = link.get("ifname", "")
        for addr in link.get("addr_info", []):
            label = addr.get("label", "")
            owner = name if dummy else label.removeprefix("lo:") if name == "lo" else ""
            if LOOPBACK.match(owner) and addr.get("scope") != "link":
                present.setdefault(owner, set()).add(f"{addr['local']}/{addr['prefixlen']}")
        if dummy and LOOPBACK.match(name):
            present.setdefault(name, set())
    return present


def dummy_supported() -> bool:
    """Whether this kernel can make dummy netdevs (some VM kernels are built without them)."""
    probe = "efLabProbe0"
    made = subprocess.run(["ip", "link", "add", probe, "type", "dummy"], capture_output=True).returncode == 0
    if made:
        subprocess.run(["ip", "link", "del", probe], capture_output=True)
    return made


def only_adds(applied: str | None, rendered: str) -> bool:
    """Whether `rendered` is `applied` with lines added and none removed or changed.

    Such a change (a new neighbour, a new announcement) can be pushed as it is with
    `vtysh -f`, which only adds; a removal needs frr-reload.py, which computes the `no`
    commands, at several times the cost."""
    if not applied:
        return False
    removed = (
        line for line in difflib.ndiff(applied.splitlines(), rendered.splitlines()) if line.startswith("- ")
    )
    return next(removed, None) is None


def others_objects(running: str) -> str:
    """What EdgeFaaS's announcer configured in FRR (`show running-config`), as configuration text:
    EDGEFAAS_* prefix-lists, EDGEFAAS_* route-map entries, and any route-map entry that calls or
    matches them. A reload from the rendered configuration alone would delete them."""
    blocks: list[list[str]] = []
    current: list[str] | None = None
    for raw in running.splitlines():
        line = raw.rstrip()
        if current is not None and line.startswith(" "):
            current.append(line)
            continue
        current = None
        if line.startswith(("ip prefix-list EDGEFAAS_", "ipv6 prefix-list EDGEFAAS_")):
            blocks.append([line])
        elif line.startswith("route-map "):
            current = [line]
            blocks.append(current)
    kept = []
    for block in blocks:
        head = block[0]
        if head.startswith("route-map ") and not (
            head.startswith("route-map EDGEFAAS_") or any("EDGEFAAS_" in line for line in block[1:])
        ):
            continue
        kept += block + (["exit", "!"] if head.startswith("route-map ") else [])
    return "\n".join(kept) + "\n" if kept else ""


def _running_config() -> str:
    proc = subprocess.run([VTYSH, "-c", "show running-config"], capture_output=True, text=True)
    return proc.stdout if proc.returncode == 0 else ""


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _sync_loopbacks(wanted: dict[str, set[str]], dummy: bool) -> None:
    listing = subprocess.run(["ip", "-j", "addr", "show"], capture_output=True, text=True)
    for command in loopback_commands(wanted, present_loopbacks(listing.stdout, dummy), dummy):
        proc = subprocess.run(command, capture_output=True, text=True)
        outcome = "ok" if proc.returncode == 0 else f"failed: {proc.stderr.strip()}"
        _log(f"bgpcfgd-lab: {' '.join(command)}: {outcome}")


def _write_conf(text: str, path: str = FRR_CONF) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as out:
        out.write(text)
    try:
        import pwd

        frr = pwd.getpwnam("frr")
        os.chown(tmp, frr.pw_uid, frr.pw_gid)
    except (KeyError, OSError):
        pass
    os.chmod(tmp, 0o640)
    os.replace(tmp, path)


def main() -> None:
    try:
        from . import sonic_db
    except ImportError:  # run as a script from the device's copy
        import sonic_db

    watched = {
        "CONFIG_DB": ("DEVICE_METADATA", "LOOPBACK_INTERFACE", "BGP_NEIGHBOR", "BGP_PEER_RANGE"),
        "STATE_DB": ("ADVERTISE_NETWORK_TABLE",),
        "APPL_DB": ("BGP_PROFILE_TABLE",),
    }
    applied: str | None = None
    netdevs: dict[str, set[str]] | None = None
    dummy = dummy_supported()
    if not dummy:
        _log("bgpcfgd-lab: this kernel has no dummy netdevs; loopback addresses go on lo as lo:LoopbackN")

    def rebuild() -> bool:
        nonlocal applied, netdevs
        config = sonic_db.read_tables(sonic_db.connect("CONFIG_DB"), watched["CONFIG_DB"])
        state = sonic_db.read_tables(sonic_db.connect("STATE_DB"), watched["STATE_DB"])
        appl = sonic_db.read_tables(sonic_db.connect("APPL_DB"), watched["APPL_DB"], separator=":")
        hostname = str(config["DEVICE_METADATA"].get("localhost", {}).get("hostname") or os.uname().nodename)
        rendered = render(config, state, appl, hostname)
        for problem in rendered.problems:
            _log(f"bgpcfgd-lab: {problem}")
        if rendered.loopbacks != netdevs:
            _sync_loopbacks(rendered.loopbacks, dummy)
            netdevs = rendered.loopbacks
        if rendered.text == applied:
            return True
        _write_conf(rendered.text)
        proc = None
        if only_adds(applied, rendered.text):
            proc = subprocess.run([VTYSH, "-f", FRR_CONF], capture_output=True, text=True)
        if proc is None or proc.returncode != 0:
            kept = others_objects(_running_config())
            if kept:
                _write_conf(rendered.text + kept)
            proc = subprocess.run(
                [sys.executable, FRR_RELOAD, "--reload", "--stdout", FRR_CONF], capture_output=True, text=True
            )
        if proc.returncode != 0:
            tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
            _log(f"bgpcfgd-lab: frr-reload failed (retrying): {tail}")
            applied = None
            return False
        before = (applied or "").splitlines()
        diff = difflib.unified_diff(
            before, rendered.text.splitlines(), "applied", "rendered", n=0, lineterm=""
        )
        changed = [line for line in diff if line[:1] in "+-" and line[:3] not in ("+++", "---")]
        _log(f"bgpcfgd-lab: applied to FRR: {'; '.join(changed) or 'no change'}")
        applied = rendered.text
        return True

    sonic_db.run_forever("bgpcfgd-lab", watched, rebuild, _log)


if __name__ == "__main__":
    main()
