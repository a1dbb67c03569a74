"""What the switch-routing suite (test_sonic.py) and its figures (tests/perf/sonic_bench.py) share:
the switches' routing as the inventory plans it, their databases through `edgefaas config-db`,
and FRR's state from `vtysh` JSON. The same commands answer on a real SONiC switch (its host
has `vtysh` and the blueprint's venv)."""

from __future__ import annotations

import json
import shlex
from typing import Any

from edgefaas.deploy.sonic import Routing, plan_routing
from tests.integration.conftest import Device, connect

DEFAULT_VENV = "/opt/edgefaas/venv"
# SONiC's service-prefix profile: bgpcfgd makes route-map <PROFILE>_RM setting the community
# of APPL_DB BGP_PROFILE_TABLE:<PROFILE> community_id, which SONiC's controllers write (APPL_DB
# is not CONFIG_DB: redis-cli writes it here, as they would, where the switch has none).
PROFILE = "FROM_SDN_SLB_ROUTES"
TEST_COMMUNITY = "64999:100"
APPL_DB = "redis-cli -s /var/run/redis/redis.sock -n 0"


def switches(inventory) -> list[Device]:
    """The inventory's SONiC switches whose CONFIG_DB the deploys write."""
    return [
        connect(h.name, h.data, h.groups)
        for h in inventory.get_group("sonic")
        if h.data.get("sonic_config_db")
    ]


def routing(inventory) -> dict[str, Routing]:
    """Each switch's routing, planned from the inventory exactly as deploys/sonic.py plans it."""
    return plan_routing(
        [(h.name, h.data) for h in inventory.get_group("sonic") if h.data.get("sonic_config_db")]
    )


def tool(device: Device) -> str:
    return f"{device.data.get('edgefaas_venv') or DEFAULT_VENV}/bin/edgefaas config-db"


def db_get(device: Device, pattern: str, db: str = "CONFIG_DB") -> dict[str, dict[str, str]]:
    """Entries whose keys match `pattern`, as Redis holds them (lists as `field@`)."""
    return json.loads(device.host.check_output(f"{tool(device)} get --db {db} {shlex.quote(pattern)}"))


def db_set(device: Device, db: str, key: str, **fields: str) -> None:
    assignments = " ".join(shlex.quote(f"{name}={value}") for name, value in fields.items())
    device.host.check_output(f"{tool(device)} set --db {db} {shlex.quote(key)} {assignments}")


def db_del(device: Device, db: str, key: str) -> None:
    device.host.check_output(f"{tool(device)} del --db {db} {shlex.quote(key)}")


def apply(device: Device, owner: str, document: dict[str, Any]) -> Any:
    """`edgefaas config-db apply` as the deploys run it; the command's result (rc, stdout, stderr)."""
    text = shlex.quote(json.dumps(document))
    return device.host.run(f"printf '%s\\n' {text} | {tool(device)} apply --owner {owner} -")


def remove(device: Device, owner: str) -> Any:
    return device.host.run(f"{tool(device)} remove --owner {owner}")


def record(device: Device, owner: str) -> dict[str, dict[str, dict[str, str]]] | None:
    """What `owner` recorded it wrote on the device (None: no record)."""
    found = device.host.file(f"/etc/edgefaas/config_db/{owner}.json")
    return json.loads(found.content_string) if found.exists else None


def vtysh(device: Device, command: str) -> Any:
    """FRR's JSON answer to `command` ({} where FRR printed nothing, or only a `%` notice such
    as "% Network not in table", which some FRR versions print instead of JSON)."""
    output = device.host.check_output(f"vtysh -c {shlex.quote(command)}").strip()
    return json.loads(output) if output and not output.startswith("%") else {}


def bgp_peers(device: Device) -> dict[str, dict[str, Any]]:
    """IPv4 unicast BGP peers by address, from `show bgp summary json`."""
    summary = vtysh(device, "show bgp summary json")
    return summary.get("ipv4Unicast", summary).get("peers", {})


