"""`edgefaas config-db` against a real Redis (Debian's redis-server, as on the lab's switches)."""

import json
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from edgefaas.deploy.control_plane_acl import acl_entries
from edgefaas.sonic.cli import config_db_group

from .redis_server import redis_server

pytestmark = pytest.mark.unit

CONFIG_DB, STATE_DB = 4, 6
K3S_LINES = ["6443/tcp K3S API server", "10250/tcp kubelet", "8472/tcp node enrollment"]


@pytest.fixture
def server(tmp_path):
    """A throwaway redis-server on a unix socket under tmp_path; no TCP port, nothing saved."""
    with redis_server(tmp_path) as socket:
        yield socket


@pytest.fixture
def device(server, tmp_path):
    """The switch's files (config_db.json with others' entries) and a CLI runner bound to them."""
    config_json = tmp_path / "sonic" / "config_db.json"
    config_json.parent.mkdir()
    saved = {
        "ACL_TABLE": {"SSH_ONLY": {"type": "CTRLPLANE", "services": ["SSH"], "stage": "ingress"}},
        "DEVICE_METADATA": {"localhost": {"hostname": "sonic-1", "hwsku": "Force10-S6000"}},
        "PORT": {"Ethernet0": {"lanes": "29,30,31,32", "admin_status": "up"}},
    }
    config_json.write_text(json.dumps(saved, indent=4))
    db = redis.Redis(unix_socket_path=str(server), db=CONFIG_DB, decode_responses=True)
    db.hset("ACL_TABLE|SSH_ONLY", mapping={"type": "CTRLPLANE", "services@": "SSH", "stage": "ingress"})
    db.hset("DEVICE_METADATA|localhost", mapping={"hostname": "sonic-1", "hwsku": "Force10-S6000"})
    db.hset("PORT|Ethernet0", mapping={"lanes": "29,30,31,32", "admin_status": "up"})
    # An operator's change not saved yet: applying must not persist it.
    db.hset("ACL_TABLE|UNSAVED", mapping={"type": "CTRLPLANE", "services@": "SNMP"})
    return Device(server, tmp_path, config_json, db)


class Device:
    def __init__(self, socket: Path, root: Path, config_json: Path, db) -> None:
        self.socket, self.config_json, self.db = socket, config_json, db
        self.records = root / "records"
        self.layout = root / "database_config.json"  # absent: SONiC's default numbers
        self.state = redis.Redis(unix_socket_path=str(socket), db=STATE_DB, decode_responses=True)

    def run(self, *args: str, wanted: dict | None = None, socket: Path | None = None):
        options = [
            f"--socket={socket or self.socket}",
            f"--database-config={self.layout}",
            f"--config-db-json={self.config_json}",
            f"--records={self.records}",
        ]
        stdin = json.dumps(wanted) if wanted is not None else None
        return CliRunner().invoke(config_db_group, [*options, *args], input=stdin)

    def apply(self, owner: str, wanted: dict):
        return self.run("apply", "--owner", owner, "-", wanted=wanted)

    def saved(self) -> dict:
        return json.loads(self.config_json.read_text())

    def everything(self) -> dict:
        return {key: self.db.hgetall(key) for key in sorted(self.db.keys("*"))}


def k3s(lines=K3S_LINES) -> dict:
    return {"owned": acl_entries("k3s", lines)}


def test_apply_writes_the_owner_s_entries_to_redis_and_config_db_json(device):
    result = device.apply("k3s", k3s())
    assert result.exit_code == 0, result.output
    changed = json.loads(result.stdout)["changed"]
    assert sorted(c["key"] for c in changed) == [
        "ACL_RULE|EDGEFAAS_K3S_10250|RULE_2",
        "ACL_RULE|EDGEFAAS_K3S_6443|RULE_1",
        "ACL_RULE|EDGEFAAS_K3S_8472|RULE_3",
        "ACL_TABLE|EDGEFAAS_K3S_10250",
        "ACL_TABLE|EDGEFAAS_K3S_6443",
        "ACL_TABLE|EDGEFAAS_K3S_8472",
    ]
    assert {c["action"] for c in changed} == {"create"}
    table = device.db.hgetall("ACL_TABLE|EDGEFAAS_K3S_6443")
    assert table["type"] == "CTRLPLANE" and table["services@"] == "EXTERNAL_CLIENT"
    assert device.db.hgetall("ACL_RULE|EDGEFAAS_K3S_8472|RULE_3") == {
        "PRIORITY": "9997",
        "PACKET_ACTION": "ACCEPT",
        "L4_DST_PORT": "8472",
        "SRC_IP": "0.0.0.0/0",
    }
    saved = device.saved()
    # Lists as config_db.json holds them: the field without '@', a JSON list.
    assert saved["ACL_TABLE"]["EDGEFAAS_K3S_6443"]["services"] == ["EXTERNAL_CLIENT"]
    assert saved["ACL_RULE"]["EDGEFAAS_K3S_6443|RULE_1"]["L4_DST_PORT"] == "6443"
    record = json.loads((device.records / "k3s.json").read_text())
    assert sorted(record["owned"]) == sorted(k3s()["owned"])


