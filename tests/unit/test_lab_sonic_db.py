"""SONiC's database on the lab's switches: the Redis configuration, the layout, the boot-time
CONFIG_DB load, the keyspace watch the stand-ins rebuild on, and the SONiC profile's files."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
import redis

from edgefaas.lab import profiles
from edgefaas.lab.sonic import caclmgrd, sonic_db
from edgefaas.lab.spec import load_spec


@pytest.fixture
def socket(tmp_path):
    """redis-server started with the lab switches' own configuration, moved under tmp_path."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server is missing: apt-get install redis-server (scripts/setup installs it)"
    path = tmp_path / "redis.sock"
    conf = (
        profiles.SONIC_REDIS_CONF.replace("/var/run/redis/redis.sock", str(path))
        .replace("/run/redis/redis-server.pid", str(tmp_path / "redis.pid"))
        .replace("dir /var/lib/redis", f"dir {tmp_path}")
        .replace("port 6379", "port 0")
    )
    (tmp_path / "sonic.conf").write_text(conf)
    proc = subprocess.Popen(
        [binary, str(tmp_path / "sonic.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 10
        while not path.exists():
            assert proc.poll() is None, "redis-server exited at start: the lab's sonic.conf is not valid"
            assert time.monotonic() < deadline, "redis-server did not open its socket within 10 s"
            time.sleep(0.02)
        yield str(path)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _profile_config() -> dict:
    lab = load_spec(devices=3)
    return profiles.sonic_config_db(lab, lab.device("sonic-1"))


def test_the_layout_is_sonics():
    layout = sonic_db.layout()
    dbs = {name: (db["id"], db["separator"]) for name, db in layout["DATABASES"].items()}
    assert dbs["APPL_DB"] == (0, ":") and dbs["ASIC_DB"] == (1, ":") and dbs["COUNTERS_DB"] == (2, ":")
    assert (
        dbs["LOGLEVEL_DB"] == (3, ":") and dbs["CONFIG_DB"] == (4, "|") and dbs["FLEX_COUNTER_DB"] == (5, ":")
    )
    assert dbs["STATE_DB"] == (6, "|")
    assert layout["INSTANCES"]["redis"]["unix_socket_path"] == "/var/run/redis/redis.sock"
    assert layout["INSTANCES"]["redis"]["port"] == 6379


def test_lists_are_stored_as_at_fields_and_read_back():
    keys = sonic_db.flatten({"ACL_TABLE": {"SSH_ONLY": {"services": ["SSH", "SNMP"], "type": "CTRLPLANE"}}})
    assert keys == {"ACL_TABLE|SSH_ONLY": {"services@": "SSH,SNMP", "type": "CTRLPLANE"}}
    assert sonic_db.from_hash(keys["ACL_TABLE|SSH_ONLY"]) == {
        "services": ["SSH", "SNMP"],
        "type": "CTRLPLANE",
    }
    assert sonic_db.flatten({"MGMT_PORT": {"eth0": {}}}) == {"MGMT_PORT|eth0": {"NULL": "NULL"}}


def test_boot_writes_the_layout_and_loads_config_db(socket, tmp_path):
    config_path = tmp_path / "config_db.json"
    config_path.write_text(json.dumps(_profile_config()))
    layout_path = tmp_path / "sonic-db" / "database_config.json"
    sonic_db.boot(socket, str(layout_path), str(config_path))
    assert json.loads(layout_path.read_text())["DATABASES"]["CONFIG_DB"]["id"] == 4
    db = redis.Redis(unix_socket_path=socket, db=4, decode_responses=True)
    assert db.hgetall("ACL_TABLE|SSH_ONLY")["services@"] == "SSH"
    assert db.hget("DEVICE_METADATA|localhost", "hostname") == "sonic-1"
    assert db.get(sonic_db.INITIALIZED_KEY) == "1"
    assert sonic_db.read_table(db, "ACL_TABLE")["SSH_ONLY"]["services"] == ["SSH"]
    # What the lab's caclmgrd makes of the profile as loaded: SSH open, the rest dropped.
    tables = sonic_db.read_tables(db, ("ACL_TABLE", "ACL_RULE"))
    ruleset = caclmgrd.translate(tables["ACL_TABLE"], tables["ACL_RULE"])
    assert "-A INPUT -p tcp -s 0.0.0.0/0 --dport 22 -j ACCEPT" in ruleset.v4
    assert ruleset.v4[-1] == "-A INPUT -j DROP" and ruleset.problems == []
    # A second run (the unit restarted, the database not) keeps what changed since.
    db.hset("ACL_TABLE|EDGEFAAS_K3S", mapping={"type": "CTRLPLANE"})
    assert "not reloaded" in sonic_db.boot(socket, str(layout_path), str(config_path))
    assert db.exists("ACL_TABLE|EDGEFAAS_K3S")


def test_a_change_to_a_watched_table_is_notified_and_a_burst_is_one_rebuild(socket):
    db = redis.Redis(unix_socket_path=socket, db=4, decode_responses=True)
    pubsub = db.pubsub()
    pubsub.psubscribe(
        *sonic_db.keyspace_patterns({"CONFIG_DB": ("ACL_RULE",), "STATE_DB": ("ADVERTISE_NETWORK_TABLE",)})
    )
    while pubsub.get_message(timeout=0.2):  # the subscribe confirmations
        pass
    db.hset("DEVICE_METADATA|localhost", "hostname", "x")  # not watched
    assert pubsub.get_message(ignore_subscribe_messages=True, timeout=0.3) is None

    def burst() -> None:
        for n in range(5):
            db.hset(f"ACL_RULE|EDGEFAAS_K3S|RULE_{n}", "PRIORITY", str(9999 - n))

    started = time.monotonic()
    threading.Thread(target=burst).start()
    first = pubsub.get_message(ignore_subscribe_messages=True, timeout=2)
    assert first and first["channel"].startswith("__keyspace@4__:ACL_RULE|EDGEFAAS_K3S|RULE_")
    assert sonic_db.drain(pubsub) == 5
    assert time.monotonic() - started < 1.0
    state = redis.Redis(unix_socket_path=socket, db=6, decode_responses=True)
    state.delete("ADVERTISE_NETWORK_TABLE|192.0.2.0/24")
    state.hset("ADVERTISE_NETWORK_TABLE|192.0.2.0/24", "", "")
    state.delete("ADVERTISE_NETWORK_TABLE|192.0.2.0/24")
    events = [pubsub.get_message(ignore_subscribe_messages=True, timeout=1) for _ in range(2)]
    assert [e["data"] for e in events] == ["hset", "del"]


def test_the_sonic_profile_lays_the_database_frr_and_the_stand_ins(tmp_path):
    lab = load_spec(devices=3)
    root = tmp_path / "sonic-1"
    (root / "etc/systemd/system").mkdir(parents=True)
    profiles.apply(root, lab, lab.device("sonic-1"))
    lib = root / profiles.SONIC_LIB.lstrip("/")
    for name in profiles.SONIC_MODULES:
        assert (lib / name).read_text() == (profiles.SONIC_SOURCES / name).read_text()
    for name in ("caclmgrd.py", "bgpcfgd.py"):
        assert f"Lab stand-in for SONiC's {name[:-3]}" in (lib / name).read_text()
    wants = root / "etc/systemd/system/multi-user.target.wants"
    for unit in (*profiles.SONIC_DEBIAN_UNITS, *profiles.SONIC_LAB_UNITS):
        assert (wants / unit).is_symlink(), unit
    daemons = (root / "etc/frr/daemons").read_text().splitlines()
    assert "bgpd=yes" in daemons and "bfdd=yes" in daemons
    assert "ExecStart=" in (root / "etc/systemd/system/redis-server.service.d/sonic.conf").read_text()
    config = json.loads((root / "etc/sonic/config_db.json").read_text())
    assert config["ACL_TABLE"]["SSH_ONLY"]["services"] == ["SSH"]
    assert {"DEVICE_METADATA", "MGMT_INTERFACE", "MGMT_PORT", "MGMT_VRF_CONFIG"} <= set(config)
    # The device's own python3 runs the copies: they import nothing of edgefaas.
    for name in profiles.SONIC_MODULES:
        text = (lib / name).read_text()
        assert "import edgefaas" not in text and "from edgefaas" not in text


def test_jetsons_run_neither_redis_nor_frr(tmp_path):
    lab = load_spec(devices=3)
    root = tmp_path / "jetson-1"
    (root / "etc/systemd/system").mkdir(parents=True)
    profiles.apply(root, lab, lab.device("jetson-1"))
    wants = root / "etc/systemd/system/multi-user.target.wants"
    assert not wants.exists() or not list(wants.glob("*"))
    assert not (root / "etc/frr/daemons").exists()
    assert not (root / profiles.SONIC_LIB.lstrip("/")).exists()


def test_the_device_copies_run_under_plain_python(tmp_path):
    # As on the device: the three files alone in a directory, run by a bare interpreter.
    for name in profiles.SONIC_MODULES:
        shutil.copy(profiles.SONIC_SOURCES / name, tmp_path / name)
    proc = subprocess.run(
        ["python3", "-s", "-c", "import sonic_db, caclmgrd, bgpcfgd; print(len(sonic_db.DATABASES))"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "9", proc.stderr
    assert Path(tmp_path / "caclmgrd.py").read_text().startswith('"""Lab stand-in for SONiC\'s caclmgrd')


def test_each_lab_switch_boots_with_the_as_number_the_routing_deploy_plans_for_it():
    from edgefaas.deploy.sonic import plan_routing

    lab = load_spec(None, None)
    switches = [d for d in lab.devices if d.profile == "sonic"]
    booted = {
        d.name: profiles.sonic_config_db(lab, d)["DEVICE_METADATA"]["localhost"]["bgp_asn"] for d in switches
    }
    data = {"bgp_asn_base": profiles.LAB_ASN_BASE, "loopback_pool": "10.1.0.0/24"}
    planned = plan_routing([(d.name, {**data, "ssh_hostname": str(d.address)}) for d in switches])
    # The deploy never overwrites a switch's AS number: the lab must boot with the planned one.
    assert booted == {name: str(plan.asn) for name, plan in planned.items()}
    assert len(set(booted.values())) == len(switches), f"switches share an AS number: {booted}"
