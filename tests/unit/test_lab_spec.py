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
    ]


@pytest.mark.parametrize("count", [1, 3, 10, 20, 40])
def test_n_device_lab_has_one_server_and_unique_addresses(count):
    spec = load_spec(devices=count)
    # The switches and boards asked for, and the lab's WAN stand-in.
    assert [d.profile for d in spec.devices].count("wan") == 1
    assert len(spec.devices) == count + 1
    assert sum("k3s_server" in d.roles for d in spec.devices) == 1
    addresses = [d.address for d in spec.devices]
    assert len(set(addresses)) == count + 1
    assert spec.gateway not in addresses
    assert all(ipaddress.IPv4Address(a) in spec.network for a in addresses)


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
