"""The switches' peering with the SD-WAN provider edge (PE), and what they announce reaching the WAN.

pytest -m lab tests/integration/test_sdwan.py [--inventory inventories/mylab.py]

Each switch peers over eBGP with BFD with every PE of its `sdwan_peers` (deploys/sonic.py
writes one BGP_NEIGHBOR per PE). In the virtual lab the PE is the `wan` device, a stand-in
configured by the lab itself (edgefaas.lab.wan), with a WAN client network namespace behind
it: a prefix a switch announces through STATE_DB ADVERTISE_NETWORK_TABLE must appear in the
PE's BGP table, be reachable with curl from the WAN client, and leave the PE's table within
3 s of its key being deleted (issue 17). Checks that need a login on the PE run only where
the tests can log in to it (the virtual lab); a real lab's PE is the operator's.
"""

from __future__ import annotations

import ipaddress
import shlex
import time
import uuid
from pathlib import Path

import pytest

from tests.integration import sonic_support as sonic
from tests.integration.conftest import Device, run_deploy
from tests.integration.support import wait_for

SESSION_TIMEOUT = 90
CHANGE_TIMEOUT = 20
# Issue 17: an announcement leaves the WAN router's table within 3 s of being withdrawn.
WITHDRAWAL_LIMIT_S = 3.0
# Documentation addresses (RFC 5737), one per switch, announced by the test on no real network.
PROBE_NETWORK = ipaddress.IPv4Network("203.0.113.96/28")
PROBE_PORT = 18093
PROBE_OWNER = "sdwan-probe"
PROBE_TABLE = "EDGEFAAS_SDWANPROBE"
# The withdrawal times seen by the PE, one line per switch (reports/ is what CI archives).
FIGURES = Path(__file__).resolve().parents[2] / "reports" / "sdwan-figures.txt"


@pytest.fixture(scope="module")
def switches(inventory) -> list[Device]:
    found = sonic.switches(inventory)
    if not found:
        pytest.skip("the SD-WAN peering needs SONiC switches with sonic_config_db; the inventory has none")
    if not all(sonic.sdwan_peers(s) for s in found):
        pytest.skip("no sdwan_peers in the inventory: the switches peer with no SD-WAN provider edge")
    return found


@pytest.fixture(scope="module")
def peers(switches) -> list[dict]:
    return sonic.sdwan_peers(switches[0])


@pytest.fixture(scope="module")
def pes(switches, peers) -> list[Device]:
    found = [sonic.provider_edge(switches[0], peer) for peer in peers]
    if None in found:
        pytest.skip(
            "the PE is the operator's: the tests have no login on it (only the virtual lab's wan device)"
        )
    return found  # type: ignore[return-value]


def test_the_lab_machine_forwards_nothing_and_only_the_pe_routes(switches, pes):
    """The lab machine's own ip_forward stays 0; the PE forwards in its own namespace."""
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == "0", (
        "expected net.ipv4.ip_forward 0 on the lab machine (the lab never routes out)"
    )
    for pe in pes:
        assert pe.host.check_output("cat /proc/sys/net/ipv4/ip_forward").strip() == "1", (
            f"{pe.name}: expected the PE to forward IP in its own network namespace"
        )
        client = sonic.wan_client(pe, "cat /proc/sys/net/ipv4/ip_forward")
        assert client.rc == 0 and client.stdout.strip() == "0", (
            f"{pe.name}: expected the WAN client namespace {sonic.WAN_CLIENT_NETNS} to exist and forward "
            f"nothing: rc {client.rc} {client.stdout}{client.stderr}"
        )


def test_config_db_has_a_bfd_neighbour_for_every_pe(switches, peers):
    for device in switches:
        bfd = device.data.get("bgp_bfd", True)
        for peer in peers:
            key = f"BGP_NEIGHBOR|{peer['address']}"
            entry = sonic.db_get(device, key).get(key, {})
            wanted = {
                "asn": str(peer["asn"]),
                "name": f"edgefaas-sdwan-{peer['name']}",
                "admin_status": "up",
                "bfd": "true" if bfd else "false",
            }
            assert {f: entry.get(f) for f in wanted} == wanted, (
                f"{device.name}: expected {key} {wanted}, found {entry}"
            )


