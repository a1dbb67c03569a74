"""The switches' SD-WAN provider edges (edgefaas.deploy.sdwan_peers): checked, then BGP neighbours."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface

import pytest

from edgefaas.deploy.sdwan_peers import with_sdwan_peers
from edgefaas.deploy.sonic import RoutingError, config_db_entries, plan_routing

pytestmark = pytest.mark.unit

DEFAULTS = {
    "bgp_asn_base": 65100,
    "loopback_interface": "Loopback0",
    "loopback_pool": "10.1.0.0/24",
    "bgp_bfd": True,
    "bgp_keepalive": 3,
    "bgp_holdtime": 9,
}
ETH0 = {"lo": [IPv4Interface("127.0.0.1/8")], "eth0": [IPv4Interface("192.168.50.11/24")]}
PE = {"name": "wan-1", "address": "192.168.50.14", "asn": 65000}


def _plan(**data):
    hosts = [
        ("sonic-1", {**DEFAULTS, "ssh_hostname": "192.168.50.11", **data}),
        ("sonic-2", {**DEFAULTS, "ssh_hostname": "192.168.50.12"}),
    ]
    plan = plan_routing(hosts)["sonic-1"]
    return with_sdwan_peers(plan, hosts[0][1])


def test_each_pe_is_one_more_bfd_neighbour_and_leaving_it_out_removes_its_entry():
    plan = _plan(sdwan_peers=[PE])
    entries = config_db_entries(plan, ETH0).owned
    entry = entries["BGP_NEIGHBOR|192.168.50.14"]
    assert entry["asn"] == "65000" and entry["bfd"] == "true"
    assert entry["name"] == "edgefaas-sdwan-wan-1" and entry["local_addr"] == "192.168.50.11"
    assert (entry["keepalive"], entry["holdtime"]) == ("3", "9")
    assert "BGP_NEIGHBOR|192.168.50.12" in entries
    # The owned set without the PE: the `sonic` owner's ensure() deletes what it no longer holds.
    without = config_db_entries(_plan(), ETH0).owned
    assert set(entries) - set(without) == {"BGP_NEIGHBOR|192.168.50.14"}


@pytest.mark.parametrize(
    ("peers", "message"),
    [
        ("wan-1", r"sonic-1: sdwan_peers: 'wan-1' must be a list"),
        (
            [{"name": "wan-1", "address": "192.168.50.14"}],
            r"sdwan_peers\[0\]: .* needs 'name', 'address' and 'asn'",
        ),
        ([{**PE, "address": "192.168.50.300"}], r"sdwan_peers\[0\]\.address: '192\.168\.50\.300' is no IPv4"),
        ([{**PE, "asn": "AS65000"}], r"sdwan_peers\[0\]\.asn: 'AS65000' is no AS number"),
        ([{**PE, "asn": 23456}], r"sdwan_peers\[0\]\.asn: 23456 is AS_TRANS"),
        ([{**PE, "asn": 65101}], r"sdwan_peers\[0\]\.asn: 65101 is the switch's own AS number"),
        ([{**PE, "name": "pe one"}], r"sdwan_peers\[0\]\.name: 'pe one' must be"),
        ([PE, {**PE, "name": "wan-2"}], r"sdwan_peers: 192\.168\.50\.14 is listed twice"),
        (
            [{**PE, "address": "192.168.50.12"}],
            r"192\.168\.50\.12 \(wan-1\) is already the BGP neighbour sonic-2",
        ),
        ([{**PE, "address": "10.1.0.1"}], r"10\.1\.0\.1 is the switch's own router id"),
    ],
)
def test_bad_peers_are_refused_naming_host_and_field(peers, message):
    with pytest.raises(RoutingError, match=message):
        _plan(sdwan_peers=peers)


def test_a_pe_no_interface_reaches_is_refused_before_anything_is_written():
    plan = _plan(sdwan_peers=[{**PE, "address": "203.0.113.1"}])
    with pytest.raises(RoutingError, match=r"203\.0\.113\.1 \(sdwan-wan-1\) is in no subnet"):
        config_db_entries(plan, ETH0)


def test_no_peers_leave_the_plan_as_it_was():
    hosts = [
        ("sonic-1", {**DEFAULTS, "ssh_hostname": "192.168.50.11", "sdwan_peers": []}),
        ("sonic-2", {**DEFAULTS, "ssh_hostname": "192.168.50.12"}),
    ]
    plan = plan_routing(hosts)["sonic-1"]
    assert with_sdwan_peers(plan, hosts[0][1]) == plan
    assert [n.address for n in _plan(sdwan_peers=[PE]).neighbors] == [
        IPv4Address("192.168.50.12"),
        IPv4Address("192.168.50.14"),
    ]
