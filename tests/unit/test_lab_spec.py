"""Lab specs: validated whole before anything on the machine is created."""

import ipaddress

import pytest

from edgefaas.lab.spec import SpecError, check_subnet_free, default_devices, load_spec, parse_spec

pytestmark = pytest.mark.unit


def test_default_lab_is_the_blueprint_demo():
    spec = load_spec()
    assert [(d.name, d.profile, d.roles) for d in spec.devices] == [
        ("sonic-1", "sonic", ("k3s_server",)),
        ("sonic-2", "sonic", ("k3s_agent",)),
        ("jetson-1", "jetson", ("k3s_agent",)),
        ("wan-1", "wan", ()),
        ("cloud-1", "cloud", ("k3s_server",)),
    ]


@pytest.mark.parametrize("count", [1, 3, 10, 20, 40])
def test_n_device_lab_has_one_server_per_site_and_unique_addresses(count):
    spec = load_spec(devices=count)
    # The switches and boards asked for, the lab's WAN stand-in and the cloud's server.
    assert [d.profile for d in spec.devices].count("wan") == 1
    assert len(spec.devices) == count + 2
    edge = [d for d in spec.devices if d.profile != "cloud"]
    cloud = [d for d in spec.devices if d.profile == "cloud"]
    assert sum("k3s_server" in d.roles for d in edge) == 1
    assert sum("k3s_server" in d.roles for d in cloud) == 1
    addresses = [d.address for d in spec.devices]
    assert len(set(addresses)) == count + 2
    assert spec.gateway not in addresses and spec.cloud_gateway not in addresses
    assert all(ipaddress.IPv4Address(d.address) in spec.network for d in edge)
    # The cloud is on a segment of its own, reached through the provider edge alone.
    assert all(ipaddress.IPv4Address(d.address) in spec.cloud_network for d in cloud)
    assert not spec.cloud_network.overlaps(spec.network)
    assert spec.router_of(cloud[0]) == spec.cloud_gateway
    assert spec.router_of(edge[0]) == spec.gateway


def test_cloud_segment_follows_the_lab_subnet():
    spec = parse_spec({"subnet": "10.79.0.0/24"})
    assert str(spec.cloud_network) == "10.79.1.0/24"
    assert spec.device("cloud-1").address == "10.79.1.11"
    assert spec.cloud_gateway == "10.79.1.1"


def test_a_cloud_device_needs_a_provider_edge_to_be_reached_through():
    with pytest.raises(SpecError, match=r"cloud devices \(c1\) are reached through a wan device"):
        parse_spec({"devices": [{"name": "s1", "profile": "sonic"}, {"name": "c1", "profile": "cloud"}]})


def test_a_cloud_address_outside_the_cloud_segment_is_refused():
    with pytest.raises(
        SpecError, match=r"\(c1\): address 10.77.0.40 is not a host address of the cloud segment"
    ):
        parse_spec(
            {
                "devices": [
                    {"name": "w", "profile": "wan"},
                    {"name": "c1", "profile": "cloud", "address": "10.77.0.40"},
                ]
            }
        )


def test_two_servers_in_one_site_are_refused_and_one_per_site_is_not():
    with pytest.raises(SpecError, match=r"2 k3s_server devices \(a, b\) in the edge site"):
        parse_spec(
            {
                "devices": [
                    {"name": "a", "profile": "sonic", "roles": ["k3s_server"]},
                    {"name": "b", "profile": "jetson", "roles": ["k3s_server"]},
                ]
            }
        )
    parse_spec(
        {
            "devices": [
                {"name": "a", "profile": "sonic", "roles": ["k3s_server"]},
                {"name": "w", "profile": "wan"},
                {"name": "b", "profile": "cloud", "roles": ["k3s_server"]},
            ]
        }
    )


def test_a_cloud_segment_the_machine_already_uses_is_refused():
    spec = load_spec()
    taken = [ipaddress.IPv4Network("10.77.1.0/25")]
    with pytest.raises(SpecError, match=r"the cloud segment 10.77.1.0/24 .* clashes with 10.77.1.0/25"):
        check_subnet_free(spec, taken, own=set())
    # Its own route (a re-run of `up`) is no clash.
    check_subnet_free(spec, [ipaddress.IPv4Network("10.77.1.0/24")], own={"10.77.0.0/24", "10.77.1.0/24"})


def test_addresses_are_stable_for_the_same_spec():
    assert load_spec(devices=5) == load_spec(devices=5)


def test_unknown_top_level_field_is_named():
    with pytest.raises(SpecError, match="unknown field 'devics'"):
        parse_spec({"devics": []})


def test_unknown_device_field_is_named_with_its_position():
    with pytest.raises(SpecError, match=r"devices\[1\]: unknown field 'rol'"):
        parse_spec(
            {"devices": [{"name": "a", "profile": "sonic"}, {"name": "b", "profile": "sonic", "rol": []}]}
        )


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ({"name": "Bad_Name", "profile": "sonic"}, "lowercase hostname"),
        ({"name": "x", "profile": "router"}, "profile 'router'"),
        ({"name": "x", "profile": "sonic", "roles": ["master"]}, "roles"),
        ({"name": "x", "profile": "sonic", "roles": ["k3s_server", "k3s_agent"]}, "either"),
        ({"name": "x", "profile": "sonic", "address": "10.99.0.5"}, "not a host address"),
        (
            {"name": "x", "profile": "jetson", "userland": "buster"},
            r"\(x\): userland 'buster' must be one of",
        ),
        ({"name": "x", "profile": "jetson", "arch": "riscv64"}, r"\(x\): arch 'riscv64' must be one of"),
        ({"name": "x", "profile": "wan", "roles": ["k3s_agent"]}, r"\(x\): roles: a wan device"),
    ],
)
def test_bad_device_fields_are_refused(device, message):
    with pytest.raises(SpecError, match=message):
        parse_spec({"devices": [device]})


