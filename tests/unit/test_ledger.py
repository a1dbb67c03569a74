"""The billing ledger: exactly once under concurrency, durable before the answer, exact sums."""

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from edgefaas.gateway.ledger import LedgerEntry, SqliteLedger

from .test_gateway_fakes import ADMIN, Harness, harness_fixture  # noqa: F401 - the harness fixture

pytestmark = pytest.mark.unit


def _entry(call_id, license_id="lic_a", function="FuncA", amount=7, duration=1000, started=1000.0):
    return LedgerEntry(call_id, license_id, function, started, duration, 200, amount)


@pytest.fixture
def ledger(tmp_path):
    opened = SqliteLedger(tmp_path / "ledger.db")
    yield opened
    opened.close()


def test_each_call_id_is_billed_exactly_once_under_concurrency(ledger):
    # 16 threads, 4000 writes, every call id written by two different threads.
    def writer(thread):
        results = []
        for i in range(250):
            call = (thread * 250 + i) % 2000
            results.append((call, ledger.record(_entry(f"call-{call}", function=f"f{call % 3}")).result(10)))
        return results

    with ThreadPoolExecutor(16) as pool:
        outcomes = [r for rs in pool.map(writer, range(16)) for r in rs]
    fresh = {}
    for call, is_new in outcomes:
        fresh[call] = fresh.get(call, 0) + is_new
    assert len(fresh) == 2000
    assert set(fresh.values()) == {1}  # exactly one writer of each id saw it as new
    usage = ledger.usage("lic_a")
    assert sum(u.invocations for u in usage) == 2000
    assert sum(u.amount_micros for u in usage) == 2000 * 7
    assert [u.function for u in usage] == ["f0", "f1", "f2"]
    assert [u.invocations for u in usage] == [667, 667, 666]


def test_usage_and_entries_are_per_license_and_exact(ledger):
    for i, (license_id, duration, amount) in enumerate(
        [("lic_a", 1500, 3), ("lic_a", 2500, 4), ("lic_b", 1, 1)]
    ):
        ledger.record_now(_entry(f"c{i}", license_id, duration=duration, amount=amount, started=100.0 + i))
    (usage,) = ledger.usage("lic_a")
    assert (usage.invocations, usage.duration_us, usage.amount_micros) == (2, 4000, 7)
    assert [e.call_id for e in ledger.entries("lic_a")] == ["c0", "c1"]
    assert ledger.count_since("lic_a", 101.0) == 1
    assert ledger.usage("lic_nobody") == []


def test_close_commits_what_was_queued(tmp_path):
    first = SqliteLedger(tmp_path / "l.db")
    futures = [first.record(_entry(f"c{i}")) for i in range(500)]
    first.close()
    assert all(f.result(5) for f in futures)
    assert first.record(_entry("late")).exception(5) is not None
    again = SqliteLedger(tmp_path / "l.db")
    assert again.usage("lic_a")[0].invocations == 500
    again.close()


_KILLED_WRITER = textwrap.dedent(
    """
    import sys
    from edgefaas.gateway.ledger import LedgerEntry, SqliteLedger
    ledger = SqliteLedger(sys.argv[1])
    i = 0
    while True:
        batch = [ledger.record(LedgerEntry(f"c{i + k}", "lic_a", "f", 0.0, 1, 200, 1)) for k in range(8)]
        for k, future in enumerate(batch):
            future.result()
            print(f"c{i + k}", flush=True)  # acknowledged: from here on the caller may be answered
        i += 8
    """
)


def test_acknowledged_entries_survive_sigkill(tmp_path):
    path = tmp_path / "killed.db"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    writer = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(path)], stdout=subprocess.PIPE, env=env
    )
    acknowledged = []
    deadline = time.monotonic() + 10
    while len(acknowledged) < 400 and time.monotonic() < deadline:
        acknowledged.append(writer.stdout.readline().decode().strip())
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    acknowledged += [line.decode().strip() for line in writer.stdout.read().splitlines()]
    assert len(acknowledged) >= 400
    writer.stdout.close()
    reopened = SqliteLedger(path)
    try:
        stored = {e.call_id for e in reopened.entries("lic_a")}
    finally:
        reopened.close()
    assert set(acknowledged) <= stored


def test_every_answered_call_is_in_the_ledger_once(harness):
    harness.deploy("Echo")
    harness.deploy("Slow")
    tokens = [harness.license(name=f"tenant{i}") for i in range(3)]

    async def traffic():
        calls = []
        for i in range(240):
            _, token = tokens[i % 3]
            url = "/function/Slow?s=0.001" if i % 2 else "/function/Echo"
            calls.append(harness.client.post(url, headers={"Authorization": f"Bearer {token}"}))
        return await asyncio.gather(*calls)

    answers = harness.run(traffic())
    assert {a.status_code for a in answers} == {200}
    answered = [a.headers["x-call-id"] for a in answers]
    assert len(set(answered)) == 240
    billed = []
    for license_id, _ in tokens:
        bill = harness.bill(license_id).json()
        assert sum(f["invocations"] for f in bill["functions"]) == 80
        assert bill["total"] == pytest.approx(sum(f["amount"] for f in bill["functions"]))
        billed += [e.call_id for e in harness.gateway.ledger.entries(license_id)]
    assert sorted(billed) == sorted(answered)


def test_a_call_that_cannot_be_billed_is_not_answered(harness):
    harness.deploy("Echo", public=True)
    harness.gateway.ledger.close()  # every record() now fails
    answer = harness.call("Echo")
    assert answer.status_code == 503 and "could not be billed" in answer.json()["error"]
    assert "function" not in answer.json()


def test_admin_answers_never_block_on_the_writer(harness):
    # Sanity: billing reads while the writer is busy still answer (separate reader connection).
    harness.deploy("Echo", public=True)
    stop = threading.Event()

    def hammer():
        while not stop.is_set():
            harness.gateway.ledger.record(_entry(f"x{time.monotonic_ns()}", "public")).result(5)

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        for _ in range(20):
            assert harness.get("/system/billing", params={"license": "public"}, auth=ADMIN).status_code == 200
    finally:
        stop.set()
        thread.join(5)
