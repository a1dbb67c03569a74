"""The lab state file: what inventories read, and what `down` cleans up from."""

import json

import pytest

from edgefaas.lab.spec import load_spec
from edgefaas.lab.state import DeviceState, LabState, StateError, known_labs, load_state, state_file

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def state_root(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEFAAS_STATE", str(tmp_path))
    return tmp_path


def test_state_round_trips_and_is_readable_by_everyone():
    state = LabState(spec=load_spec(devices=4), devices={"sonic-1": DeviceState(pid=42, netns="ns")})
    state.save()
    again = load_state("edgefaas")
    assert again.spec == state.spec
    assert again.devices["sonic-1"].pid == 42
    assert state_file("edgefaas").stat().st_mode & 0o004
    assert known_labs() == ["edgefaas"]


def test_missing_lab_says_how_to_start_it():
    with pytest.raises(StateError, match="edgefaas lab up"):
        load_state("nolab")


def test_corrupt_state_is_a_clear_error(state_root):
    path = state_root / "labs" / "broken" / "state.json"
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(StateError, match="cannot read lab state"):
        load_state("broken")


def test_state_records_addresses_for_inventories():
    LabState(spec=load_spec()).save()
    data = json.loads(state_file("edgefaas").read_text())
    assert [(d["name"], d["address"]) for d in data["spec"]["devices"]] == [
        ("sonic-1", "10.77.0.11"),
        ("sonic-2", "10.77.0.12"),
        ("jetson-1", "10.77.0.13"),
        ("wan-1", "10.77.0.14"),
        ("cloud-1", "10.77.1.11"),
    ]
    assert data["bridge"] == "br-edgefaas"


def test_a_powered_off_device_is_recorded_and_read_back():
    state = LabState(spec=load_spec(), devices={"jetson-1": DeviceState(powered_off=True)})
    state.save()
    assert load_state("edgefaas").devices["jetson-1"].powered_off is True


def test_a_state_file_written_before_power_off_existed_still_loads():
    LabState(spec=load_spec()).save()
    path = state_file("edgefaas")
    data = json.loads(path.read_text())
    data["devices"] = {"sonic-1": {"pid": 7, "netns": "ns"}}
    path.write_text(json.dumps(data))
    assert load_state("edgefaas").devices["sonic-1"].powered_off is False


@pytest.fixture
def device_dir(tmp_path):
    from edgefaas.lab.device import DevicePaths

    paths = DevicePaths(tmp_path / "jetson-1")
    paths.upper.mkdir(parents=True)
    paths.prepared.write_text("10.77.0.13\n")
    return paths


def test_a_powered_off_device_boots_from_its_disk_not_blank(device_dir):
    from edgefaas.lab.lifecycle import boot_plan

    assert boot_plan(DeviceState(powered_off=True), device_dir, alive=False) == "from-disk"


def test_a_running_device_is_left_alone(device_dir):
    from edgefaas.lab.lifecycle import boot_plan

    assert boot_plan(DeviceState(pid=1), device_dir, alive=True) == "running"


def test_a_device_that_died_without_lab_stop_is_recreated(device_dir):
    from edgefaas.lab.lifecycle import boot_plan

    # Not powered off on purpose: an interrupted `up` may have left it half-made.
    assert boot_plan(DeviceState(pid=1), device_dir, alive=False) == "fresh"


def test_a_powered_off_device_without_a_disk_is_recreated(device_dir):
    from edgefaas.lab.lifecycle import boot_plan

    device_dir.prepared.unlink()
    assert boot_plan(DeviceState(powered_off=True), device_dir, alive=False) == "fresh"
