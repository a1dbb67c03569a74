"""The switch's routing, planned before any device is touched (edgefaas.deploy.sonic)."""

from __future__ import annotations

import json
import re
from ipaddress import IPv4Address, IPv4Interface

import pytest

from edgefaas.deploy import sonic
from edgefaas.deploy.facts import InterfaceAddresses
from edgefaas.deploy.inventory import InventoryError, check_groups
from edgefaas.deploy.sonic import RoutingError, check_routing, config_db_entries, plan_routing
from edgefaas.sonic.config_db import parse_wanted

pytestmark = pytest.mark.unit

# What inventories/group_data/sonic.py gives every switch.
DEFAULTS = {
    "bgp_asn": None,
    "bgp_asn_base": 65100,
    "loopback_interface": "Loopback0",
    "loopback_address": None,
    "loopback_pool": "10.1.0.0/24",
    "bgp_neighbors": None,
    "bgp_address": None,
    "bgp_peer_ranges": [],
    "bgp_bfd": True,
    "bgp_keepalive": 3,
    "bgp_holdtime": 9,
}
LAB_ETH0 = {"lo": [IPv4Interface("127.0.0.1/8")], "eth0": [IPv4Interface("192.168.50.11/24")]}


def switch(name: str, address: str, **data) -> tuple[str, dict]:
    return name, {**DEFAULTS, "ssh_hostname": address, **data}


def lab() -> list[tuple[str, dict]]:
    return [switch("sonic-1", "192.168.50.11"), switch("sonic-2", "192.168.50.12")]


def refusal(hosts) -> str:
    with pytest.raises(RoutingError) as err:
        plan_routing(hosts)
    return str(err.value)


def test_lab_switches_peer_over_their_lab_addresses_with_distinct_private_asns_and_pool_loopbacks():
    plans = plan_routing(lab())
    one, two = plans["sonic-1"], plans["sonic-2"]
    assert (one.asn, two.asn) == (65101, 65102)
    assert (one.router_id, two.router_id) == (IPv4Address("10.1.0.1"), IPv4Address("10.1.0.2"))
    assert [(n.address, n.asn, n.name) for n in one.neighbors] == [
        (IPv4Address("192.168.50.12"), 65102, "sonic-2")
    ]
    assert [(n.address, n.asn, n.name) for n in two.neighbors] == [
        (IPv4Address("192.168.50.11"), 65101, "sonic-1")
    ]
    assert one.bfd and (one.keepalive, one.holdtime) == (3, 9) and one.loopback_interface == "Loopback0"


def test_given_values_win_over_the_derived_ones():
    hosts = [
        switch("a", "10.0.0.1", bgp_asn=4200000001, loopback_address="172.16.0.1/32", bgp_address="10.9.0.1"),
        switch("b", "10.0.0.2", bgp_asn="64512", loopback_address="172.16.0.2"),
    ]
    plans = plan_routing(hosts)
    assert plans["a"].asn == 4200000001 and plans["b"].asn == 64512
    assert plans["a"].router_id == IPv4Address("172.16.0.1")
    # b peers with a at a's bgp_address, not at its ssh address.
    assert [(n.address, n.asn) for n in plans["b"].neighbors] == [(IPv4Address("10.9.0.1"), 4200000001)]


def test_a_named_neighbour_list_replaces_the_other_switches():
    hosts = [
        switch("a", "10.0.0.1", bgp_neighbors=[{"address": "10.0.0.254", "asn": 65000, "name": "spine"}]),
        switch("b", "10.0.0.2"),
    ]
    plans = plan_routing(hosts)
    assert [(str(n.address), n.asn, n.name) for n in plans["a"].neighbors] == [("10.0.0.254", 65000, "spine")]
    assert [n.name for n in plans["b"].neighbors] == ["a"]


@pytest.mark.parametrize(
    ("asn", "said"),
    [
        (0, "bgp_asn: 0 is out of range (1..4294967295)"),
        (4294967296, "bgp_asn: 4294967296 is out of range (1..4294967295)"),
        (-5, "out of range"),
        ("sixty", "bgp_asn: 'sixty' is no AS number"),
        (True, "is no AS number"),
        (23456, "bgp_asn: 23456 is AS_TRANS (RFC 6793)"),
        (65535, "65535 is reserved (RFC 7300)"),
        (4294967295, "4294967295 is reserved (RFC 7300)"),
    ],
)
def test_an_asn_out_of_range_or_reserved_is_refused_naming_host_and_field(asn, said):
    hosts = [switch("sonic-1", "192.168.50.11", bgp_asn=asn), switch("sonic-2", "192.168.50.12")]
    message = refusal(hosts)
    assert "sonic-1: bgp_asn" in message and said in message


def test_a_derived_asn_is_checked_too():
    hosts = [switch("a", "10.0.0.1", bgp_asn_base=4294967294), switch("b", "10.0.0.2")]
    assert "a: bgp_asn (bgp_asn_base + 1): 4294967295 is reserved" in refusal(hosts)