def test_explicit_address_is_kept_and_others_avoid_it():
    spec = parse_spec(
        {
            "devices": [
                {"name": "a", "profile": "sonic", "address": "10.77.0.12"},
                {"name": "b", "profile": "sonic"},
                {"name": "c", "profile": "jetson"},
            ]
        }
    )
    assert spec.device("a").address == "10.77.0.12"
    assert len({d.address for d in spec.devices}) == 3


def test_duplicate_names_and_two_servers_are_refused():
    with pytest.raises(SpecError, match="used twice"):
        parse_spec({"devices": [{"name": "a", "profile": "sonic"}, {"name": "a", "profile": "jetson"}]})
    with pytest.raises(SpecError, match="2 k3s_server"):
        parse_spec(
            {
                "devices": [
                    {"name": "a", "profile": "sonic", "roles": ["k3s_server"]},
                    {"name": "b", "profile": "sonic", "roles": ["k3s_server"]},
                ]
            }
        )


def test_subnet_too_small_for_the_devices():
    with pytest.raises(SpecError, match="room for"):
        parse_spec(
            {"subnet": "10.77.0.0/28", "devices": [{"name": f"d{i}", "profile": "sonic"} for i in range(8)]}
        )


def test_public_or_malformed_subnet_is_refused():
    with pytest.raises(SpecError, match="private"):
        parse_spec({"subnet": "8.8.8.0/24"})
    with pytest.raises(SpecError, match="not an IPv4 network"):
        parse_spec({"subnet": "10.77.0.0/33"})


def test_subnet_clashing_with_the_machine_is_refused_but_not_with_itself():
    spec = load_spec()
    machine = [ipaddress.IPv4Network("10.77.0.0/16"), ipaddress.IPv4Network("0.0.0.0/0")]
    with pytest.raises(SpecError, match=r"clashes with 10\.77\.0\.0/16"):
        check_subnet_free(spec, machine, own=set())
    check_subnet_free(spec, [ipaddress.IPv4Network("10.77.0.0/24")], own={"10.77.0.0/24"})
    check_subnet_free(spec, [ipaddress.IPv4Network("192.168.1.0/24")], own=set())


def test_spec_file_errors_name_the_file(tmp_path):
    path = tmp_path / "lab.yaml"
    path.write_text("name: biglab\ndevices:\n  - {name: s1, profile: sonic, colour: red}\n")
    with pytest.raises(SpecError, match=rf"{path}: devices\[0\]: unknown field 'colour'"):
        load_spec(path)
    path.write_text("devices: [\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(path)
    with pytest.raises(SpecError, match="either a spec file or --devices"):
        load_spec(path, devices=3)


def test_jetsons_default_to_the_jetpack5_generation_and_switches_to_bookworm():
    spec = parse_spec({"devices": default_devices(3)})
    assert {d.name: d.userland for d in spec.devices} == {
        "sonic-1": "bookworm",
        "sonic-2": "bookworm",
        "jetson-1": "bullseye",
    }
    board = parse_spec({"devices": [{"name": "j", "profile": "jetson", "userland": "bookworm"}]})
    assert board.devices[0].userland == "bookworm"


def test_a_device_may_have_its_own_userland_and_architecture():
    spec = parse_spec(
        {
            "devices": [
                {"name": "sonic-1", "profile": "sonic", "roles": ["k3s_server"]},
                {"name": "jetson-1", "profile": "jetson", "userland": "bullseye", "arch": "arm64"},
            ]
        }
    )
    sonic, jetson = spec.devices
    assert (sonic.userland, sonic.arch) == ("bookworm", "amd64")
    assert (jetson.userland, jetson.arch) == ("bullseye", "arm64")
    # What the state file keeps reads back as the same spec.
    assert parse_spec(spec.to_dict()) == spec


def test_the_wan_device_is_in_no_inventory_group_and_keeps_the_others_addresses():
    spec = load_spec()
    wan = spec.device("wan-1")
    assert wan.groups == () and wan.userland == "bookworm"
    # Appended after the switches and boards: their addresses are those of a lab without it.
    without = parse_spec({"devices": default_devices(3)})
    assert [d.address for d in spec.devices[:3]] == [d.address for d in without.devices]
    assert wan.address not in {d.address for d in without.devices}


def test_a_lab_subnet_overlapping_the_wan_client_subnet_is_refused_only_with_a_wan_device():
    with pytest.raises(SpecError, match=r"overlaps 10\.200\.0\.0/24, the WAN client subnet"):
        parse_spec({"subnet": "10.200.0.0/16"})
    parse_spec({"subnet": "10.200.0.0/16", "devices": default_devices(3)})
