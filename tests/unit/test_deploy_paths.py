"""Files the deploy helpers name by path, found from where the modules now live."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import pytest

import edgefaas.deploy

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]


def test_every_path_a_deploy_helper_names_at_import_exists():
    named = {}
    for info in pkgutil.iter_modules(edgefaas.deploy.__path__):
        module = importlib.import_module(f"edgefaas.deploy.{info.name}")
        for attr, value in vars(module).items():
            # Paths in this repository (templates, functions); not paths on the devices.
            if isinstance(value, Path) and value.is_relative_to(REPO):
                named[f"{info.name}.{attr}"] = value
    assert "kube_account.WRITER_TEMPLATE" in named
    missing = {name: str(path) for name, path in named.items() if not path.exists()}
    assert not missing, missing