def test_a_neighbour_asn_is_checked():
    hosts = [switch("a", "10.0.0.1", bgp_neighbors=[{"address": "10.0.0.9", "asn": 0}])]
    assert "a: bgp_neighbors[0].asn: 0 is out of range" in refusal(hosts)


def test_a_duplicate_router_id_across_the_switches_is_refused_naming_both():
    hosts = [
        switch("sonic-1", "192.168.50.11", loopback_address="10.1.0.2"),
        switch("sonic-2", "192.168.50.12"),  # the pool's second address: 10.1.0.2 as well
    ]
    message = refusal(hosts)
    assert "sonic-2: loopback_address: router id 10.1.0.2 is sonic-1's too" in message


@pytest.mark.parametrize(
    ("field", "value", "said"),
    [
        ("loopback_address", "10.1.0.300", "sonic-1: loopback_address: '10.1.0.300' is no IPv4 address"),
        ("loopback_address", "10.1.0.0/24", "must be a single address (/32)"),
        ("bgp_address", "not-an-ip", "sonic-1: bgp_address: 'not-an-ip' is no IPv4 address"),
        ("loopback_pool", "10.1.0.1/24", "sonic-1: loopback_pool: '10.1.0.1/24' is no IPv4 network"),
        (
            "bgp_neighbors",
            [{"address": "10.0.0.256", "asn": 65000}],
            "bgp_neighbors[0].address: '10.0.0.256'",
        ),
        ("bgp_neighbors", [{"asn": 65000}], "sonic-1: bgp_neighbors[0]: {'asn': 65000} needs at least"),
        ("bgp_neighbors", "10.0.0.1", "sonic-1: bgp_neighbors: '10.0.0.1' must be a list"),
        ("loopback_interface", "lo0", "sonic-1: loopback_interface: 'lo0' must be Loopback<N>"),
        ("bgp_keepalive", 0, "sonic-1: bgp_keepalive: 0 must be an integer 1..65535"),
        ("bgp_holdtime", 5, "bgp_holdtime 5 must be at least 3 x bgp_keepalive (3)"),
        ("bgp_peer_ranges", [{"name": "pods", "ip_range": ["10.42.0.1/16"]}], "ip_range: '10.42.0.1/16'"),
        ("bgp_peer_ranges", [{"name": "a b", "ip_range": "10.42.0.0/16"}], "name: 'a b' must be 1-48"),
        ("bgp_peer_ranges", [{"ip_range": "10.42.0.0/16"}], "sonic-1: bgp_peer_ranges[0]"),
    ],
)
def test_malformed_values_are_refused_naming_host_and_field(field, value, said):
    hosts = [switch("sonic-1", "192.168.50.11", **{field: value}), switch("sonic-2", "192.168.50.12")]
    assert said in refusal(hosts)


def test_a_neighbour_listed_twice_or_being_the_switch_itself_is_refused():
    twice = [{"address": "10.0.0.9", "asn": 65000}, {"address": "10.0.0.9", "asn": 65001}]
    assert "a: bgp_neighbors: 10.0.0.9 is listed twice" in refusal(
        [switch("a", "10.0.0.1", bgp_neighbors=twice)]
    )
    own = [{"address": "10.1.0.1", "asn": 65000}]
    assert "is the switch's own router id" in refusal([switch("a", "10.0.0.1", bgp_neighbors=own)])


def test_a_peer_reached_by_host_name_needs_a_bgp_address():
    hosts = [switch("a", "switch-a.lab"), switch("b", "10.0.0.2")]
    assert "a: bgp_address: not given and ssh_hostname 'switch-a.lab' is no IPv4 address" in refusal(hosts)


def test_every_problem_is_named_at_once():
    hosts = [switch("a", "10.0.0.1", bgp_asn=0, loopback_address="x"), switch("b", "10.0.0.2")]
    with pytest.raises(RoutingError) as err:
        plan_routing(hosts)
    assert len(err.value.problems) == 2


def test_the_neighbour_s_local_address_is_the_switch_s_address_in_its_subnet():
    plan = plan_routing(lab())["sonic-1"]
    assert sonic.local_addresses(plan, LAB_ETH0) == {
        IPv4Address("192.168.50.12"): IPv4Address("192.168.50.11")
    }


def test_a_neighbour_outside_every_interface_subnet_is_refused_naming_what_the_switch_has():
    plan = plan_routing(
        [switch("a", "10.0.0.1", bgp_neighbors=[{"address": "10.9.9.9", "asn": 65000, "name": "x"}])]
    )["a"]
    with pytest.raises(RoutingError) as err:
        config_db_entries(plan, LAB_ETH0)
    assert (
        "a: bgp_neighbors: 10.9.9.9 (x) is in no subnet of the switch's interfaces (lo 127.0.0.1/8, eth0"
        in str(err.value)
    )