def test_every_switch_has_an_established_session_with_bfd_up_to_every_pe(switches, peers):
    addresses = [str(p["address"]) for p in peers]
    for device in switches:
        wait_for(
            lambda device=device: sonic.established(device, addresses),
            SESSION_TIMEOUT,
            lambda device=device: (
                f"{device.name}: BGP Established with the PEs {addresses} (show bgp summary: "
                f"{sonic.bgp_peers(device)})"
            ),
        )
        for peer in peers:
            found = sonic.bgp_peers(device)[str(peer["address"])].get("remoteAs")
            assert found == int(peer["asn"]), (
                f"{device.name}: expected {peer['name']} in AS {peer['asn']}: {found}"
            )
        if device.data.get("bgp_bfd", True):
            wait_for(
                lambda device=device: all(
                    sonic.bfd_peers(device).get(a, {}).get("status") == "up" for a in addresses
                ),
                SESSION_TIMEOUT,
                lambda device=device: (
                    f"{device.name}: BFD up with the PEs (show bfd peers: {sonic.bfd_peers(device)})"
                ),
            )


def test_the_pe_has_an_established_session_with_bfd_up_to_every_switch(switches, pes):
    addresses = [s.address for s in switches]
    for pe in pes:
        wait_for(
            lambda pe=pe: sonic.established(pe, addresses),
            SESSION_TIMEOUT,
            lambda pe=pe: f"{pe.name}: BGP Established with every switch {addresses} ({sonic.bgp_peers(pe)})",
        )
        wait_for(
            lambda pe=pe: all(sonic.bfd_peers(pe).get(a, {}).get("status") == "up" for a in addresses),
            SESSION_TIMEOUT,
            lambda pe=pe: f"{pe.name}: BFD up with every switch {addresses} ({sonic.bfd_peers(pe)})",
        )


def test_the_switches_learn_what_the_pe_originates(switches, pes):
    """The WAN client subnets: the switches' return routes towards the WAN."""
    for pe in pes:
        own = [
            prefix for prefix, paths in sonic.pe_routes(pe).items() if any(not p.get("path") for p in paths)
        ]
        assert own, f"{pe.name}: expected the PE to originate at least its WAN client subnet"
        for device in switches:
            for prefix in own:
                wait_for(
                    lambda device=device, prefix=prefix: sonic.bgp_learned(device, prefix),
                    SESSION_TIMEOUT,
                    lambda device=device, prefix=prefix, pe=pe: (
                        f"{device.name}: to learn {prefix} from {pe.name} "
                        f"(RIB: {sonic.rib_route(device, prefix)})"
                    ),
                )


def _serve_probe(device: Device, address: str, unit: str, directory: str) -> None:
    device.host.check_output(f"ip addr replace {address}/32 dev lo")
    device.host.check_output(f"mkdir -p {directory} && echo {shlex.quote(device.name)} > {directory}/probe")
    device.host.check_output(
        f"systemd-run --unit={unit} --collect --quiet python3 -m http.server --bind {address} "
        f"--directory {directory} {PROBE_PORT}"
    )


def _open_probe_port(device: Device) -> None:
    """The control-plane ACL admits the probe port, as a deploy opens its own (caclmgrd)."""
    document = {
        "owned": {
            f"ACL_TABLE|{PROBE_TABLE}": {
                "type": "CTRLPLANE",
                "stage": "ingress",
                "services": ["EXTERNAL_CLIENT"],
                "policy_desc": "test_sdwan probe",
            },
            f"ACL_RULE|{PROBE_TABLE}|RULE_1": {
                "PRIORITY": "9999",
                "PACKET_ACTION": "ACCEPT",
                "L4_DST_PORT": str(PROBE_PORT),
                "SRC_IP": "0.0.0.0/0",
            },
        }
    }
    applied = sonic.apply(device, PROBE_OWNER, document)
    assert applied.rc == 0, (
        f"{device.name}: expected config-db apply of the probe ACL to succeed: {applied.stderr}"
    )


