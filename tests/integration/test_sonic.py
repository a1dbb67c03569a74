"""The switches' routing (deploys/sonic.py) and SONiC's own ways: CONFIG_DB, FRR, the control-plane ACL.

pytest -m lab tests/integration/test_sonic.py [--inventory inventories/mylab.py]

Everything is read the way it is on a real switch: Redis with SONiC's layout, CONFIG_DB
through `edgefaas config-db`, FRR through `vtysh ... json`. The tests that change something
(an announced prefix, a probe ACL, the uninstall) put it back.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from tests.integration import sonic_support as sonic
from tests.integration.conftest import Device, run_deploy
from tests.integration.support import wait_for

# How long FRR may take: a BGP session comes up within its connect timer (10 s, SONiC's)
# and one open/keepalive exchange; a CONFIG_DB change reaches FRR within a second.
SESSION_TIMEOUT = 90
CHANGE_TIMEOUT = 20
# A documentation prefix (RFC 5737): announced by the test, on no real network.
TEST_PREFIX = "198.51.100.0/24"
PROBE_OWNER = "acl-probe"
OPENED_PORT, UNOPENED_PORT = 18091, 18092


@pytest.fixture(scope="module")
def switches(inventory) -> list[Device]:
    found = sonic.switches(inventory)
    if len(found) < 2:
        pytest.skip(f"routing needs two SONiC switches with sonic_config_db; the inventory has {len(found)}")
    return found


@pytest.fixture(scope="module")
def plans(inventory, switches):
    return sonic.routing(inventory)


def _other(switches: list[Device], device: Device) -> Device:
    return next(s for s in switches if s.name != device.name)


@pytest.mark.devices("sonic")
def test_the_database_answers_with_sonic_s_layout(device):
    layout = json.loads(device.host.file("/var/run/redis/sonic-db/database_config.json").content_string)
    databases = layout["DATABASES"]
    wanted = {"APPL_DB": 0, "CONFIG_DB": 4, "STATE_DB": 6}
    found = {name: databases.get(name, {}).get("id") for name in wanted}
    assert found == wanted, f"database_config.json: expected SONiC's numbers {wanted}, found {found}"
    for name in ("CONFIG_DB", "STATE_DB"):
        assert databases[name].get("separator") == "|", (
            f"{name}: expected separator '|', found {databases[name]}"
        )
    hostname = device.host.check_output("hostname")
    metadata = sonic.db_get(device, "DEVICE_METADATA|localhost")
    assert metadata.get("DEVICE_METADATA|localhost", {}).get("hostname") == hostname, (
        f"expected CONFIG_DB DEVICE_METADATA|localhost hostname {hostname!r}, found {metadata}"
    )
    # Redis itself, on SONiC's socket and database number, not only the blueprint's tool.
    raw = device.host.run(
        "redis-cli -s /var/run/redis/redis.sock -n 4 hget 'DEVICE_METADATA|localhost' hostname"
    )
    assert raw.rc == 0 and raw.stdout.strip() == hostname, (
        f"expected redis-cli on /var/run/redis/redis.sock db 4 to answer {hostname!r}: "
        f"rc {raw.rc} {raw.stdout}{raw.stderr}"
    )


@pytest.mark.devices("sonic")
def test_each_owner_s_ctrlplane_rules_are_in_config_db(device):
    """Every EDGEFAAS_ ACL table is a CTRLPLANE table of SONiC's shape, and every entry an
    owner recorded is in CONFIG_DB as it recorded it."""
    tables = sonic.db_get(device, "ACL_TABLE|EDGEFAAS_*")
    rules = sonic.db_get(device, "ACL_RULE|EDGEFAAS_*")
    for key, table in tables.items():
        shape = {f: table.get(f) for f in ("type", "stage", "services@")}
        assert shape == {"type": "CTRLPLANE", "stage": "ingress", "services@": "EXTERNAL_CLIENT"}, (
            f"{key}: expected a CTRLPLANE ingress table for EXTERNAL_CLIENT, found {table}"
        )
    for key, rule in rules.items():
        table = "ACL_TABLE|" + key.split("|")[1]
        assert table in tables, f"{key}: expected its table {table} in CONFIG_DB, found {sorted(tables)}"
        has = {
            "PRIORITY": "PRIORITY" in rule,
            "PACKET_ACTION ACCEPT": rule.get("PACKET_ACTION") == "ACCEPT",
            "L4_DST_PORT or L4_DST_PORT_RANGE": "L4_DST_PORT" in rule or "L4_DST_PORT_RANGE" in rule,
            "SRC_IP or SRC_IPV6": "SRC_IP" in rule or "SRC_IPV6" in rule,
        }
        assert all(has.values()), (
            f"{key}: expected {', '.join(has)}; lacks {[k for k, v in has.items() if not v]}: {rule}"
        )
    owners = device.host.check_output(
        "ls /etc/edgefaas/config_db 2>/dev/null | sed -n 's/\\.json$//p'"
    ).split()
    for owner in owners:
        recorded = sonic.record(device, owner) or {}
        for key, fields in recorded.get("owned", {}).items():
            if key.startswith("STATE_DB:"):
                continue
            found = sonic.db_get(device, key).get(key)
            stored = fields or {"NULL": "NULL"}
            assert found == stored, f"{owner} recorded {key} = {stored}; CONFIG_DB holds {found}"


def _reach(source: Device, address: str, port: int) -> str:
    """ "open", "refused" or "dropped": a TCP connection from `source` to address:port."""
    result = source.host.run(f"timeout 4 bash -c 'exec 3<>/dev/tcp/{address}/{port}'")
    if result.rc == 0:
        return "open"
    return "refused" if "refused" in result.stderr.lower() else "dropped"


def test_a_port_nobody_opened_is_dropped_from_another_switch(switches):
    """SONiC's caclmgrd (the lab: its stand-in) drops what no CTRLPLANE rule opens, once
    any rule exists: a probe table opens one port, its neighbour stays dropped."""
    target, source = switches[0], switches[1]
    units = [f"edgefaas-probe-{uuid.uuid4().hex[:8]}" for _ in (OPENED_PORT, UNOPENED_PORT)]
    for unit, port in zip(units, (OPENED_PORT, UNOPENED_PORT), strict=True):
        target.host.run(
            f"systemd-run --unit={unit} --collect --quiet "
            f"socat TCP-LISTEN:{port},fork,reuseaddr SYSTEM:'echo probe'"
        )
    table = "EDGEFAAS_ACLPROBE"
    document = {
        "owned": {
            f"ACL_TABLE|{table}": {
                "type": "CTRLPLANE",
                "stage": "ingress",
                "services": ["EXTERNAL_CLIENT"],
                "policy_desc": "test_sonic probe",
            },
            f"ACL_RULE|{table}|RULE_1": {
                "PRIORITY": "9999",
                "PACKET_ACTION": "ACCEPT",
                "L4_DST_PORT": str(OPENED_PORT),
                "SRC_IP": "0.0.0.0/0",
            },
        }
    }
    try:
        applied = sonic.apply(target, PROBE_OWNER, document)
        assert applied.rc == 0, f"expected config-db apply of the probe table to succeed: {applied.stderr}"
        wait_for(
            lambda: _reach(source, target.address, OPENED_PORT) == "open",
            CHANGE_TIMEOUT,
            f"port {OPENED_PORT} (opened by {table}) to be open from {source.name}",
        )
        state = _reach(source, target.address, UNOPENED_PORT)
        assert state == "dropped", (
            f"expected port {UNOPENED_PORT}, opened by nobody, dropped from {source.name}: {state}"
        )
    finally:
        sonic.remove(target, PROBE_OWNER)
        for unit in units:
            target.host.run(f"systemctl stop {unit}")
    assert not sonic.db_get(target, f"ACL_*|{table}*"), f"expected no {table} entry left once removed"


def test_config_db_holds_the_routing_the_inventory_plans(switches, plans):
    for device in switches:
        plan = plans[device.name]
        metadata = sonic.db_get(device, "DEVICE_METADATA|localhost")["DEVICE_METADATA|localhost"]
        assert metadata.get("bgp_asn") == str(plan.asn), (
            f"{device.name}: expected DEVICE_METADATA bgp_asn {plan.asn}, found {metadata.get('bgp_asn')}"
        )
        loopback = f"LOOPBACK_INTERFACE|{plan.loopback_interface}|{plan.router_id}/32"
        assert sonic.db_get(device, loopback), f"{device.name}: expected {loopback} in CONFIG_DB"
        for neighbor in plan.neighbors:
            key = f"BGP_NEIGHBOR|{neighbor.address}"
            entry = sonic.db_get(device, key).get(key, {})
            wanted = {"asn": str(neighbor.asn), "name": f"edgefaas-{neighbor.name}", "admin_status": "up"}
            wanted["bfd"] = "true" if plan.bfd else "false"
            assert {f: entry.get(f) for f in wanted} == wanted, (
                f"{device.name}: expected {key} {wanted}, found {entry}"
            )
        persisted = json.loads(device.host.file("/etc/sonic/config_db.json").content_string)
        for neighbor in plan.neighbors:
            assert str(neighbor.address) in persisted.get("BGP_NEIGHBOR", {}), (
                f"{device.name}: expected BGP_NEIGHBOR {neighbor.address} in /etc/sonic/config_db.json "
                "(what SONiC loads at boot)"
            )


def test_bgp_sessions_are_established_and_bfd_peers_up(switches, plans):
    for device in switches:
        addresses = [n.address for n in plans[device.name].neighbors]
        wait_for(
            lambda device=device, addresses=addresses: sonic.established(device, addresses),
            SESSION_TIMEOUT,
            lambda device=device, addresses=addresses: (
                f"{device.name}: BGP sessions Established with {addresses} "
                f"(show bgp summary: {sonic.bgp_peers(device)})"
            ),
        )
        for neighbor in plans[device.name].neighbors:
            peer = sonic.bgp_peers(device)[str(neighbor.address)]
            assert peer.get("remoteAs") == neighbor.asn, (
                f"{device.name}: expected {neighbor.address} in AS {neighbor.asn}, "
                f"FRR has {peer.get('remoteAs')}"
            )
        if plans[device.name].bfd:
            wait_for(
                lambda device=device, addresses=addresses: all(
                    sonic.bfd_peers(device).get(str(a), {}).get("status") == "up" for a in addresses
                ),
                SESSION_TIMEOUT,
                lambda device=device, addresses=addresses: (
                    f"{device.name}: BFD peers {addresses} up (show bfd peers: {sonic.bfd_peers(device)})"
                ),
            )


def test_each_switch_learns_the_other_s_loopback(switches, plans):
    for device in switches:
        for other in switches:
            if other is device:
                continue
            prefix = f"{plans[other.name].router_id}/32"
            wait_for(
                lambda device=device, prefix=prefix: sonic.bgp_learned(device, prefix),
                SESSION_TIMEOUT,
                lambda device=device, prefix=prefix, other=other: (
                    f"{device.name} to learn {other.name}'s "
                    f"loopback {prefix} through BGP (RIB: {sonic.rib_route(device, prefix)})"
                ),
            )


def test_a_prefix_announced_through_state_db_reaches_the_peer_with_its_community_and_goes(switches):
    announcer, peer = switches[0], switches[1]
    key = f"ADVERTISE_NETWORK_TABLE|{TEST_PREFIX}"
    community, created = sonic.ensure_profile(announcer)
    sonic.db_set(announcer, "STATE_DB", key, profile=sonic.PROFILE)
    try:
        local = wait_for(
            lambda: sonic.bgp_route(announcer, TEST_PREFIX),
            CHANGE_TIMEOUT,
            f"{announcer.name} to originate {TEST_PREFIX} from STATE_DB {key}",
        )
        assert sonic.communities(local) == {community}, (
            f"{announcer.name}: expected profile {sonic.PROFILE} (route-map {sonic.PROFILE}_RM) to set "
            f"community {community} on {TEST_PREFIX}; found {sonic.communities(local)}"
        )
        learned = wait_for(
            lambda: sonic.bgp_route(peer, TEST_PREFIX),
            CHANGE_TIMEOUT,
            f"{peer.name} to learn {TEST_PREFIX} from {announcer.name}",
        )
        assert sonic.communities(learned) == {community}, (
            f"{peer.name}: expected {TEST_PREFIX} with community {community}, "
            f"found {sonic.communities(learned)}"
        )
    finally:
        sonic.db_del(announcer, "STATE_DB", key)
        if created:
            sonic.drop_profile(announcer)
    wait_for(
        lambda: sonic.bgp_route(peer, TEST_PREFIX) is None,
        CHANGE_TIMEOUT,
        f"{peer.name} to drop {TEST_PREFIX} once {announcer.name}'s {key} is deleted",
    )


def test_sonic_redeploy_changes_nothing(inventory_path):
    run = run_deploy(inventory_path, "deploys/sonic.py", timeout=300)
    assert run.returncode == 0, f"expected deploys/sonic.py to succeed:\n{run.describe()}"
    assert run.operations and run.changed_nothing, f"expected the re-run to change nothing:\n{run.describe()}"


def test_uninstall_leaves_no_entry_it_owned_and_a_redeploy_restores_routing(inventory_path, switches, plans):
    before = {device.name: sonic.record(device, "sonic") for device in switches}
    for name, recorded in before.items():
        assert recorded and recorded.get("owned"), f"{name}: expected a record of the sonic owner's entries"
    run = run_deploy(inventory_path, "deploys/sonic_uninstall.py", timeout=300)
    assert run.returncode == 0, f"expected deploys/sonic_uninstall.py to succeed:\n{run.describe()}"
    try:
        for device in switches:
            owned = before[device.name]["owned"]
            left = {key for key in owned if sonic.db_get(device, key)}
            assert not left, (
                f"{device.name}: expected none of the sonic owner's entries in CONFIG_DB, found {left}"
            )
            persisted = json.loads(device.host.file("/etc/sonic/config_db.json").content_string)
            saved = {key for key in owned if key.split("|", 1)[1] in persisted.get(key.split("|", 1)[0], {})}
            assert not saved, (
                f"{device.name}: expected none of them in /etc/sonic/config_db.json, found {saved}"
            )
            for neighbor in plans[device.name].neighbors:
                wait_for(
                    lambda device=device, address=str(neighbor.address): (
                        address not in sonic.bgp_peers(device)
                    ),
                    CHANGE_TIMEOUT,
                    f"{device.name}: FRR to forget {neighbor.address} once its BGP_NEIGHBOR is gone",
                )
    finally:
        again = run_deploy(inventory_path, "deploys/sonic.py", timeout=300)
    assert again.returncode == 0, f"expected the re-deploy to succeed:\n{again.describe()}"
    for device in switches:
        addresses = [n.address for n in plans[device.name].neighbors]
        wait_for(
            lambda device=device, addresses=addresses: sonic.established(device, addresses),
            SESSION_TIMEOUT,
            f"{device.name}: BGP sessions Established again after the re-deploy",
        )


def test_bad_routing_data_is_refused_before_anything_is_written(inventory_path, switches, plans, tmp_path):
    """A neighbour no interface reaches: deploys/sonic.py stops naming host and field, and
    CONFIG_DB is as it was."""
    first = switches[0]
    before = sonic.db_get(first, "BGP_NEIGHBOR|*")
    bad = tmp_path / "bad_routing_inventory.py"
    bad.write_text(
        "import runpy\n"
        f"_inv = runpy.run_path({inventory_path!r})\n"
        "for _name in ('sonic', 'jetson', 'k3s_server', 'k3s_agent'):\n"
        "    globals()[_name] = _inv.get(_name, [])\n"
        "for _host, _data in sonic:\n"
        f"    if _host == {first.name!r}:\n"
        "        _data['bgp_neighbors'] = [{'address': '203.0.113.9', 'asn': 65009, 'name': 'nowhere'}]\n"
    )
    # pyinfra reads group_data beside the inventory file: the real inventory's.
    (tmp_path / "group_data").symlink_to(Path(inventory_path).resolve().parent / "group_data")
    run = run_deploy(str(bad), "deploys/sonic.py", timeout=300)
    assert run.returncode != 0, f"expected the deploy to refuse 203.0.113.9:\n{run.output[-3000:]}"
    assert f"{first.name}: bgp_neighbors: 203.0.113.9" in run.output, (
        f"expected the refusal to name {first.name} and bgp_neighbors:\n{run.output[-3000:]}"
    )
    assert sonic.db_get(first, "BGP_NEIGHBOR|*") == before, (
        "expected CONFIG_DB's BGP_NEIGHBOR entries unchanged"
    )
