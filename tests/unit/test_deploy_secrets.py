"""Site secrets the operator's machine keeps (edgefaas.deploy.secrets)."""

from __future__ import annotations

import stat

import pytest
from pyinfra.api.exceptions import DeployError

from edgefaas.deploy.secrets import site_secret

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