def test_a_host_route_reaches_no_neighbour():
    # A /32 (the switch's own loopback) holds no peer.
    plan = plan_routing([switch("a", "10.0.0.1", bgp_neighbors=[{"address": "10.1.0.9", "asn": 65000}])])["a"]
    with pytest.raises(RoutingError):
        sonic.local_addresses(plan, {"Loopback0": [IPv4Interface("10.1.0.9/32")]})


def test_config_db_entries_are_sonic_s_tables_and_fields():
    entries = config_db_entries(plan_routing(lab())["sonic-1"], LAB_ETH0)
    assert entries.shared == {"DEVICE_METADATA|localhost": {"bgp_asn": "65101"}}
    assert entries.owned == {
        "LOOPBACK_INTERFACE|Loopback0": {},
        "LOOPBACK_INTERFACE|Loopback0|10.1.0.1/32": {},
        "BGP_NEIGHBOR|192.168.50.12": {
            "asn": "65102",
            "name": "edgefaas-sonic-2",
            "local_addr": "192.168.50.11",
            "holdtime": "9",
            "keepalive": "3",
            "admin_status": "up",
            "bfd": "true",
        },
    }
    # Every value is a string, as Redis hashes hold them, and the device tool takes the document.
    assert all(isinstance(v, str) for entry in entries.owned.values() for v in entry.values())
    wanted = parse_wanted({"owned": entries.owned, "shared": entries.shared})
    assert wanted.owned["LOOPBACK_INTERFACE|Loopback0"] == {}


def test_bfd_off_and_peer_ranges():
    hosts = [
        switch(
            "a",
            "192.168.50.11",
            bgp_bfd=False,
            bgp_peer_ranges=[
                {"name": "k3s-pods", "ip_range": ["10.42.0.0/16", "10.43.0.0/16"], "peer_asn": 65200}
            ],
        ),
        switch("b", "192.168.50.12"),
    ]
    owned = config_db_entries(plan_routing(hosts)["a"], LAB_ETH0).owned
    assert owned["BGP_NEIGHBOR|192.168.50.12"]["bfd"] == "false"
    stored = parse_wanted({"owned": owned}).owned["BGP_PEER_RANGE|EDGEFAAS_K3S_PODS"]
    assert stored["ip_range@"] == "10.42.0.0/16,10.43.0.0/16", "a list is stored as SONiC's field@"
    assert owned["BGP_PEER_RANGE|EDGEFAAS_K3S_PODS"] == {
        "name": "EDGEFAAS_K3S_PODS",
        "ip_range": ["10.42.0.0/16", "10.43.0.0/16"],
        "peer_asn": "65200",
        "src_address": "10.1.0.1",
    }


def test_no_entry_touches_front_panel_ports_or_reloads():
    owned = config_db_entries(plan_routing(lab())["sonic-1"], LAB_ETH0).owned
    tables = {key.split("|", 1)[0] for key in owned}
    assert tables <= {"LOOPBACK_INTERFACE", "BGP_NEIGHBOR", "BGP_PEER_RANGE"}


def test_the_inventory_check_refuses_explicit_routing_mistakes_and_leaves_defaults_to_the_deploy():
    groups = {
        "sonic": [
            ("sonic-1", {"ssh_hostname": "192.168.50.11", "loopback_address": "10.1.0.7"}),
            ("sonic-2", {"ssh_hostname": "192.168.50.12", "loopback_address": "10.1.0.7"}),
        ],
        "k3s_server": ["sonic-1"],
        "k3s_agent": ["sonic-2"],
    }
    with pytest.raises(
        InventoryError, match=re.escape("sonic-2: loopback_address: router id 10.1.0.7 is sonic-1's too")
    ):
        check_groups(groups, source="inv.py")
    groups["sonic"][1][1]["loopback_address"] = "10.1.0.8"
    groups["sonic"][0][1]["bgp_asn"] = 70000000000
    with pytest.raises(InventoryError, match="sonic-1: bgp_asn: 70000000000 is out of range"):
        check_groups(groups, source="inv.py")
    # Host data without group defaults (a lab inventory) is no mistake.
    assert check_routing([("sonic-1", {"ssh_hostname": "192.168.50.11"}), ("sonic-2", {})]) == []


def test_interface_addresses_are_read_from_iproute2_s_json():
    output = json.dumps(
        [
            {"ifname": "lo", "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8}]},
            {
                "ifname": "eth0",
                "addr_info": [
                    {"family": "inet", "local": "192.168.50.11", "prefixlen": 24},
                    {"family": "inet6", "local": "fe80::1", "prefixlen": 64},
                ],
            },
            {"ifname": "eth1", "addr_info": []},
        ]
    )
    assert InterfaceAddresses().process(output.splitlines()) == {
        "lo": [IPv4Interface("127.0.0.1/8")],
        "eth0": [IPv4Interface("192.168.50.11/24")],
    }
    assert sonic.interface_addresses("") == {}
