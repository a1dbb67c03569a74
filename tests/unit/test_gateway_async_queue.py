"""Async calls on a real NATS JetStream: queued calls survive gateways, callbacks are retried,
the caller's X-Call-Id is kept end to end, bad input queues nothing, depth is a metric.

One nats-server (Debian's, JetStream on) serves the whole session; each test has a stream
of its own, so tests cannot see one another's calls. Gateways are the real app with the
fake functions (tests/unit/test_gateway_fakes.py).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time

import pytest

from edgefaas.gateway.async_queue import AsyncCall, parse_servers
from edgefaas.gateway.callbacks import check_callback_url

from .nats_server import NatsServer, cluster
from .test_gateway_fakes import ADMIN, Harness

pytestmark = pytest.mark.unit

_streams = itertools.count()
# Short enough that a test sees a dead gateway's calls redelivered and callbacks retried quickly.
FAST = {
    "async_ack_wait": 1.0,
    "callback_backoff": 0.05,
    "callback_backoff_max": 0.2,
    "callback_timeout": 2.0,
}


@pytest.fixture(scope="session")
def nats(tmp_path_factory):
    server = NatsServer(tmp_path_factory.mktemp("nats"))
    server.start()
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["memory", "nats"])
def queue(request):
    """The NATS URL a gateway queues in, or None: in memory. Single-gateway behaviour is the same."""
    return request.getfixturevalue("nats").url if request.param == "nats" else None


@pytest.fixture
def stream():
    return f"T{next(_streams)}_{int(time.time() * 1000) % 100000}"


def gateway(data_dir, nats_url: str | None, stream: str, **settings) -> Harness:
    return Harness(data_dir, nats_url=nats_url, nats_stream=stream, **{**FAST, **settings})


def wait_for(predicate, timeout: float = 20, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"{what} did not happen within {timeout}s")


def queued_async(harness: Harness, name: str, path: str = "", **kwargs):
    answer = harness.post(f"/async-function/{name}{path}", **kwargs)
    assert answer.status_code == 202, answer.text
    return answer.headers["x-call-id"]


def metric(harness: Harness, line: str) -> float | None:
    text = harness.get("/metrics").text
    found = re.search(rf"^{re.escape(line)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else None


def completed_ids(*harnesses: Harness, path: str = "/done") -> list[str]:
    """Call ids whose callback to ``path`` was taken (answered 200), on all gateways."""
    return [
        c["headers"]["x-call-id"]
        for h in harnesses
        for c in h.callbacks
        if c["path"] == path and c["answered"] == 200
    ]


def billed(harness: Harness) -> list[str]:
    answer = harness.get("/system/billing", params={"license": "public", "detail": "calls"}, auth=ADMIN)
    return [call["call_id"] for call in answer.json()["calls"]]


# -- on one gateway ---------------------------------------------------------------------------------


def test_a_queued_call_runs_and_calls_back_with_the_callers_call_id(queue, stream, tmp_path):
    harness = gateway(tmp_path, queue, stream)
    try:
        harness.deploy("Echo", public=True)
        call_id = queued_async(
            harness,
            "Echo",
            "/sub?x=1",
            content=b'{"a": 1}',
            headers={
                "X-Callback-Url": "http://callback.fn/done",
                "X-Call-Id": "order-42",
                "Content-Type": "application/json",
            },
        )
        assert call_id == "order-42"
        wait_for(lambda: completed_ids(harness), what="the callback")
        (callback,) = harness.callbacks
        assert callback["headers"]["x-call-id"] == "order-42"
        assert callback["headers"]["x-function-name"] == "Echo"
        seen = json.loads(callback["body"])
        # The function saw the caller's id too, and the call as it was sent.
        assert seen["headers"]["x-call-id"] == "order-42"
        assert seen["body"] == '{"a": 1}' and seen["path"] == "/sub" and seen["query"] == "x=1"
        assert len(billed(harness)) == 1  # under an id of the gateway's making
        assert metric(harness, 'edgefaas_async_calls_total{event="queued"}') == 1
        assert metric(harness, 'edgefaas_async_calls_total{event="completed"}') == 1
        assert metric(harness, 'edgefaas_async_callbacks_total{outcome="delivered"}') == 1
    finally:
        harness.close()


def test_without_a_call_id_the_gateway_makes_one(queue, stream, tmp_path):
    harness = gateway(tmp_path, queue, stream)
    try:
        harness.deploy("Echo", public=True)
        first = queued_async(harness, "Echo", headers={"X-Callback-Url": "http://callback.fn/done"})
        second = queued_async(harness, "Echo", headers={"X-Callback-Url": "http://callback.fn/done"})
        assert first != second and re.fullmatch(r"[0-9a-f]{32}", first)
        assert sorted(
            wait_for(lambda: len(completed_ids(harness)) == 2 and completed_ids(harness))
        ) == sorted([first, second])
    finally:
        harness.close()


def test_an_enqueue_retried_with_the_same_call_id_runs_once(queue, stream, tmp_path):
    harness = gateway(tmp_path, queue, stream)
    try:
        harness.deploy("Echo", public=True)
        headers = {"X-Callback-Url": "http://callback.fn/done", "X-Call-Id": "retry-me"}
        assert queued_async(harness, "Echo", headers=headers) == "retry-me"
        assert queued_async(harness, "Echo", headers=headers) == "retry-me"
        wait_for(lambda: completed_ids(harness), what="the callback")
        time.sleep(0.3)  # a second run, had there been one, would have called back by now
        assert completed_ids(harness) == ["retry-me"]
        assert len(billed(harness)) == 1
        assert metric(harness, 'edgefaas_async_calls_total{event="duplicate"}') == 1
    finally:
        harness.close()


def test_a_call_id_reused_after_the_dedup_window_is_a_new_call_and_is_paid_for(queue, stream, tmp_path):
    """The caller's id is not the ledger's key: reusing it later must not buy a free call."""
    harness = gateway(tmp_path, queue, stream, async_dedup_window=0.2)
    try:
        harness.deploy("Echo", public=True)
        headers = {"X-Callback-Url": "http://callback.fn/done", "X-Call-Id": "reused"}
        queued_async(harness, "Echo", headers=headers)
        wait_for(lambda: len(completed_ids(harness)) == 1, what="the first callback")
        time.sleep(0.5)
        queued_async(harness, "Echo", headers=headers)
        wait_for(lambda: len(completed_ids(harness)) == 2, what="the second callback")
        assert completed_ids(harness) == ["reused", "reused"]
        billed_ids = billed(harness)
        assert len(billed_ids) == 2 and len(set(billed_ids)) == 2, billed_ids
    finally:
        harness.close()


def test_a_failing_callback_is_retried_until_it_is_taken(queue, stream, tmp_path):
    harness = gateway(tmp_path, queue, stream)
    try:
        harness.deploy("Echo", public=True)
        harness.transport.refuse["callback.fn"] = 1  # a connection refused first
        call_id = queued_async(harness, "Echo", headers={"X-Callback-Url": "http://callback.fn/flaky?fail=2"})
        wait_for(lambda: completed_ids(harness, path="/flaky"), what="the callback")
        tries = [c for c in harness.callbacks if c["path"] == "/flaky"]
        # Refused once, then 503, 503, then taken: every try carried the call id.
        assert len(tries) == 3 and {c["headers"]["x-call-id"] for c in tries} == {call_id}
        assert metric(harness, 'edgefaas_async_callbacks_total{outcome="delivered"}') == 1
        assert len(billed(harness)) == 1  # one call, however many callback tries
    finally:
        harness.close()


def test_a_callback_refused_with_4xx_is_not_retried_and_one_failing_gives_up(queue, stream, tmp_path):
    harness = gateway(tmp_path, queue, stream, callback_attempts=3)
    try:
        harness.deploy("Echo", public=True)
        queued_async(harness, "Echo", headers={"X-Callback-Url": "http://callback.fn/gone?fail=9&status=404"})
        queued_async(harness, "Echo", headers={"X-Callback-Url": "http://callback.fn/down?fail=9&status=500"})
        queued_async(harness, "Echo", headers={"X-Callback-Url": "http://callback.fn/busy?fail=1&status=429"})
        wait_for(lambda: metric(harness, 'edgefaas_async_callbacks_total{outcome="gave_up"}') == 1)
        wait_for(lambda: completed_ids(harness, path="/busy"), what="the 429 callback retried")
        assert len([c for c in harness.callbacks if c["path"] == "/gone"]) == 1
        assert len([c for c in harness.callbacks if c["path"] == "/down"]) == 3
        assert metric(harness, 'edgefaas_async_callbacks_total{outcome="refused"}') == 1
    finally:
        harness.close()


BAD_CALLBACKS = {
    "ftp://nowhere/x": "http",
    "/relative/path": "http",
    "http:///no-host": "host",
    "http://user:secret@callback.fn/x": "credentials",
    "http://callback.fn/" + "x" * 2100: "2048",
    "http://callback.fn/a b": "spaces",
    "http://callback.fn:99999/": "parse",
}


def test_bad_input_is_4xx_naming_the_problem_and_queues_nothing(queue, stream, tmp_path):
    harness = gateway(tmp_path, queue, stream)
    try:
        harness.deploy("Echo", public=True)
        for url, named in BAD_CALLBACKS.items():
            answer = harness.post("/async-function/Echo", headers={"X-Callback-Url": url})
            assert answer.status_code == 400, url
            assert "X-Callback-Url" in answer.json()["error"] and named in answer.json()["error"], answer.text
        bad_bodies = [
            ({"Content-Type": "application/json"}, b'{"a": '),
            ({"Content-Type": "application/cloudevents+json"}, b"not json"),
            ({"X-Call-Id": "two words"}, b"{}"),
            ({"X-Call-Id": "../../etc"}, b"{}"),
        ]
        for headers, body in bad_bodies:
            answer = harness.post("/async-function/Echo", headers=headers, content=body)
            assert answer.status_code == 400, (headers, answer.text)
        if queue:  # over the NATS server's max_payload (1 MiB by default): 413 naming it
            big = harness.post("/async-function/Echo", content=b"x" * (1 << 20))
            assert big.status_code == 413 and "max_payload" in big.json()["error"]
        assert harness.post("/async-function/Nope").status_code == 404
        time.sleep(0.2)
        assert metric(harness, 'edgefaas_async_calls_total{event="queued"}') == 0
        kind = "nats" if queue else "memory"
        assert harness.get("/system/info", auth=ADMIN).json()["async_queue"] == {
            "kind": kind,
            "waiting": 0,
            "running": 0,
        }
        assert billed(harness) == [] and harness.callbacks == []
    finally:
        harness.close()


def test_depth_is_a_metric_and_in_system_info(queue, stream, tmp_path):
    harness = gateway(tmp_path, queue, stream, async_workers=1)
    try:
        harness.deploy("Slow", public=True)
        for _ in range(4):
            queued_async(harness, "Slow", "?s=0.4", headers={"X-Callback-Url": "http://callback.fn/done"})
        wait_for(lambda: metric(harness, "edgefaas_async_running") == 1, what="one call running")
        assert metric(harness, "edgefaas_async_queue_depth") == 3
        info = harness.get("/system/info", auth=ADMIN).json()["async_queue"]
        assert info == {"kind": "nats" if queue else "memory", "waiting": 3, "running": 1}
        wait_for(lambda: len(completed_ids(harness)) == 4, what="all four calls")
        wait_for(lambda: metric(harness, "edgefaas_async_running") == 0, what="the last ack")
        assert metric(harness, "edgefaas_async_queue_depth") == 0
    finally:
        harness.close()


def test_a_full_queue_is_429(queue, stream, tmp_path):
    harness = gateway(tmp_path / "a", queue, stream, async_workers=1, async_queue_size=2)
    try:
        harness.deploy("Slow", public=True)
        queued_async(harness, "Slow", "?s=1")
        queued_async(harness, "Slow", "?s=1")
        full = harness.post("/async-function/Slow?s=1", headers={"X-Call-Id": "third"})
        assert full.status_code == 429 and "full" in full.json()["error"]
        assert full.headers["retry-after"] and full.headers["x-call-id"] == "third"
    finally:
        harness.close()


def test_nats_unreachable_is_503_and_synchronous_calls_go_on(stream, tmp_path):
    nowhere = gateway(tmp_path / "b", "nats://127.0.0.1:1", stream)
    try:
        nowhere.deploy("Echo", public=True)
        answer = nowhere.post("/async-function/Echo", headers={"X-Call-Id": "later-1"})
        assert answer.status_code == 503 and "unreachable" in answer.json()["error"]
        assert answer.headers["retry-after"] and answer.headers["x-call-id"] == "later-1"
        assert nowhere.call("Echo").status_code == 200  # synchronous calls go on without NATS
        assert nowhere.get("/system/info", auth=ADMIN).json()["async_queue"]["waiting"] is None
    finally:
        nowhere.close()


def test_calls_queued_before_nats_restarts_still_run_and_an_outage_is_503(stream, tmp_path):
    server = NatsServer(tmp_path / "nats")
    server.start()
    server.wait_ready()
    harness = gateway(tmp_path / "gw", server.url, stream, async_workers=1)
    try:
        harness.deploy("Slow", public=True)
        ids = [
            queued_async(harness, "Slow", "?s=0.5", headers={"X-Callback-Url": "http://callback.fn/done"})
            for _ in range(3)
        ]
        server.stop()
        down = harness.post("/async-function/Slow", headers={"X-Call-Id": "during-outage"})
        assert down.status_code == 503 and "unreachable" in down.json()["error"], down.text
        server.start()  # the same port and store: the stream comes back from disk
        server.wait_ready()
        after = {"X-Call-Id": "after", "X-Callback-Url": "http://callback.fn/done"}
        again = wait_for(
            lambda: (
                (r := harness.post("/async-function/Slow?s=0.01", headers=after)).status_code == 202 and r
            ),
            what="an enqueue accepted after NATS came back",
        )
        assert again.headers["x-call-id"] == "after"
        wait_for(lambda: {*ids, "after"} <= set(completed_ids(harness)), timeout=30, what="every call")
    finally:
        harness.close()
        server.stop()


# -- across gateways --------------------------------------------------------------------------------


def test_queued_calls_survive_a_gateway_restart(nats, stream, tmp_path):
    """Stop the gateway with calls queued and running; another on the same NATS finishes them all."""
    total = 12
    first = gateway(tmp_path, nats.url, stream, async_workers=2)
    first.deploy("Slow", public=True)
    ids = [
        queued_async(first, "Slow", "?s=0.3", headers={"X-Callback-Url": "http://callback.fn/done"})
        for _ in range(total)
    ]
    wait_for(lambda: len(completed_ids(first)) >= 2, what="two calls done on the first gateway")
    first.close()
    done_before = set(completed_ids(first))
    assert len(done_before) < total, "the first gateway finished everything before it was stopped"

    # The same data dir (the same ledger) and functions: the gateway restarted.
    second = gateway(tmp_path, nats.url, stream, backend=first.backend, async_workers=4)
    try:
        wait_for(lambda: done_before | set(completed_ids(second)) == set(ids), what="every call done")
        print(
            f"\nasync across a restart: queued {total}, completed {len(done_before)} before and "
            f"{len(set(completed_ids(second)) - done_before)} after, lost 0"
        )
        billed_ids = billed(second)  # each billed once, whichever gateway ran it
        assert len(billed_ids) == len(set(billed_ids)) == len(ids), billed_ids
    finally:
        second.close()


def test_a_call_taken_by_a_gateway_that_died_is_run_by_another(nats, stream, tmp_path):
    """A gateway that took a call and died (no ack, no nak): after ack_wait another gateway runs it."""
    harness = gateway(tmp_path, nats.url, stream, async_workers=1)
    try:
        harness.deploy("Echo", public=True)
        harness.run(_take_and_die(nats.url, stream, harness, "orphan-1"))
        wait_for(lambda: completed_ids(harness), what="the orphaned call")
        assert completed_ids(harness) == ["orphan-1"] and len(billed(harness)) == 1
        # (Not asserted: edgefaas_async_calls_total{event="redelivered"}. The server counts a
        # delivery to a client that vanished at once as never made, so this may be delivery 1.)
    finally:
        harness.close()


async def _take_and_die(url: str, stream: str, harness: Harness, call_id: str) -> None:
    """Queue a call and pull it as a gateway would, then vanish without acknowledging it."""
    import nats as nats_client

    from edgefaas.gateway.async_queue import CONSUMER

    call = AsyncCall(
        call_id=call_id,
        payer="public",
        license_id=None,
        function="Echo",
        method="POST",
        target="/",
        headers=[],
        body=b"{}",
        parent_call_id="",
        callback_url="http://callback.fn/done",
    )
    # The harness's own workers would take it first: they stop pulling while the dead one takes it.
    invoker = harness.gateway.invoker
    invoker._queue.stop_taking()
    await asyncio.gather(*invoker._workers)
    conn = await nats_client.connect(url)
    js = conn.jetstream()
    await js.publish(f"edgefaas.async.{stream.lower()}", call.encode())
    sub = await js.pull_subscribe_bind(CONSUMER, stream)
    (msg,) = await sub.fetch(1, timeout=5)
    assert AsyncCall.decode(msg.data).call_id == call_id
    await conn.close()  # died: neither ack nor nak
    invoker._queue._stopping = False
    invoker._workers = [asyncio.create_task(invoker._work())]


def test_two_gateways_share_the_queued_calls(nats, stream, tmp_path):
    first = gateway(tmp_path / "a", nats.url, stream, async_workers=2)
    second = None
    first.deploy("Slow", public=True)
    second = gateway(tmp_path / "b", nats.url, stream, backend=first.backend, async_workers=2)
    try:
        ids = [
            queued_async(first, "Slow", "?s=0.2", headers={"X-Callback-Url": "http://callback.fn/done"})
            for _ in range(10)
        ]
        wait_for(lambda: len(completed_ids(first, second)) == 10, what="all calls")
        assert sorted(completed_ids(first, second)) == sorted(ids)
        # Queued on the first only, yet both ran some.
        assert completed_ids(first) and completed_ids(second)
    finally:
        first.close()
        if second is not None:
            second.close()


def test_a_three_server_cluster_keeps_the_queue_when_a_server_dies(stream, tmp_path):
    servers = cluster(tmp_path / "nats")
    for server in servers:
        server.start()
    try:
        for server in servers:
            server.wait_ready()
        first = gateway(tmp_path / "a", servers[0].url, stream, nats_replicas=3, async_workers=1)
        first.deploy("Slow", public=True)
        ids = [
            queued_async(first, "Slow", "?s=0.2", headers={"X-Callback-Url": "http://callback.fn/done"})
            for _ in range(6)
        ]
        first.close()
        servers[0].stop(kill=True)  # the server the calls were queued on
        done_before = set(completed_ids(first))
        others = ",".join(server.url for server in servers[1:])
        second = gateway(
            tmp_path / "b", others, stream, backend=first.backend, nats_replicas=3, async_workers=3
        )
        try:
            # Generous: a call handed back just before its server was killed waits out ack_wait.
            every = set(ids)
            wait_for(lambda: done_before | set(completed_ids(second)) == every, timeout=60, what="every call")
            assert set(completed_ids(second)) - done_before, "nothing was left queued for the second gateway"
        finally:
            second.close()
    finally:
        for server in servers:
            server.stop()


# -- pieces ---------------------------------------------------------------------------------------


def test_a_queued_call_encodes_and_decodes_whole():
    call = AsyncCall(
        call_id="c1",
        payer="lic_1",
        license_id="lic_1",
        function="Echo",
        method="PUT",
        target="/a%20b?x=1",
        headers=[(b"x-raw", b"\xff\x00ok")],
        body=bytes(range(256)),
        parent_call_id="p",
        callback_url=None,
        caller_key=True,
    )
    assert AsyncCall.decode(call.encode()) == call
    for broken in (b"", b"[]", b'{"v": 2}', b'{"v": 1}'):
        with pytest.raises(ValueError):
            AsyncCall.decode(broken)


def test_nats_urls_and_callback_urls_are_checked():
    assert parse_servers("nats://a:4222, b:4222,") == ["nats://a:4222", "nats://b:4222"]
    for bad in ("", " , ", "http://a:4222", "nats://"):
        with pytest.raises(ValueError):
            parse_servers(bad)
    assert check_callback_url("https://example.test:8443/cb?x=1") == "https://example.test:8443/cb?x=1"
    for url in BAD_CALLBACKS:
        with pytest.raises(ValueError):
            check_callback_url(url)
