"""The switches' WAN plan (edgefaas.deploy.wan): addresses, communities, and every refusal."""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv4Interface

import pytest

from edgefaas.deploy import wan
from edgefaas.sonic.announce import parse_plan

pytestmark = pytest.mark.unit

FUNCTIONS = {"FuncA": {}, "system_info": {}, "camera": {}, "private": {}}
PUBLIC = ["FuncA", "system_info", "camera"]


def _switch(index: int, **data) -> tuple[str, dict]:
    base = {
        "ssh_hostname": f"10.77.0.{10 + index}",
        "bgp_asn_base": 65100,
        "loopback_pool": "10.1.0.0/24",
        "edgefaas_functions": FUNCTIONS,
        "edgefaas_public_functions": PUBLIC,
        "edgefaas_wan_anycast": "10.255.0.1/32",
        "edgefaas_wan_function_pool": "10.255.1.0/24",
        "edgefaas_wan_reserved": ["10.77.0.0/24"],
    }
    base.update(data)
    return f"sonic-{index}", base


def _refused(hosts, *fragments: str) -> str:
    with pytest.raises(wan.WanError) as caught:
        wan.plan_wan(hosts)
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_every_switch_gets_the_same_addresses_and_its_own_asn():
    plans = wan.plan_wan([_switch(1), _switch(2)])
    one, two = plans["sonic-1"], plans["sonic-2"]
    assert (one.asn, two.asn) == (65101, 65102)
    assert one.functions == two.functions
    assert sorted(one.functions) == sorted(PUBLIC)  # public functions only
    for function in one.functions.values():
        assert function.address in IPv4Interface("10.255.1.0/24").network
        assert function.id == int(function.address) - int(IPv4Address("10.255.1.0"))
    assert len({f.address for f in one.functions.values()}) == len(PUBLIC)
    document = one.document()
    assert document["anycast"] == "10.255.0.1/32"
    assert document["api_profile"] == "FROM_SDN_SLB_ROUTES"
    assert document["function_profile"] == "FROM_SDN_APPLIANCE_ROUTES"
    # What the deploy renders is what the announcer and the gateway accept.
    parsed = parse_plan(document)
    assert parsed.by_address() == {str(f.address): n for n, f in one.functions.items()}
    assert parsed.community("camera", 3) == f"65101:{one.functions['camera'].id}:3"


def test_explicit_addresses_win_and_adding_a_function_moves_no_other():
    pinned = {"edgefaas_wan_addresses": {"camera": "10.255.1.7"}}
    before = wan.plan_wan([_switch(1, **pinned), _switch(2)])["sonic-1"].functions
    assert before["camera"] == wan.FunctionAddress(IPv4Address("10.255.1.7"), 7)
    more = {**FUNCTIONS, "aaa-new": {}, "zzz-new": {}}
    public = [*PUBLIC, "aaa-new", "zzz-new"]
    after = wan.plan_wan(
        [
            _switch(1, edgefaas_functions=more, edgefaas_public_functions=public, **pinned),
            _switch(2, edgefaas_functions=more, edgefaas_public_functions=public),
        ]
    )["sonic-1"].functions
    for name, function in before.items():
        assert after[name] == function, name
    # The same inputs plan the same addresses, run after run.
    assert wan.plan_wan([_switch(1, **pinned), _switch(2)])["sonic-1"].functions == before


def test_no_wan_data_plans_nothing():
    bare = {"edgefaas_wan_anycast": None, "edgefaas_wan_function_pool": None}
    assert wan.plan_wan([_switch(1, **bare), _switch(2, **bare)]) == {}


