"""Settings the deploys read from host data, with their defaults (edgefaas.deploy.settings)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyinfra.api.exceptions import DeployError

from edgefaas.deploy.settings import DEFAULTS, setting

from .deploy_fakes import FakeHost

pytestmark = pytest.mark.unit


def test_host_data_wins_over_the_default():
    assert setting(FakeHost("sonic-1", edgefaas_gateway_port=9090), "edgefaas_gateway_port") == 9090
    assert setting(FakeHost("sonic-1", nodeauth_grace=5.0), "nodeauth_grace") == 5.0


def test_a_setting_left_out_or_none_takes_its_default():
    assert setting(FakeHost("sonic-1"), "edgefaas_namespace") == "edgefaas-fn"
    assert setting(FakeHost("sonic-1", edgefaas_license_signer=None), "edgefaas_license_signer") == "hmac"
    assert setting(FakeHost("sonic-1"), "nodeauth_recheck") == 30.0
    assert setting(FakeHost("sonic-1"), "edgefaas_admin_password") is None


def test_a_setting_with_no_default_must_be_in_the_inventory():
    with pytest.raises(DeployError, match=r"^sonic-1: set edgefaas_functions in the inventory's group_data"):
        setting(FakeHost("sonic-1"), "edgefaas_functions")
    assert setting(FakeHost("sonic-1", edgefaas_functions={"f": {}}), "edgefaas_functions") == {"f": {}}


def test_the_functions_default_to_the_repository_s_own():
    assert (Path(DEFAULTS["edgefaas_functions_dir"]) / "FuncA.py").is_file()
