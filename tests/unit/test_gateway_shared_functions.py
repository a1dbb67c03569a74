"""Gateways sharing one cluster: what one deploys, changes or removes, every other one serves as such."""

from __future__ import annotations

import time

import pytest

from .test_gateway_fakes import ADMIN, CODE, Harness

pytestmark = pytest.mark.unit


@pytest.fixture
def pair(tmp_path):
    first = Harness(tmp_path / "a", registry_refresh=0.1)
    second = Harness(tmp_path / "b", backend=first.backend, registry_refresh=0.1)
    yield first, second
    second.close()
    first.close()


def _eventually(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_a_function_deployed_through_one_gateway_is_called_at_once_through_the_other(pair):
    first, second = pair
    first.deploy("Echo", public=True)
    # No wait for a refresh: a name the second does not know yet is asked of the backend.
    answer = second.call("Echo", json={"hello": 1})
    assert answer.status_code == 200, answer.text


def test_a_function_made_private_through_one_gateway_needs_a_license_on_the_other(pair):
    first, second = pair
    first.deploy("Echo", public=True)
    assert second.call("Echo").status_code == 200
    updated = first.put(
        "/system/functions", json={"service": "Echo", "code": CODE, "public": False}, auth=ADMIN
    )
    assert updated.status_code in (200, 202), updated.text
    assert _eventually(lambda: second.call("Echo").status_code == 401), (
        "the other gateway still serves it publicly"
    )


def test_a_name_no_gateway_has_is_404_and_is_not_asked_of_the_backend_on_every_call(pair):
    _, second = pair
    asked = []
    original = second.backend.get

    def counting(name: str):
        asked.append(name)
        return original(name)

    second.backend.get = counting  # type: ignore[method-assign]
    for _ in range(5):
        assert second.call("Nowhere").status_code == 404
    assert asked == ["Nowhere"]