def test_config_db_json_changes_for_exactly_the_owner_s_keys(device):
    before = device.saved()
    assert device.apply("k3s", k3s()).exit_code == 0
    after = device.saved()
    assert "UNSAVED" not in after["ACL_TABLE"], "an operator's unsaved entry was persisted"
    for port in ("6443", "10250", "8472"):
        after["ACL_TABLE"].pop(f"EDGEFAAS_K3S_{port}")
    assert after.pop("ACL_RULE") and after == before


def test_re_apply_changes_nothing_and_diff_says_same(device):
    assert device.apply("k3s", k3s()).exit_code == 0
    saved = device.config_json.stat().st_mtime_ns, device.config_json.read_text()
    diff = device.run("diff", "--owner", "k3s", "-", wanted=k3s())
    assert diff.exit_code == 0, diff.output
    assert json.loads(diff.stdout)["differs"] == []
    again = device.apply("k3s", k3s())
    assert again.exit_code == 0 and json.loads(again.stdout)["changed"] == []
    assert (device.config_json.stat().st_mtime_ns, device.config_json.read_text()) == saved


def test_diff_names_what_differs_with_exit_1(device):
    diff = device.run("diff", "--owner", "k3s", "-", wanted=k3s())
    assert diff.exit_code == 1
    assert len(json.loads(diff.stdout)["differs"]) == 6
    assert device.db.keys("*EDGEFAAS*") == [], "diff wrote something"


def test_owned_entries_are_written_whole_and_unlisted_ones_deleted(device):
    assert device.apply("k3s", k3s()).exit_code == 0
    device.db.hset("ACL_RULE|EDGEFAAS_K3S_6443|RULE_1", mapping={"L4_DST_PORT": "1", "EXTRA": "x"})
    assert device.run("diff", "--owner", "k3s", "-", wanted=k3s()).exit_code == 1
    fewer = k3s(K3S_LINES[:1])
    result = device.apply("k3s", fewer)
    assert result.exit_code == 0, result.output
    rule = "ACL_RULE|EDGEFAAS_K3S_6443|RULE_1"
    assert device.db.hgetall(rule) == fewer["owned"][rule]
    assert not device.db.keys("ACL_*|EDGEFAAS_K3S_10250*") and not device.db.keys("ACL_*|EDGEFAAS_K3S_8472*")
    assert sorted(device.saved()["ACL_RULE"]) == ["EDGEFAAS_K3S_6443|RULE_1"]
    assert sorted(device.saved()["ACL_TABLE"]) == ["EDGEFAAS_K3S_6443", "SSH_ONLY"]


def test_remove_deletes_exactly_the_owner_s_entries(device):
    before = device.everything()
    saved = device.saved()
    assert device.apply("k3s", k3s()).exit_code == 0
    assert device.apply("triton", {"owned": acl_entries("triton", ["8000/tcp Triton http"])}).exit_code == 0
    result = device.run("remove", "--owner", "k3s")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["changed"]) == 6
    left = device.everything()
    assert {k: v for k, v in left.items() if "TRITON" not in k} == before
    assert "ACL_TABLE|EDGEFAAS_TRITON_8000" in left
    persisted = device.saved()
    assert persisted["ACL_RULE"] == {
        "EDGEFAAS_TRITON_8000|RULE_1": persisted["ACL_RULE"]["EDGEFAAS_TRITON_8000|RULE_1"]
    }
    assert not (device.records / "k3s.json").exists()
    assert device.run("remove", "--owner", "triton").exit_code == 0
    assert device.everything() == before and device.saved() == saved
    assert json.loads(device.run("remove", "--owner", "triton").stdout)["changed"] == []


def test_shared_fields_are_set_when_absent_and_removed_with_their_owner(device):
    wanted = {"shared": {"DEVICE_METADATA|localhost": {"bgp_asn": 65001}}}
    assert device.apply("sonic", wanted).exit_code == 0
    assert device.db.hget("DEVICE_METADATA|localhost", "bgp_asn") == "65001"
    assert device.saved()["DEVICE_METADATA"]["localhost"] == {
        "hostname": "sonic-1",
        "hwsku": "Force10-S6000",
        "bgp_asn": "65001",
    }
    assert device.run("diff", "--owner", "sonic", "-", wanted=wanted).exit_code == 0
    assert device.run("remove", "--owner", "sonic").exit_code == 0
    assert device.db.hgetall("DEVICE_METADATA|localhost") == {"hostname": "sonic-1", "hwsku": "Force10-S6000"}
    assert "bgp_asn" not in device.saved()["DEVICE_METADATA"]["localhost"]


