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
    ]
    assert data["bridge"] == "br-edgefaas"
