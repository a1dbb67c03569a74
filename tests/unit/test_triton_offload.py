"""Choosing which Triton server runs a request: measured latency, load, the local preference."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgefaas.triton.client import Face, InferenceError, faces_from_outputs
from edgefaas.triton.offload import Offloader

pytestmark = pytest.mark.unit
IMAGE = np.zeros((8, 8, 3), np.uint8)


class FakeClient:
    """A server whose latency (or failure) the test sets."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.latency_ms = 10.0
        self.fails = False
        self.calls = 0

    def recognize(self, image):
        self.calls += 1
        if self.fails:
            raise InferenceError(f"{self.url}: connection refused")
        return [Face((1, 2, 3, 4), "neutral", 0.5)], self.latency_ms


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def offloader(urls, local=None, **kw) -> tuple[Offloader, dict[str, FakeClient], Clock]:
    clients: dict[str, FakeClient] = {}

    def factory(url: str) -> FakeClient:
        clients[url] = FakeClient(url)
        return clients[url]

    clock = Clock()
    return Offloader(urls, local_url=local, client_factory=factory, clock=clock, **kw), clients, clock


def served(off: Offloader, n: int) -> list[str]:
    return [off.recognize(IMAGE)[1]["served_by"] for _ in range(n)]


def test_the_local_server_is_used_first_and_kept_while_it_is_as_fast():
    off, clients, _ = offloader(["http://a:8000", "http://b:8000"], local="http://a:8000", explore_every=1000)
    clients["http://b:8000"].latency_ms = 9.5  # within the 10 % margin: staying local wins
    answers = served(off, 10)
    assert answers[0] == "http://a:8000"
    assert answers.count("http://a:8000") == 9  # b is measured once, then never chosen


def test_a_faster_remote_server_takes_the_work():
    off, clients, _ = offloader(["http://a:8000", "http://b:8000"], local="http://a:8000", explore_every=1000)
    clients["http://a:8000"].latency_ms = 150.0  # a busy switch
    clients["http://b:8000"].latency_ms = 40.0  # an idle Jetson
    answers = served(off, 20)
    assert answers[-10:] == ["http://b:8000"] * 10
    _, info = off.recognize(IMAGE)
    assert info["served_by"] == "http://b:8000" and "fastest" in info["reason"]


def test_stale_servers_are_re_measured_so_a_recovered_one_wins_again():
    off, clients, _ = offloader(["http://a:8000", "http://b:8000"], local="http://a:8000", explore_every=5)
    clients["http://a:8000"].latency_ms = 150.0
    clients["http://b:8000"].latency_ms = 40.0
    served(off, 10)
    clients["http://a:8000"].latency_ms = 5.0  # the local load went away
    assert served(off, 40)[-5:].count("http://a:8000") >= 4


def test_in_flight_requests_count_as_load():
    off, _, _ = offloader(["http://a:8000", "http://b:8000"], explore_every=1000)
    served(off, 4)  # both measured at 10 ms
    first = off.choose()
    second = off.choose()  # the first is still in flight: the other server is expected sooner
    assert first.url != second.url


def test_a_failing_server_is_skipped_and_the_request_retried_elsewhere():
    off, clients, clock = offloader(["http://a:8000", "http://b:8000"], local="http://a:8000", down_for=30)
    clients["http://a:8000"].fails = True
    faces, info = off.recognize(IMAGE)
    assert info["served_by"] == "http://b:8000" and len(faces) == 1
    assert served(off, 5) == ["http://b:8000"] * 5
    assert clients["http://a:8000"].calls == 1  # not retried while marked down
    clients["http://a:8000"].fails = False
    clock.now += 31
    assert "http://a:8000" in served(off, 25)
    assert next(s for s in off.snapshot() if s["url"] == "http://a:8000")["failures"] == 1


def test_every_server_failing_raises_with_each_reason():
    off, clients, _ = offloader(["http://a:8000", "http://b:8000"])
    for client in clients.values():
        client.fails = True
    with pytest.raises(InferenceError, match=r"a:8000.*b:8000|b:8000.*a:8000"):
        off.recognize(IMAGE)


def test_no_server_at_all_is_a_configuration_error():
    with pytest.raises(ValueError, match="TRITON_URLS"):
        Offloader([])


def test_model_outputs_become_faces_and_mismatched_outputs_are_refused():
    faces = faces_from_outputs(
        np.array([[10, 20, 30, 40]], np.int32), np.array([b"happy"], object), np.array([0.9], np.float32)
    )
    assert faces == [Face((10, 20, 30, 40), "happy", pytest.approx(0.9))]
    assert faces[0].as_dict() == {"box": [10, 20, 30, 40], "expression": "happy", "score": 0.9}
    with pytest.raises(InferenceError, match="disagree"):
        faces_from_outputs(np.zeros((2, 4), np.int32), np.array([b"x"], object), np.array([0.1], np.float32))


def test_a_test_case_against_no_server_fails_and_writes_its_verdict(tmp_path):
    from edgefaas.triton import testcases

    report = tmp_path / "termination-log"
    # The argument order the Jobs of deploys/triton.py use: options after the case name.
    code = testcases.main(["grpc-numeric", "--url", "127.0.0.1:9", "--wait", "0", "--report", str(report)])
    verdict = json.loads(report.read_text())
    assert code == 1 and verdict["passed"] is False and verdict["case"] == "grpc-numeric"
    assert "127.0.0.1:9" in verdict["server"] and verdict["error"]


class _DroppedConnection:
    """tritonclient's HTTP client on a pooled connection whose server has gone away."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def infer(self, *args, **kwargs):
        raise self.error


def _closed_connection_errors() -> list[Exception]:
    import http.client

    errors: list[Exception] = [http.client.IncompleteRead(b""), ConnectionResetError(104, "reset")]
    try:
        from geventhttpclient.response import HTTPConnectionClosed
    except ImportError:
        return errors
    return [HTTPConnectionClosed("connection closed."), *errors]


@pytest.mark.parametrize("error", _closed_connection_errors(), ids=lambda e: type(e).__name__)
def test_a_connection_the_server_closed_is_an_inference_error_and_is_dropped(error):
    pytest.importorskip("tritonclient.http")
    from edgefaas.triton.client import FaceExpressionClient

    client = FaceExpressionClient("http://192.0.2.1:8000")
    client._local.client = _DroppedConnection(error)
    # An InferenceError, so the offloader tries another server and the function answers 503.
    with pytest.raises(InferenceError, match=r"192\.0\.2\.1:8000"):
        client.recognize(IMAGE)
    assert client._local.client is None  # the next call opens a fresh connection
