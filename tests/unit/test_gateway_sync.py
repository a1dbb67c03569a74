"""`edgefaas sync-functions` against the real gateway: local backend, uvicorn on a loopback port.

The client and the OutOfDateFunctions fact (its command run by sh, as pyinfra runs it) each
talk to the live gateway over HTTP, as on a device.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgefaas.deploy.facts import OutOfDateFunctions
from edgefaas.gateway.sync import (
    COMPARED,
    Gateway,
    apply_manifest,
    code_sha256,
    differences,
    sync_functions,
    wanted_state,
)
from tests.unit.live_gateway import LiveGateway, free_port

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = ROOT / "functions"
PASSWORD = "sync-test-password"
EDGEFAAS = Path(sys.executable).parent / "edgefaas"


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    gateway = LiveGateway(tmp_path_factory.mktemp("gateway"), PASSWORD)
    # root-only, as the deploy leaves the admin password on a device
    gateway.password_file = tmp_path_factory.mktemp("secret") / "admin-password"
    gateway.password_file.write_text(PASSWORD + "\n")
    gateway.password_file.chmod(0o600)
    yield gateway
    gateway.stop()


def _manifest(directory: Path, *entries: dict) -> Path:
    """A manifest as the deploy writes it, each entry's file copied beside it."""
    directory.mkdir(parents=True, exist_ok=True)
    for entry in entries:
        shutil.copy(FUNCTIONS / entry["file"], directory / entry["file"])
    path = directory / "functions.json"
    path.write_text(json.dumps(list(entries), indent=2) + "\n")
    return path


def _entry(service: str, file: str = "FuncC.py", **fields) -> dict:
    return {
        "service": service,
        "file": file,
        "constraints": [],
        "limits": {"memory": "128Mi"},
        "public": False,
        "envVars": {},
        **fields,
    }


def _run(*args: str, stdin: str | None = None):
    return CliRunner().invoke(sync_functions, list(args), input=stdin)


def _args(live: LiveGateway, manifest: Path | str, *more: str) -> list[str]:
    return ["--url", live.url, "--password-file", str(live.password_file), "--manifest", str(manifest), *more]


def test_a_function_is_compared_on_code_placement_limits_environment_and_public_flag():
    assert list(COMPARED) == ["codeSha256", "constraints", "limits", "public", "envVars"]
    wanted = wanted_state(_entry("f", limits={}), "abc")
    # A gateway leaves out, or sets to null, what a function does not have: that is no difference.
    assert differences(wanted, {"codeSha256": "abc", "constraints": None, "public": False}) == []
    assert differences(wanted, {"codeSha256": "abc", "limits": {"memory": "1Gi"}}) == ["limits"]
    assert differences(wanted, {"codeSha256": "new", "public": True}) == ["codeSha256", "public"]
    assert differences(wanted, None) == list(COMPARED)


def test_missing_functions_are_deployed_then_left_alone(live, tmp_path):
    manifest = _manifest(tmp_path / "fn", _entry("sync-one"), _entry("sync-two", "FuncB.py"))

    checked = _run(*_args(live, manifest, "--check"))
    assert checked.exit_code == 1
    assert checked.stdout.splitlines() == ["sync-one: missing", "sync-two: missing"]
    assert "sync-one" not in live.functions(), "--check changed the gateway"

    first = _run(*_args(live, manifest))
    assert first.exit_code == 0, first.output
    lines = first.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["sync-one", "sync-two"]
    assert all(": deployed to version 1 on " in line for line in lines), lines
    deployed = live.functions()
    assert deployed["sync-one"]["codeSha256"] == code_sha256((FUNCTIONS / "FuncC.py").read_text())
    assert deployed["sync-one"]["limits"] == {"memory": "128Mi"}

    again = _run(*_args(live, manifest))
    assert again.exit_code == 0
    assert again.stdout.splitlines() == [
        "sync-one: up to date (version 1)",
        "sync-two: up to date (version 1)",
    ]
    assert _run(*_args(live, manifest, "--check")).exit_code == 0
    assert _run(*_args(live, manifest, "--check")).stdout == ""


def test_a_changed_field_updates_only_that_function_and_others_are_never_touched(live, tmp_path):
    live.admin.post(
        "/system/functions", json={"service": "not-listed", "code": (FUNCTIONS / "FuncC.py").read_text()}
    )
    manifest = _manifest(tmp_path / "fn", _entry("sync-keep"), _entry("sync-change"))
    assert _run(*_args(live, manifest)).exit_code == 0
    before = live.functions()

    manifest = _manifest(
        tmp_path / "fn",
        _entry("sync-keep"),
        _entry("sync-change", envVars={"GREETING": "hello"}, public=True),
    )
    checked = _run(*_args(live, manifest, "--check"))
    assert checked.exit_code == 1
    assert checked.stdout.splitlines() == ["sync-change: differs in public, envVars"]

    updated = _run(*_args(live, manifest))
    assert updated.exit_code == 0, updated.output
    assert updated.stdout.splitlines()[0] == "sync-keep: up to date (version 1)"
    assert updated.stdout.splitlines()[1].startswith("sync-change: updated to version 2 on ")
    after = live.functions()
    assert after["sync-change"]["envVars"] == {"GREETING": "hello"} and after["sync-change"]["public"] is True
    assert after["sync-keep"]["version"] == before["sync-keep"]["version"]
    assert after["not-listed"] == before["not-listed"]