def bfd_peers(device: Device) -> dict[str, dict[str, Any]]:
    """BFD sessions by peer address, from `show bfd peers json`."""
    answer = vtysh(device, "show bfd peers json")
    return {peer["peer"]: peer for peer in answer if "peer" in peer} if isinstance(answer, list) else {}


def established(device: Device, addresses) -> bool:
    peers = bgp_peers(device)
    return all(peers.get(str(a), {}).get("state") == "Established" for a in addresses)


def bgp_route(device: Device, prefix: str) -> dict[str, Any] | None:
    """The BGP table's entry for `prefix` (None where it has none)."""
    entry = vtysh(device, f"show bgp ipv4 unicast {prefix} json")
    return entry if entry.get("paths") else None


def communities(entry: dict[str, Any] | None) -> set[str]:
    """The standard communities on the best (else the first) path of a BGP table entry."""
    if not entry:
        return set()
    paths = entry["paths"]
    best = next((p for p in paths if p.get("bestpath", {}).get("overall")), paths[0])
    return set((best.get("community") or {}).get("string", "").split())


def rib_route(device: Device, prefix: str) -> list[dict[str, Any]]:
    """The routes FRR's RIB holds for exactly `prefix` (`show ip route PREFIX json`)."""
    return vtysh(device, f"show ip route {prefix} json").get(prefix, [])


def bgp_learned(device: Device, prefix: str) -> bool:
    return any(r.get("protocol") == "bgp" and r.get("selected") for r in rib_route(device, prefix))


def ensure_profile(device: Device) -> tuple[str, bool]:
    """The community PROFILE sets on `device`, and whether this call created the profile
    (with TEST_COMMUNITY, because the switch had none): then drop_profile() removes it."""
    key = shlex.quote(f"BGP_PROFILE_TABLE:{PROFILE}")
    have = device.host.check_output(f"{APPL_DB} hget {key} community_id").strip()
    if have:
        return have, False
    device.host.check_output(f"{APPL_DB} hset {key} community_id {TEST_COMMUNITY}")
    return TEST_COMMUNITY, True


def drop_profile(device: Device) -> None:
    device.host.run(f"{APPL_DB} del {shlex.quote(f'BGP_PROFILE_TABLE:{PROFILE}')}")


# -- the SD-WAN provider edge (test_sdwan.py) --------------------------------------------------
# The WAN client's network namespace on the lab's PE stand-in (edgefaas.lab.wan).
WAN_CLIENT_NETNS = "wanclient"


def sdwan_peers(device: Device) -> list[dict[str, Any]]:
    """The provider edges a switch peers with (its inventory data `sdwan_peers`)."""
    return list(device.data.get("sdwan_peers") or [])


def provider_edge(switch: Device, peer: dict[str, Any]) -> Device | None:
    """A handle on a PE, where the tests may log in to it: the virtual lab's `wan` device, reached
    with the lab's key as every lab device is (None on a real lab: its PE is the operator's)."""
    if not switch.data.get("lab_name"):
        return None
    data = {
        key: switch.data.get(key)
        for key in ("ssh_user", "ssh_key", "ssh_known_hosts_file", "ssh_strict_host_key_checking", "_sudo")
    }
    data["ssh_hostname"] = str(peer["address"])
    return connect(str(peer["name"]), data, {"wan"})


def pe_routes(pe: Device) -> dict[str, list[dict[str, Any]]]:
    """The PE's BGP table (`show bgp ipv4 unicast json`): prefix -> paths."""
    return vtysh(pe, "show bgp ipv4 unicast json").get("routes", {})


def wan_client(pe: Device, command: str) -> Any:
    """Run `command` in the WAN client's namespace on the PE; the command's result."""
    return pe.host.run(f"ip netns exec {WAN_CLIENT_NETNS} {command}")
