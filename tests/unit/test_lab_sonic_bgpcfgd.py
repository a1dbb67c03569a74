"""The lab's bgpcfgd stand-in: CONFIG_DB/STATE_DB/APPL_DB tables -> FRR configuration."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from edgefaas.lab.sonic import bgpcfgd


def _config(**tables: dict) -> dict:
    config = {
        "DEVICE_METADATA": {"localhost": {"hostname": "sonic-1", "bgp_asn": "65101"}},
        "LOOPBACK_INTERFACE": {"Loopback0": {}, "Loopback0|10.1.0.1/32": {}},
        "BGP_NEIGHBOR": {
            "10.0.0.12": {
                "asn": "65102",
                "name": "edgefaas-sonic-2",
                "local_addr": "10.0.0.11",
                "holdtime": "9",
                "keepalive": "3",
                "admin_status": "up",
                "bfd": "true",
            }
        },
    }
    config.update(tables)
    return config


def _render(config: dict | None = None, state: dict | None = None, appl: dict | None = None):
    return bgpcfgd.render(config or _config(), state or {}, appl or {}, "sonic-1")


def _frr_checks(text: str) -> None:
    """FRR's own parser accepts the configuration (vtysh --dryrun), where FRR is installed."""
    if not shutil.which("vtysh"):
        return
    proc = subprocess.run(
        ["vtysh", "--dryrun", "--inputfile", "/dev/stdin"], input=text, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_neighbour_with_bfd_and_the_loopback_as_router_id_and_network():
    rendered = _render()
    assert rendered.problems == []
    lines = rendered.text.splitlines()
    assert "router bgp 65101" in lines
    for line in (
        " bgp router-id 10.1.0.1",
        " no bgp default ipv4-unicast",
        " no bgp ebgp-requires-policy",
        " neighbor 10.0.0.12 remote-as 65102",
        " neighbor 10.0.0.12 description edgefaas-sonic-2",
        " neighbor 10.0.0.12 timers 3 9",
        " neighbor 10.0.0.12 bfd",
        "  network 10.1.0.1/32",
        "  neighbor 10.0.0.12 activate",
    ):
        assert line in lines, line
    assert " no bgp network import-check" not in lines
    assert " neighbor 10.0.0.12 shutdown" not in lines
    assert rendered.loopbacks == {"Loopback0": {"10.1.0.1/32"}}
    _frr_checks(rendered.text)


def test_default_timers_and_admin_down_and_no_bfd():
    neighbor = {"asn": "65102", "name": "p", "admin_status": "down", "holdtime": "180", "keepalive": "60"}
    lines = _render(_config(BGP_NEIGHBOR={"10.0.0.12": neighbor})).text.splitlines()
    assert " neighbor 10.0.0.12 shutdown" in lines
    assert not [line for line in lines if "timers 60" in line or line.endswith(" bfd")]


def test_router_id_prefers_bgp_router_id_then_loopback0_then_the_first_loopback():
    config = _config(LOOPBACK_INTERFACE={"Loopback2|10.9.0.2/32": {}, "Loopback1|10.9.0.1/32": {}})
    assert " bgp router-id 10.9.0.1" in _render(config).text.splitlines()
    config["DEVICE_METADATA"]["localhost"]["bgp_router_id"] = "10.7.7.7"
    assert " bgp router-id 10.7.7.7" in _render(config).text.splitlines()


def test_advertised_prefixes_with_and_without_a_profile_and_their_withdrawal():
    state = {
        "ADVERTISE_NETWORK_TABLE": {
            "192.0.2.0/24": {"profile": "FROM_SDN_SLB_ROUTES"},
            "198.51.100.0/24": {"": ""},
            "2001:db8::/64": {"": ""},
        }
    }
    appl = {"BGP_PROFILE_TABLE": {"FROM_SDN_SLB_ROUTES": {"community_id": "1234:1235"}}}
    rendered = _render(state=state, appl=appl)
    assert rendered.problems == []
    lines = rendered.text.splitlines()
    assert " no bgp network import-check" in lines
    assert "  network 192.0.2.0/24 route-map FROM_SDN_SLB_ROUTES_RM" in lines
    assert "  network 198.51.100.0/24" in lines and "  network 2001:db8::/64" in lines
    route_map = lines.index("route-map FROM_SDN_SLB_ROUTES_RM permit 100")
    assert lines[route_map + 1 : route_map + 3] == [" set community 1234:1235", " set origin incomplete"]
    _frr_checks(rendered.text)
    # Deleting the key withdraws the prefix (and its route-map once unused).
    withdrawn = _render(state={"ADVERTISE_NETWORK_TABLE": {"198.51.100.0/24": {"": ""}}}, appl=appl).text
    assert "192.0.2.0/24" not in withdrawn and "FROM_SDN_SLB_ROUTES_RM" not in withdrawn
    assert " no bgp network import-check" not in _render(appl=appl).text.splitlines()


def test_a_profile_without_a_community_is_reported_and_its_prefix_not_announced():
    state = {"ADVERTISE_NETWORK_TABLE": {"192.0.2.0/24": {"profile": "FROM_SDN_SLB_ROUTES"}}}
    rendered = _render(state=state)
    assert "route-map FROM_SDN_SLB_ROUTES_RM permit 100" not in rendered.text
    assert any("BGP_PROFILE_TABLE:FROM_SDN_SLB_ROUTES" in p for p in rendered.problems)


def test_dynamic_peers_from_bgp_peer_range():
    config = _config(
        BGP_PEER_RANGE={
            "EDGE": {"ip_range": "10.2.0.0/24,10.3.0.0/24", "peer_asn": "65200", "src_address": "10.1.0.1"}
        }
    )
    rendered = _render(config)
    lines = rendered.text.splitlines()
    for line in (
        " neighbor EDGE peer-group",
        " neighbor EDGE passive",
        " neighbor EDGE ebgp-multihop 255",
        " neighbor EDGE remote-as 65200",
        " neighbor EDGE update-source 10.1.0.1",
        " bgp listen range 10.2.0.0/24 peer-group EDGE",
        " bgp listen range 10.3.0.0/24 peer-group EDGE",
        "  neighbor EDGE activate",
    ):
        assert line in lines, line
    _frr_checks(rendered.text)


def test_malformed_entries_are_reported_and_skipped_and_the_rest_rendered():
    config = _config(
        LOOPBACK_INTERFACE={"Loopback0|10.1.0.1/32": {}, "Loopback0|10.1.0.x/32": {}, "Eth0|10.5.0.1/32": {}},
        BGP_NEIGHBOR={
            "10.0.0.12": {"asn": "65102", "name": "ok"},
            "10.0.0.13": {"asn": "4294967296"},
            "10.0.0.14": {"asn": "65104", "holdtime": "two"},
            "not-an-ip": {"asn": "65105"},
            "Vrf1|10.0.0.15": {"asn": "65106"},
            "10.0.0.16": {"asn": "65107", "bfd": "maybe"},
        },
        BGP_PEER_RANGE={
            "NOASN": {"ip_range": "10.2.0.0/24"},
            "BADRANGE": {"ip_range": "10.2.0.0/33", "peer_asn": "1"},
        },
    )
    state = {
        "ADVERTISE_NETWORK_TABLE": {
            "10.9.9.9/8": {"": ""},
            "192.0.2.0/24": {"profile": "MY_OWN"},
            "Vrf1|192.0.2.0/24": {"": ""},
        }
    }
    rendered = _render(config, state)
    reported = "\n".join(rendered.problems)
    for key in (
        "LOOPBACK_INTERFACE|Loopback0|10.1.0.x/32",
        "LOOPBACK_INTERFACE|Eth0|10.5.0.1/32",
        "BGP_NEIGHBOR|10.0.0.13",
        "BGP_NEIGHBOR|10.0.0.14",
        "BGP_NEIGHBOR|not-an-ip",
        "BGP_NEIGHBOR|Vrf1|10.0.0.15",
        "BGP_NEIGHBOR|10.0.0.16",
        "BGP_PEER_RANGE|NOASN",
        "BGP_PEER_RANGE|BADRANGE",
        "ADVERTISE_NETWORK_TABLE|10.9.9.9/8",
        "ADVERTISE_NETWORK_TABLE|192.0.2.0/24",
        "ADVERTISE_NETWORK_TABLE|Vrf1|192.0.2.0/24",
    ):
        assert key in reported, key
    lines = rendered.text.splitlines()
    assert " neighbor 10.0.0.12 remote-as 65102" in lines
    assert [line for line in lines if "remote-as" in line] == [" neighbor 10.0.0.12 remote-as 65102"]
    assert rendered.loopbacks == {"Loopback0": {"10.1.0.1/32"}}
    _frr_checks(rendered.text)


def test_no_or_bad_asn_means_no_bgp():
    config = _config()
    del config["DEVICE_METADATA"]["localhost"]["bgp_asn"]
    assert "router bgp" not in _render(config).text
    config["DEVICE_METADATA"]["localhost"]["bgp_asn"] = "0"
    rendered = _render(config)
    assert "router bgp" not in rendered.text and "bgp_asn '0'" in rendered.problems[0]


def test_loopback_netdevs_are_created_changed_and_removed():
    present = bgpcfgd.present_loopbacks(
        '[{"ifname":"Loopback0","addr_info":[{"local":"10.1.0.1","prefixlen":32,"scope":"global"},'
        '{"local":"fe80::1","prefixlen":64,"scope":"link"}]},'
        '{"ifname":"Loopback9","addr_info":[]},{"ifname":"dummy0","addr_info":[]}]'
    )
    assert present == {"Loopback0": {"10.1.0.1/32"}, "Loopback9": set()}
    wanted = {"Loopback0": {"10.1.0.2/32"}, "Loopback1": {"10.1.1.1/32"}}
    assert bgpcfgd.loopback_commands(wanted, present) == [
        ["ip", "link", "del", "Loopback9"],
        ["ip", "addr", "del", "10.1.0.1/32", "dev", "Loopback0"],
        ["ip", "addr", "add", "10.1.0.2/32", "dev", "Loopback0"],
        ["ip", "link", "add", "Loopback1", "type", "dummy"],
        ["ip", "link", "set", "Loopback1", "up"],
        ["ip", "addr", "add", "10.1.1.1/32", "dev", "Loopback1"],
    ]
    assert bgpcfgd.loopback_commands(wanted, {k: set(v) for k, v in wanted.items()}) == []


@pytest.mark.skipif(not shutil.which("vtysh"), reason="FRR is not installed (apt-get install frr)")
def test_frr_rejects_what_it_cannot_parse():
    # The check above is meaningful only if vtysh --dryrun fails on bad input.
    proc = subprocess.run(
        ["vtysh", "--dryrun", "--inputfile", "/dev/stdin"],
        input="router bgp 1\n neighbor foo remote-as x\n",
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0


def test_without_dummy_netdevs_the_loopback_addresses_go_on_lo_labelled():
    present = bgpcfgd.present_loopbacks(
        '[{"ifname":"lo","addr_info":[{"local":"127.0.0.1","prefixlen":8,"scope":"host","label":"lo"},'
        '{"local":"10.1.0.1","prefixlen":32,"scope":"global","label":"lo:Loopback0"},'
        '{"local":"10.1.0.9","prefixlen":32,"scope":"global","label":"lo:Loopback9"}]}]',
        dummy=False,
    )
    assert present == {"Loopback0": {"10.1.0.1/32"}, "Loopback9": {"10.1.0.9/32"}}
    assert bgpcfgd.loopback_commands({"Loopback0": {"10.1.0.1/32", "10.1.0.2/32"}}, present, dummy=False) == [
        ["ip", "addr", "add", "10.1.0.2/32", "dev", "lo", "label", "lo:Loopback0"],
        ["ip", "addr", "del", "10.1.0.9/32", "dev", "lo"],
    ]


def test_only_added_lines_take_the_fast_path_and_anything_removed_takes_frr_reload():
    applied = "router bgp 65101\n neighbor 10.0.0.2 remote-as 65102\nexit\n"
    added = "router bgp 65101\n neighbor 10.0.0.2 remote-as 65102\n neighbor 10.0.0.3 remote-as 65103\nexit\n"
    assert bgpcfgd.only_adds(applied, added)
    assert not bgpcfgd.only_adds(added, applied), "a removed neighbour needs its `no` command"
    changed = added.replace("65103", "65104")
    assert not bgpcfgd.only_adds(added, changed), "a changed line is a removal and an addition"
    assert not bgpcfgd.only_adds(None, added), "nothing applied yet: FRR's state is unknown"