def test_a_shared_field_someone_else_set_equal_is_not_removed_with_the_owner(device):
    device.db.hset("DEVICE_METADATA|localhost", "bgp_asn", "65001")
    assert (
        device.apply("sonic", {"shared": {"DEVICE_METADATA|localhost": {"bgp_asn": "65001"}}}).exit_code == 0
    )
    assert device.run("remove", "--owner", "sonic").exit_code == 0
    assert device.db.hget("DEVICE_METADATA|localhost", "bgp_asn") == "65001"


def test_a_different_shared_value_is_refused_and_nothing_is_written(device):
    device.db.hset("DEVICE_METADATA|localhost", "bgp_asn", "65100")
    before, saved = device.everything(), device.config_json.read_text()
    wanted = {
        "owned": {"LOOPBACK_INTERFACE|Loopback10": {}},
        "shared": {"DEVICE_METADATA|localhost": {"bgp_asn": "65001"}},
    }
    result = device.apply("sonic", wanted)
    assert result.exit_code == 1
    assert "DEVICE_METADATA|localhost field bgp_asn is '65100', sonic wants '65001'" in result.stderr
    assert device.everything() == before and device.config_json.read_text() == saved
    assert not (device.records / "sonic.json").exists()


def test_an_existing_key_the_owner_did_not_write_is_refused(device):
    result = device.apply("ssh", {"owned": {"ACL_TABLE|SSH_ONLY": {"type": "CTRLPLANE"}}})
    assert result.exit_code == 1
    assert "ACL_TABLE|SSH_ONLY exists and was not written by ssh" in result.stderr
    assert device.db.hgetall("ACL_TABLE|SSH_ONLY")["services@"] == "SSH"


def test_a_rule_of_the_owner_s_table_someone_else_wrote_is_reported_and_left_alone(device):
    stray = {"PRIORITY": "9000", "PACKET_ACTION": "ACCEPT", "L4_DST_PORT": "23"}
    device.db.hset("ACL_RULE|EDGEFAAS_K3S_6443|RULE_9", mapping=stray)
    result = device.apply("k3s", k3s())
    assert result.exit_code == 0, result.output
    left_alone = json.loads(result.stdout)["left_alone"]
    assert any("ACL_RULE|EDGEFAAS_K3S_6443|RULE_9" in line for line in left_alone)
    assert "left alone: ACL_RULE|EDGEFAAS_K3S_6443|RULE_9" in result.stderr
    assert device.run("remove", "--owner", "k3s").exit_code == 0
    assert device.db.hgetall("ACL_RULE|EDGEFAAS_K3S_6443|RULE_9") == stray


def test_a_database_that_does_not_answer_exits_2_naming_the_socket_and_writes_nothing(device, tmp_path):
    dead = tmp_path / "nobody.sock"
    saved = device.config_json.read_text()
    for args in (
        ("apply", "--owner", "k3s", "-"),
        ("diff", "--owner", "k3s", "-"),
        ("remove", "--owner", "k3s"),
    ):
        result = device.run(*args, wanted=k3s() if "-" in args else None, socket=dead)
        assert result.exit_code == 2, result.output
        assert str(dead) in result.stderr and "does not answer" in result.stderr
    assert device.config_json.read_text() == saved
    assert not device.records.exists()


def test_an_invalid_wanted_document_exits_2_before_asking_the_database(device, tmp_path):
    for wanted in (
        {"owned": {"acl_table|x": {}}},
        {"owned": {"ACL_TABLE|X": {"a": {"b": 1}}}},
        {"other": {}},
    ):
        result = device.apply("k3s", wanted)
        assert result.exit_code == 2, (wanted, result.output)
    assert device.apply("K3S!", k3s()).exit_code == 2
    assert device.db.keys("*EDGEFAAS*") == []


def test_an_entry_without_fields_is_null_in_redis_and_empty_in_config_db_json(device):
    wanted = {"owned": {"LOOPBACK_INTERFACE|Loopback10": {}, "LOOPBACK_INTERFACE|Loopback10|10.1.0.1/32": {}}}
    assert device.apply("sonic", wanted).exit_code == 0
    assert device.db.hgetall("LOOPBACK_INTERFACE|Loopback10|10.1.0.1/32") == {"NULL": "NULL"}
    assert device.saved()["LOOPBACK_INTERFACE"] == {"Loopback10": {}, "Loopback10|10.1.0.1/32": {}}
    assert device.run("diff", "--owner", "sonic", "-", wanted=wanted).exit_code == 0


