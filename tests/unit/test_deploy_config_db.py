"""The deploy side of CONFIG_DB: wanted documents checked before any host, and the device commands."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgefaas.deploy import config_db
from edgefaas.deploy.control_plane_acl import acl_entries
from tests.unit.test_sonic_config_db import server  # noqa: F401  (the real redis-server fixture)

pytestmark = pytest.mark.unit


def test_a_wanted_document_is_compact_sorted_json():
    document = config_db.wanted_document({"B|x": {"f": 1}, "A|y": {"l": ["a", "b"]}}, None)
    assert json.loads(document) == {"owned": {"A|y": {"l": ["a", "b"]}, "B|x": {"f": 1}}, "shared": {}}
    assert document == config_db.wanted_document({"A|y": {"l": ["a", "b"]}, "B|x": {"f": 1}}, {})


@pytest.mark.parametrize(
    ("owned", "shared", "message"),
    [
        ({"ACL_TABLE": {}}, {}, "expected TABLE|key"),
        ({"acl_table|x": {}}, {}, "expected TABLE|key"),
        ({"ACL_TABLE|X": {"type": {"nested": 1}}}, {}, "ACL_TABLE|X type"),
        ({"ACL_TABLE|X": {"services": ["a,b"]}}, {}, "without commas"),
        ({"ACL_TABLE|X": {"NULL": "NULL"}}, {}, "not allowed"),
        ({"DEVICE_METADATA|localhost": {}}, {"DEVICE_METADATA|localhost": {"bgp_asn": "1"}}, "both"),
    ],
)
def test_invalid_entries_are_refused_before_any_host_is_touched(owned, shared, message):
    # ensure() raises before it looks at pyinfra's host: no deploy state exists here.
    with pytest.raises(ValueError, match=message):
        config_db.ensure("k3s", owned, shared, "Open nothing")


def test_an_invalid_owner_is_refused_before_any_host_is_touched():
    with pytest.raises(ValueError, match="owner"):
        config_db.ensure("K3S API", {}, {}, "Open nothing")
    with pytest.raises(ValueError, match="owner"):
        config_db.remove("../k3s", "Close nothing")


@pytest.mark.parametrize(
    ("output", "state"),
    [
        (['{"differs": []}', "exit=0"], "same"),
        (['{"differs": [{"key": "ACL_TABLE|EDGEFAAS_K3S_6443"}]}', "exit=1"], "differs"),
        (
            ["error: CONFIG_DB does not answer on /var/run/redis/redis.sock", '{"error": "..."}', "exit=2"],
            "cannot tell (exit 2): error: CONFIG_DB does not answer on /var/run/redis/redis.sock",
        ),
        (["sh: 1: /opt/edgefaas/venv/bin/edgefaas: not found", "exit=127"], "cannot tell (exit 127): sh: 1:"),
        ([], "cannot tell (exit ?): no answer"),
    ],
)
def test_the_diff_fact_reads_the_tool_s_exit_status(output, state):
    assert config_db.diff_state(output).startswith(state)
    assert config_db.ConfigDbDiff().process(output).startswith(state)


@pytest.fixture
def venv(server, tmp_path):  # noqa: F811
    """A device venv whose `edgefaas` is this checkout's, pointed at the test's Redis and files."""
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    tool = bin_dir / "edgefaas"
    real = Path(sys.executable).parent / "edgefaas"
    options = (
        f"--socket={server} --database-config={tmp_path}/layout.json "
        f"--config-db-json={tmp_path}/config_db.json --records={tmp_path}/records"
    )
    tool.write_text(f'#!/bin/sh\nshift\nexec {real} config-db {options} "$@"\n')
    tool.chmod(0o755)
    return str(tmp_path / "venv")


def sh(command: str) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=60)


def fact(owner: str, document: str, venv: str) -> str:
    answer = sh(config_db.diff_command(owner, document, venv))
    assert answer.returncode == 0, "the fact's command must not fail: its status is in its output"
    return config_db.diff_state(answer.stdout.splitlines())


def test_the_commands_converge_against_a_real_database(venv):
    # A policy description with quotes and spaces survives the shell.
    entries = acl_entries("edgefaas", ['8080/tcp EdgeFaaS gateway\'s "API" & console'])
    document = config_db.wanted_document(entries, {})
    assert fact("edgefaas", document, venv) == "differs"
    applied = sh(config_db.apply_command("edgefaas", document, venv))
    assert applied.returncode == 0, applied.stderr
    assert len(json.loads(applied.stdout)["changed"]) == 2
    assert fact("edgefaas", document, venv) == "same"  # a re-run yields no command
    assert fact("edgefaas", config_db.EMPTY, venv) == "differs"
    removed = sh(config_db.remove_command("edgefaas", venv))
    assert removed.returncode == 0, removed.stderr
    assert fact("edgefaas", config_db.EMPTY, venv) == "same"


def test_a_database_that_does_not_answer_is_a_reason_not_a_failure_of_the_fact(venv, server):  # noqa: F811
    server.unlink()
    state = fact("k3s", config_db.EMPTY, venv)
    assert state.startswith("cannot tell (exit 2)") and "does not answer" in state
    assert sh(config_db.apply_command("k3s", config_db.EMPTY, venv)).returncode == 2