def test_an_announced_prefix_reaches_the_wan_client_and_is_withdrawn_within_3_s(switches, pes):
    pe = pes[0]
    figures = []
    for index, device in enumerate(switches):
        address = str(PROBE_NETWORK[index + 1])
        prefix = f"{address}/32"
        key = f"ADVERTISE_NETWORK_TABLE|{prefix}"
        unit = f"edgefaas-sdwan-probe-{uuid.uuid4().hex[:8]}"
        directory = f"/run/{unit}"
        community, created = sonic.ensure_profile(device)
        try:
            _serve_probe(device, address, unit, directory)
            _open_probe_port(device)
            sonic.db_set(device, "STATE_DB", key, profile=sonic.PROFILE)
            paths = wait_for(
                lambda prefix=prefix: sonic.pe_routes(pe).get(prefix),
                CHANGE_TIMEOUT,
                lambda device=device, prefix=prefix: (
                    f"{pe.name} to learn {prefix} announced by {device.name} (its table: "
                    f"{sorted(sonic.pe_routes(pe))})"
                ),
            )
            assert any(p.get("peerId") == device.address for p in paths), (
                f"{pe.name}: expected a path to {prefix} from {device.name} ({device.address}): {paths}"
            )
            found = sonic.communities(sonic.bgp_route(pe, prefix))
            assert found == {community}, (
                f"{pe.name}: expected {prefix} with {device.name}'s community {community}, found {found}"
            )
            url = f"http://{address}:{PROBE_PORT}/probe"
            answer = wait_for(
                lambda url=url: (r := sonic.wan_client(pe, f"curl -sS --max-time 3 {url}")).rc == 0 and r,
                CHANGE_TIMEOUT,
                lambda url=url: f"curl {url} from the WAN client on {pe.name} to succeed",
            )
            assert answer.stdout.strip() == device.name, (
                f"expected {device.name}'s probe server to answer {url}, got {answer.stdout!r}"
            )
            withdrawn_at = time.monotonic()
            sonic.db_del(device, "STATE_DB", key)
            wait_for(
                lambda prefix=prefix: prefix not in sonic.pe_routes(pe),
                CHANGE_TIMEOUT,
                lambda prefix=prefix, device=device, key=key: (
                    f"{pe.name} to drop {prefix} once {device.name}'s {key} is deleted"
                ),
                interval=0.05,
            )
            seconds = time.monotonic() - withdrawn_at
            figures.append(f"{device.name}: {prefix} withdrawn from {pe.name}'s table in {seconds:.2f} s")
            assert seconds <= WITHDRAWAL_LIMIT_S, (
                f"{pe.name}: {prefix} left the table {seconds:.2f} s after {device.name}'s {key} was "
                f"deleted; expected within {WITHDRAWAL_LIMIT_S} s"
            )
            gone = sonic.wan_client(pe, f"curl -sS --max-time 2 {url}")
            assert gone.rc != 0, (
                f"expected {url} unreachable from the WAN client once withdrawn: {gone.stdout}"
            )
        finally:
            sonic.db_del(device, "STATE_DB", key)
            if created:
                sonic.drop_profile(device)
            sonic.remove(device, PROBE_OWNER)
            device.host.run(f"systemctl stop {unit}; rm -rf {directory}; ip addr del {address}/32 dev lo")
    FIGURES.parent.mkdir(exist_ok=True)
    FIGURES.write_text("".join(f"{line}\n" for line in figures))


def test_a_pe_no_longer_listed_is_removed_and_a_redeploy_restores_it(
    inventory_path, switches, peers, tmp_path
):
    """deploys/sonic.py with sdwan_peers emptied removes each PE's BGP_NEIGHBOR (FRR drops the
    session); the inventory's own data brings it back."""
    without = tmp_path / "without_sdwan_peers.py"
    without.write_text(
        "import runpy\n"
        f"_inv = runpy.run_path({inventory_path!r})\n"
        "for _name in ('sonic', 'jetson', 'k3s_server', 'k3s_agent'):\n"
        "    globals()[_name] = _inv.get(_name, [])\n"
        "for _host, _data in sonic:\n"
        "    _data['sdwan_peers'] = []\n"
    )
    # pyinfra reads group_data beside the inventory file: the real inventory's.
    (tmp_path / "group_data").symlink_to(Path(inventory_path).resolve().parent / "group_data")
    addresses = [str(p["address"]) for p in peers]
    run = run_deploy(str(without), "deploys/sonic.py", timeout=300)
    try:
        assert run.returncode == 0, (
            f"expected deploys/sonic.py without sdwan_peers to succeed:\n{run.describe()}"
        )
        for device in switches:
            left = [a for a in addresses if sonic.db_get(device, f"BGP_NEIGHBOR|{a}")]
            assert not left, f"{device.name}: expected no BGP_NEIGHBOR for the unlisted PEs, found {left}"
            wait_for(
                lambda device=device: not set(addresses) & set(sonic.bgp_peers(device)),
                CHANGE_TIMEOUT,
                lambda device=device: (
                    f"{device.name}: FRR to forget the PEs {addresses} ({sonic.bgp_peers(device)})"
                ),
            )
    finally:
        again = run_deploy(inventory_path, "deploys/sonic.py", timeout=300)
    assert again.returncode == 0, f"expected the re-deploy to succeed:\n{again.describe()}"
    for device in switches:
        wait_for(
            lambda device=device: sonic.established(device, addresses),
            SESSION_TIMEOUT,
            f"{device.name}: BGP Established with the PEs again after the re-deploy",
        )