def test_state_db_entries_are_owned_too_and_never_saved_to_config_db_json(device):
    wanted = {"owned": {"STATE_DB:ADVERTISE_NETWORK_TABLE|10.1.0.0/24": {"profile": "EDGEFAAS"}}}
    saved = device.config_json.read_text()
    assert device.apply("sonic", wanted).exit_code == 0
    assert device.state.hgetall("ADVERTISE_NETWORK_TABLE|10.1.0.0/24") == {"profile": "EDGEFAAS"}
    assert device.config_json.read_text() == saved
    got = device.run("get", "--db", "STATE_DB", "ADVERTISE_NETWORK_TABLE|*")
    assert json.loads(got.stdout) == {"ADVERTISE_NETWORK_TABLE|10.1.0.0/24": {"profile": "EDGEFAAS"}}
    assert device.run("remove", "--owner", "sonic").exit_code == 0
    assert not device.state.exists("ADVERTISE_NETWORK_TABLE|10.1.0.0/24")


def test_set_and_del_change_one_entry_in_the_database_only(device):
    saved = device.config_json.read_text()
    assert (
        device.run("set", "--db", "STATE_DB", "ADVERTISE_NETWORK_TABLE|10.9.0.0/24", "profile=X").exit_code
        == 0
    )
    assert device.state.hgetall("ADVERTISE_NETWORK_TABLE|10.9.0.0/24") == {"profile": "X"}
    assert device.run("set", "DEVICE_METADATA|localhost", "type=LeafRouter").exit_code == 0
    assert device.db.hget("DEVICE_METADATA|localhost", "type") == "LeafRouter"
    assert device.run("del", "DEVICE_METADATA|localhost", "type").exit_code == 0
    assert device.db.hgetall("DEVICE_METADATA|localhost") == {"hostname": "sonic-1", "hwsku": "Force10-S6000"}
    assert device.run("del", "--db", "STATE_DB", "ADVERTISE_NETWORK_TABLE|10.9.0.0/24").exit_code == 0
    assert not device.state.exists("ADVERTISE_NETWORK_TABLE|10.9.0.0/24")
    assert device.run("set", "X|y", "novalue").exit_code == 2
    assert device.config_json.read_text() == saved


def test_the_layout_file_gives_the_database_numbers(device):
    device.layout.write_text(
        json.dumps({"DATABASES": {"CONFIG_DB": {"id": 9, "separator": "|", "instance": "redis"}}})
    )
    assert device.apply("k3s", k3s()).exit_code == 0
    moved = redis.Redis(unix_socket_path=str(device.socket), db=9, decode_responses=True)
    assert moved.exists("ACL_TABLE|EDGEFAAS_K3S_6443")
    assert not device.db.exists("ACL_TABLE|EDGEFAAS_K3S_6443")


def test_a_shared_field_no_longer_wanted_is_removed_if_still_the_owner_s_value(device):
    wanted = {"shared": {"DEVICE_METADATA|localhost": {"bgp_asn": "65001", "type": "LeafRouter"}}}
    assert device.apply("sonic", wanted).exit_code == 0
    assert (
        device.apply("sonic", {"shared": {"DEVICE_METADATA|localhost": {"bgp_asn": "65001"}}}).exit_code == 0
    )
    assert "type" not in device.db.hgetall("DEVICE_METADATA|localhost")
    assert "type" not in device.saved()["DEVICE_METADATA"]["localhost"]
    assert device.db.hget("DEVICE_METADATA|localhost", "bgp_asn") == "65001"


def test_config_db_json_out_of_step_is_repaired_without_writing_redis(device):
    assert device.apply("k3s", k3s()).exit_code == 0
    saved = device.saved()
    del saved["ACL_RULE"]["EDGEFAAS_K3S_10250|RULE_2"]
    device.config_json.write_text(json.dumps(saved))
    diff = device.run("diff", "--owner", "k3s", "-", wanted=k3s())
    assert diff.exit_code == 1
    assert json.loads(diff.stdout)["differs"] == [
        {"key": "ACL_RULE|EDGEFAAS_K3S_10250|RULE_2", "action": "persist"}
    ]
    assert device.apply("k3s", k3s()).exit_code == 0
    assert "EDGEFAAS_K3S_10250|RULE_2" in device.saved()["ACL_RULE"]
    assert device.run("diff", "--owner", "k3s", "-", wanted=k3s()).exit_code == 0