def test_a_refused_function_is_reported_and_fails_the_run_but_not_the_others(live, tmp_path):
    manifest = _manifest(tmp_path / "fn", _entry("sync-bad", limits={"memory": "lots"}), _entry("sync-good"))
    result = _run(*_args(live, manifest))
    assert result.exit_code == 1
    assert result.stdout.splitlines()[0].startswith("sync-good: deployed to version 1")
    assert result.stderr.startswith("sync-bad: POST answered 400: ")
    assert "sync-bad" not in live.functions() and "sync-good" in live.functions()


def test_check_takes_the_code_digest_from_stdin_before_any_file_is_on_the_device(live, tmp_path):
    manifest = _manifest(tmp_path / "fn", _entry("sync-digest"))
    assert _run(*_args(live, manifest)).exit_code == 0
    code = (FUNCTIONS / "FuncC.py").read_text()
    wanted = [{"service": "sync-digest", **wanted_state(_entry("sync-digest"), code_sha256(code))}]
    same = _run(*_args(live, "-", "--check"), stdin=json.dumps(wanted))
    assert same.exit_code == 0 and same.stdout == ""
    wanted[0]["codeSha256"] = code_sha256(code + "# a new version\n")
    newer = _run(*_args(live, "-", "--check"), stdin=json.dumps(wanted))
    assert newer.exit_code == 1 and newer.stdout == "sync-digest: differs in codeSha256\n"
    assert _run(*_args(live, "-"), stdin=json.dumps(wanted)).exit_code == 1, "a sync needs the files"


def test_a_check_that_cannot_tell_says_so_with_exit_2(live, tmp_path):
    manifest = _manifest(tmp_path / "fn", _entry("sync-never"))
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not-the-password\n")
    refused = _run("--url", live.url, "--password-file", str(wrong), "--manifest", str(manifest), "--check")
    assert refused.exit_code == 2 and "listing functions: 401" in refused.stderr
    missing = _run(
        "--url", live.url, "--password-file", str(tmp_path / "none"), "--manifest", str(manifest), "--check"
    )
    assert missing.exit_code == 2 and "cannot read the admin password" in missing.stderr
    down = f"http://127.0.0.1:{free_port()}"
    gone = _run(
        "--url", down, "--password-file", str(live.password_file), "--manifest", str(manifest), "--check"
    )
    assert gone.exit_code == 2 and "does not answer" in gone.stderr


def test_a_sync_waits_for_the_gateway_then_gives_up(tmp_path, capsys):
    manifest = _manifest(tmp_path / "fn", _entry("sync-never"))
    (tmp_path / "password").write_text(PASSWORD)
    gateway = Gateway(f"http://127.0.0.1:{free_port()}", tmp_path / "password")
    started = time.monotonic()
    assert apply_manifest(gateway, str(manifest), wait=1.0) == 1
    assert 1.0 <= time.monotonic() - started < 10
    assert "did not answer /healthz within 1 s" in capsys.readouterr().err


def test_the_password_is_never_an_option():
    result = CliRunner().invoke(sync_functions, ["--help"])
    assert "--password-file" in result.output
    assert "--password " not in result.output and "--password=" not in result.output


def _fact(live: LiveGateway, wanted: list[dict], edgefaas: Path = EDGEFAAS):
    fact = OutOfDateFunctions()
    command = fact.command(
        edgefaas=str(edgefaas), url=live.url, password_file=str(live.password_file), wanted=json.dumps(wanted)
    )
    done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, "a fact's command must not fail the host"
    return fact.process(done.stdout.splitlines())


def test_the_fact_asks_the_installed_edgefaas_what_is_out_of_date(live, tmp_path):
    assert EDGEFAAS.exists(), "the venv's edgefaas entry point"
    assert _run(*_args(live, _manifest(tmp_path / "fn", _entry("sync-fact")))).exit_code == 0
    digest = code_sha256((FUNCTIONS / "FuncC.py").read_text())
    wanted = [
        {"service": "sync-fact", **wanted_state(_entry("sync-fact"), digest)},
        {"service": "sync-fact-new", **wanted_state(_entry("sync-fact-new"), digest)},
    ]
    assert _fact(live, wanted) == ["sync-fact-new"]
    assert _fact(live, wanted[:1]) == []
    assert _fact(live, wanted, edgefaas=tmp_path / "no-edgefaas-yet") is None
