"""Unit tests are hermetic: the lab a developer or CI job has selected must not leak in."""

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items):
    # Everything here is a unit test, marked or not: `pytest -m unit` (CI) must run them all.
    for item in items:
        if Path(item.fspath).is_relative_to(HERE):
            item.add_marker(pytest.mark.unit)


@pytest.fixture(autouse=True)
def _no_lab_selection(monkeypatch):
    for name in ("EDGEFAAS_LAB", "EDGEFAAS_LAB_SUBNET", "EDGEFAAS_INVENTORY"):
        monkeypatch.delenv(name, raising=False)


from .postgres_server import postgres_server  # noqa: E402, F401 - a session fixture for the storage tests
