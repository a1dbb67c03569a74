"""arm64 artifacts, checked under emulation on the machine that built them.

Every test here is marked `arm64`: `pytest -m arm64 tests/arm64` after
`edgefaas lab build --arch arm64 ...`; CI's `pytest -m unit` leaves them out.
"""

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items):
    for item in items:
        if Path(item.fspath).is_relative_to(HERE):
            item.add_marker(pytest.mark.arm64)
