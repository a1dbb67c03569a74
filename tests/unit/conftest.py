"""Unit tests are hermetic: the lab a developer or CI job has selected must not leak in."""

import pytest


@pytest.fixture(autouse=True)
def _no_lab_selection(monkeypatch):
    for name in ("EDGEFAAS_LAB", "EDGEFAAS_LAB_SUBNET", "EDGEFAAS_INVENTORY"):
        monkeypatch.delenv(name, raising=False)