def test_a_pool_overlapping_the_lab_or_management_subnet_is_refused():
    _refused(
        [_switch(1, edgefaas_wan_function_pool="10.77.0.0/25")], "edgefaas_wan_function_pool", "10.77.0.0/24"
    )
    # A switch's own management address inside the pool, even without a reserved subnet given.
    _refused(
        [_switch(1, edgefaas_wan_reserved=[], ssh_hostname="10.255.1.20")],
        "edgefaas_wan_function_pool",
        "ssh_hostname of sonic-1",
    )


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"edgefaas_wan_function_pool": "10.42.0.0/24"}, "k3s_cluster_cidr"),
        ({"edgefaas_wan_function_pool": "10.43.128.0/24"}, "k3s_service_cidr"),
        ({"edgefaas_wan_function_pool": "10.1.0.0/28"}, "loopback_pool"),
        (
            {"edgefaas_wan_function_pool": "10.128.0.0/15"},
            "edgefaas_wan_function_pool: 10.128.0.0/15 is too large",
        ),
        ({"edgefaas_wan_anycast": "10.42.0.1"}, "edgefaas_wan_anycast: 10.42.0.1 is inside k3s_cluster_cidr"),
        ({"edgefaas_wan_anycast": "10.255.1.1"}, "edgefaas_wan_anycast: 10.255.1.1 is inside"),
        ({"edgefaas_wan_anycast": "10.255.0.0/24"}, "edgefaas_wan_anycast: '10.255.0.0/24' must be a single"),
        (
            {"edgefaas_wan_function_pool": "10.255.1.1/24"},
            "edgefaas_wan_function_pool: '10.255.1.1/24' is no IPv4",
        ),
        ({"edgefaas_wan_api_community": "65100"}, "edgefaas_wan_api_community: '65100' is no BGP community"),
        ({"edgefaas_wan_function_community": "65100:70000"}, "edgefaas_wan_function_community"),
        ({"edgefaas_wan_function_community": "a:b"}, "edgefaas_wan_function_community: 'a:b'"),
        ({"edgefaas_wan_service_port": 8080}, "edgefaas_wan_service_port: 8080 is the gateway's API port"),
        (
            {"edgefaas_wan_addresses": {"camera": "10.255.2.7"}},
            "edgefaas_wan_addresses['camera']: 10.255.2.7 is outside",
        ),
        ({"edgefaas_wan_addresses": {"camera": "10.255.1.0"}}, "network or broadcast"),
        ({"edgefaas_wan_addresses": {"private": "10.255.1.9"}}, "no public function 'private'"),
        ({"edgefaas_wan_addresses": {"camera": "not-an-address"}}, "edgefaas_wan_addresses['camera']"),
        ({"bgp_asn": 23456}, "bgp_asn"),
    ],
)
def test_bad_data_is_refused_naming_the_field(data, fragment):
    _refused([_switch(1, **data)], fragment)


def test_two_switches_claiming_one_address_for_different_functions_are_refused():
    message = _refused(
        [
            _switch(1, edgefaas_wan_addresses={"camera": "10.255.1.7"}),
            _switch(2, edgefaas_wan_addresses={"FuncA": "10.255.1.7"}),
        ],
        "sonic-2: edgefaas_wan_addresses['FuncA']: 10.255.1.7 is claimed by sonic-1 for function 'camera'",
    )
    assert "one address serves one function" in message
    # The same claim on both is one address for one function: accepted.
    same = {"edgefaas_wan_addresses": {"camera": "10.255.1.7"}}
    assert wan.plan_wan([_switch(1, **same), _switch(2, **same)])["sonic-2"].functions["camera"].id == 7
    _refused(
        [
            _switch(1, edgefaas_wan_addresses={"camera": "10.255.1.7"}),
            _switch(2, edgefaas_wan_addresses={"camera": "10.255.1.8"}),
        ],
        "another switch gives 'camera' 10.255.1.7",
    )


def test_switches_must_agree_on_the_wan():
    _refused(
        [_switch(1), _switch(2, edgefaas_wan_anycast="10.255.0.2/32")],
        "sonic-2: edgefaas_wan_anycast: '10.255.0.2/32' differs from sonic-1's",
    )
    _refused([_switch(1), _switch(2, edgefaas_wan_function_pool=None)], "sonic-2: edgefaas_wan_function_pool")


def test_a_full_pool_is_refused():
    _refused([_switch(1, edgefaas_wan_function_pool="10.255.1.0/30")], "no free address left for function")


def test_the_switchs_own_interfaces_are_checked_on_the_device():
    plan = wan.plan_wan([_switch(1)])["sonic-1"]
    wan.check_interfaces(
        plan, {"eth0": [IPv4Interface("10.77.0.11/24")], "lo": [IPv4Interface("127.0.0.1/8")]}
    )
    with pytest.raises(
        wan.WanError, match=re.escape("edgefaas_wan_function_pool: 10.255.1.0/24 overlaps eth0's subnet")
    ):
        wan.check_interfaces(plan, {"eth0": [IPv4Interface("10.255.0.10/16")]})
