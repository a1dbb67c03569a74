"""Site secrets the operator's machine keeps (edgefaas.deploy.secrets)."""

from __future__ import annotations

import logging
import stat
import subprocess
import sys

import pyinfra
import pytest
from pyinfra.api.exceptions import DeployError

from edgefaas.deploy.dry_run import is_dry_run
from edgefaas.deploy.secrets import DRY_RUN_PLACEHOLDER, cluster_token, enrollment_key, site_secret

from .deploy_fakes import FakeHost

pytestmark = pytest.mark.unit


def test_a_secret_is_made_once_private_and_reused(tmp_path):
    path = tmp_path / "conf" / "token"
    first = site_secret(None, str(path), "K3S token", "sonic-1")
    assert len(first) == 64 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert site_secret(None, str(path), "K3S token", "sonic-2") == first


def test_host_data_wins_and_writes_nothing(tmp_path):
    path = tmp_path / "token"
    assert site_secret("from-data", str(path), "K3S token", "sonic-1") == "from-data"
    assert not path.exists()


def test_an_empty_or_short_file_fails_naming_the_device_and_the_file(tmp_path):
    path = tmp_path / "key"
    path.write_text("\n")
    with pytest.raises(DeployError, match=rf"^jetson-1: the enrollment key in {path} is empty"):
        site_secret(None, str(path), "enrollment key", "jetson-1", min_length=32)
    path.write_text("short\n")
    with pytest.raises(DeployError, match="is too short"):
        site_secret(None, str(path), "enrollment key", "jetson-1", min_length=32)


def _dry(monkeypatch):
    monkeypatch.setattr(pyinfra, "is_cli", True)
    monkeypatch.setattr(sys, "argv", ["pyinfra", "--dry", "inventories/lab.py", "deploys/k3s.py"])


def test_a_dry_run_makes_no_secret_and_plans_with_a_placeholder(tmp_path, monkeypatch, caplog):
    _dry(monkeypatch)
    path = tmp_path / "conf" / "token"
    with caplog.at_level(logging.WARNING, logger="pyinfra"):
        value = site_secret(None, str(path), "enrollment key", "jetson-1", min_length=32)
    assert value == DRY_RUN_PLACEHOLDER and len(value) >= 32
    assert "NOT-A-SECRET" in value and not set(value) <= set("0123456789abcdef")
    assert not path.exists() and not path.parent.exists()
    assert "placeholder, not a secret" in caplog.text and str(path) in caplog.text


def test_a_dry_run_reads_a_secret_that_exists(tmp_path, monkeypatch):
    path = tmp_path / "token"
    made = site_secret(None, str(path), "K3S token", "sonic-1")
    _dry(monkeypatch)
    assert site_secret(None, str(path), "K3S token", "sonic-1") == made


def test_only_pyinfra_s_dry_flag_makes_a_dry_run(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["pyinfra", "--dry", "inventory.py", "deploy.py"])
    monkeypatch.setattr(pyinfra, "is_cli", False)
    assert not is_dry_run(), "not pyinfra's command line"
    monkeypatch.setattr(pyinfra, "is_cli", True)
    assert is_dry_run()
    monkeypatch.setattr(sys, "argv", ["pyinfra", "-y", "inventory.py", "deploy.py"])
    assert not is_dry_run()


DEPLOY = """\
from pyinfra import host
from edgefaas.deploy.secrets import cluster_token, enrollment_key

host.data.k3s_token_file = "{path}/k3s-token"
host.data.nodeauth_enrollment_key_file = "{path}/keys/enrollment-key"
cluster_token(host)
enrollment_key(host)
"""


def _pyinfra(tmp_path, *args: str) -> str:
    (tmp_path / "deploy.py").write_text(DEPLOY.format(path=tmp_path / "secrets"))
    done = subprocess.run(
        [sys.executable, "-m", "pyinfra", *args, "@local", str(tmp_path / "deploy.py")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout + done.stderr


def test_pyinfra_dry_writes_no_secret_file_and_a_real_run_does(tmp_path):
    assert "placeholder, not a secret" in _pyinfra(tmp_path, "--dry")
    assert not (tmp_path / "secrets").exists()
    assert "placeholder" not in _pyinfra(tmp_path, "-y")
    assert len((tmp_path / "secrets" / "k3s-token").read_text().strip()) == 64
    assert (tmp_path / "secrets" / "keys" / "enrollment-key").is_file()


def test_the_k3s_token_and_the_enrollment_key_come_from_host_data_else_their_files(tmp_path):
    host = FakeHost("sonic-1", k3s_token="given-token", k3s_token_file=str(tmp_path / "token"))
    assert cluster_token(host) == "given-token" and not (tmp_path / "token").exists()
    host = FakeHost("sonic-1", k3s_token=None, k3s_token_file=str(tmp_path / "token"))
    assert cluster_token(host) == (tmp_path / "token").read_text().strip()

    keyed = FakeHost("sonic-1", nodeauth_enrollment_key="k" * 32)
    assert enrollment_key(keyed) == b"k" * 32
    filed = FakeHost("sonic-1", nodeauth_enrollment_key_file=str(tmp_path / "key"))
    assert enrollment_key(filed) == (tmp_path / "key").read_text().strip().encode()
    (tmp_path / "short").write_text("short\n")
    with pytest.raises(DeployError, match=r"sonic-1: the enrollment key .* is too short"):
        enrollment_key(FakeHost("sonic-1", nodeauth_enrollment_key_file=str(tmp_path / "short")))
