"""Shared state: the same behaviour on SQLite and on a real PostgreSQL (migrations, idempotent
calls billed once, two gateways on one database, the database lost and back, backup and restore)."""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from edgefaas.gateway.backup import BackupError, restore, write_backup
from edgefaas.gateway.database import open_database
from edgefaas.gateway.ledger import LedgerEntry, SqlLedger
from edgefaas.gateway.licensing.plans import Plan
from edgefaas.gateway.migrations import LATEST, SchemaTooNew, migrate, schema_version
from edgefaas.gateway.storage import open_migrated

from .test_gateway_fakes import Harness

pytestmark = pytest.mark.unit

SHARED_KEY = bytes(range(32))

# The schema gateways made before versions were recorded (what an existing gateway.db holds).
_OLD_SCHEMA = """
CREATE TABLE plans (
    name TEXT PRIMARY KEY, description TEXT NOT NULL, price_per_call_micros INTEGER NOT NULL,
    price_per_second_micros INTEGER NOT NULL, quota_calls INTEGER, quota_period_s INTEGER NOT NULL
);
CREATE TABLE licenses (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, plan TEXT NOT NULL REFERENCES plans (name),
    created_at REAL NOT NULL, revoked_at REAL
);
CREATE TABLE ledger (
    call_id TEXT PRIMARY KEY, license_id TEXT NOT NULL, function TEXT NOT NULL, started_at REAL NOT NULL,
    duration_us INTEGER NOT NULL, status INTEGER NOT NULL, amount_micros INTEGER NOT NULL,
    parent_call_id TEXT NOT NULL DEFAULT ''
);
CREATE INDEX ledger_by_license ON ledger (license_id, started_at);
INSERT INTO plans VALUES ('gold', 'old plan', 500, 0, NULL, 86400);
INSERT INTO licenses VALUES ('lic_0123456789abcdef', 'old tenant', 'gold', 1000.5, NULL);
INSERT INTO ledger VALUES ('c_old', 'lic_0123456789abcdef', 'Echo', 1001.25, 1200, 200, 500, '');
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite://{tmp_path / 'gateway.db'}"
    return request.getfixturevalue("postgres_server").fresh_database()


def _harness(tmp_path, url, name="a", **settings):
    return Harness(tmp_path / name, storage_url=url, license_key=SHARED_KEY, **settings)


@pytest.fixture
def gateway(tmp_path, storage_url):
    opened = _harness(tmp_path, storage_url)
    yield opened
    opened.close()


def _billed(harness, license_id):
    return sum(f["invocations"] for f in harness.bill(license_id).json()["functions"])


def _call(harness, token, key, name="Echo", **kwargs):
    headers = {"X-Call-Id": key} if key is not None else {}
    return harness.call(name, token, headers=headers, **kwargs)


# -- idempotent calls ------------------------------------------------------------------------


def test_a_retry_with_the_same_key_replays_the_first_answer_and_is_billed_once(gateway):
    gateway.deploy("Echo")
    license_id, token = gateway.license()
    first = _call(gateway, token, "order-17", json={"n": 1})
    again = _call(gateway, token, "order-17", json={"n": 1})
    assert first.status_code == again.status_code == 200
    assert again.content == first.content
    assert first.headers["x-call-id"] == again.headers["x-call-id"] == "order-17"
    assert "x-idempotent-replay" not in first.headers and again.headers["x-idempotent-replay"] == "true"
    assert _billed(gateway, license_id) == 1
    # The function saw one call id of the gateway's making, not the caller's key.
    (entry,) = gateway.gateway.ledger.entries(license_id)
    assert first.json()["headers"]["x-call-id"] == entry.call_id != "order-17"
    # Another key is another call; no key is today's behaviour: every call runs and is billed.
    assert _call(gateway, token, "order-18").headers.get("x-idempotent-replay") is None
    assert _call(gateway, token, None).status_code == _call(gateway, token, None).status_code == 200
    assert _billed(gateway, license_id) == 4


def test_keys_belong_to_their_payer(gateway):
    gateway.deploy("Echo")
    license_a, token_a = gateway.license(name="a")
    license_b, token_b = gateway.license(name="b")
    assert _call(gateway, token_a, "same").status_code == 200
    answer_b = _call(gateway, token_b, "same")
    assert answer_b.status_code == 200 and "x-idempotent-replay" not in answer_b.headers
    assert (_billed(gateway, license_a), _billed(gateway, license_b)) == (1, 1)


def test_a_bad_key_is_refused(gateway):
    gateway.deploy("Echo", public=True)
    for key in ("x" * 129, "with space"):
        answer = _call(gateway, None, key)
        assert answer.status_code == 400 and "X-Call-Id" in answer.json()["error"]


def test_a_call_never_billed_gives_its_key_back(gateway):
    gateway.deploy("Echo")
    license_id, token = gateway.license()
    gateway.transport.refuse["echo.fn"] = 10_000
    assert _call(gateway, token, "k").status_code == 502
    gateway.transport.refuse["echo.fn"] = 0
    retried = _call(gateway, token, "k")
    assert retried.status_code == 200 and "x-idempotent-replay" not in retried.headers
    assert _billed(gateway, license_id) == 1


def test_a_key_after_its_window_is_a_new_call_paid_again(tmp_path, storage_url):
    harness = _harness(tmp_path, storage_url, idempotency_window=0.5)
    try:
        harness.deploy("Echo")
        license_id, token = harness.license()
        assert _call(harness, token, "k").status_code == 200
        assert _call(harness, token, "k").headers["x-idempotent-replay"] == "true"
        time.sleep(0.6)
        late = _call(harness, token, "k")
        assert late.status_code == 200 and "x-idempotent-replay" not in late.headers
        assert _billed(harness, license_id) == 2
    finally:
        harness.close()


def test_an_answer_too_large_to_keep_is_billed_once_and_its_replay_says_why(tmp_path, storage_url):
    harness = _harness(tmp_path, storage_url, idempotency_max_answer_bytes=16)
    try:
        harness.deploy("Echo")
        license_id, token = harness.license()
        assert _call(harness, token, "big").status_code == 200
        replay = _call(harness, token, "big")
        assert replay.status_code == 409 and "over the 16-byte limit" in replay.json()["error"]
        assert replay.headers["x-call-id"] == "big"
        assert _billed(harness, license_id) == 1
    finally:
        harness.close()


def test_concurrent_calls_with_one_key_run_once(gateway):
    gateway.deploy("Slow")
    license_id, token = gateway.license()

    async def together():
        headers = {"Authorization": f"Bearer {token}", "X-Call-Id": "one"}
        return await asyncio.gather(
            *[gateway.client.post("/function/Slow?s=0.3", headers=headers) for _ in range(4)]
        )

    answers = gateway.run(together())
    assert [a.status_code for a in answers] == [200] * 4
    assert len({a.content for a in answers}) == 1
    assert sum(a.headers.get("x-idempotent-replay") == "true" for a in answers) == 3
    assert _billed(gateway, license_id) == 1


def test_an_abandoned_claim_is_taken_over_under_the_same_call_id(storage_url):
    db = open_migrated(storage_url)
    ledger = SqlLedger(db)
    try:
        first = ledger.claim("lic", "k", lease_s=0.2, window_s=600)
        waiting = ledger.claim("lic", "k", lease_s=0.2, window_s=600)
        assert (first.outcome, waiting.outcome) == ("run", "wait")
        time.sleep(0.3)  # the first holder's lease runs out (its gateway died)
        taken = ledger.claim("lic", "k", lease_s=0.2, window_s=600)
        assert taken.outcome == "run" and taken.call_id == first.call_id
        ledger.release(first.hold)  # the old holder cannot give back what it no longer holds
        assert ledger.claim("lic", "k", lease_s=0.2, window_s=600).outcome == "wait"
        entry = LedgerEntry(first.call_id, "lic", "f", time.time(), 1, 200, 3)
        # Both runs try to bill: the call id bills once.
        assert ledger.record(entry).result(10) is True
        assert ledger.record(entry).result(10) is False
    finally:
        ledger.close()


def test_a_key_given_back_while_a_retry_claims_it_is_run_by_the_retry(storage_url, monkeypatch):
    """The row the retry's insert ran into is deleted (its holder gave the key back) before the
    retry reads it: the retry runs the call, rather than failing on a row that is not there."""
    ledger = SqlLedger(open_migrated(storage_url))
    first = ledger.claim("lic", "k", lease_s=30, window_s=600)
    reads = []
    real = SqlLedger._claim_existing

    def given_back_first(tx, lock, payer, key, *rest):
        if not reads:  # as the first holder's release lands between the insert and the select
            tx.execute("DELETE FROM idempotency WHERE payer = ? AND key = ?", (payer, key))
        reads.append(key)
        return real(tx, lock, payer, key, *rest)

    monkeypatch.setattr(SqlLedger, "_claim_existing", staticmethod(given_back_first))
    try:
        retry = ledger.claim("lic", "k", lease_s=30, window_s=600)
        assert retry.outcome == "run" and retry.call_id != first.call_id
        assert reads == ["k"]
        assert ledger.claim("lic", "k", lease_s=30, window_s=600).outcome == "wait"  # the retry holds it
    finally:
        ledger.close()


def test_a_renewed_claim_is_kept_and_only_its_holder_renews_it(storage_url):
    ledger = SqlLedger(open_migrated(storage_url))
    try:
        first = ledger.claim("lic", "k", lease_s=0.3, window_s=600)
        for _ in range(3):  # 0.6 s in all: past the lease, but renewed as a live gateway does
            time.sleep(0.2)
            assert ledger.renew(first.hold, 0.3)
            assert ledger.claim("lic", "k", lease_s=0.3, window_s=600).outcome == "wait"
        time.sleep(0.4)  # renewals stop: the gateway died
        taken = ledger.claim("lic", "k", lease_s=0.3, window_s=600)
        assert taken.outcome == "run" and taken.call_id == first.call_id
        assert not ledger.renew(first.hold, 0.3), "the old holder renewed a claim it lost"
    finally:
        ledger.close()


def test_a_call_longer_than_the_lease_is_not_run_again_by_a_retry(tmp_path, storage_url):
    """Its gateway renews the claim while it runs, so a retry waits for the first answer."""
    # A lease the renewals keep with room to spare on a loaded machine (one of 0.3 s expired there
    # once, between two renewals); the call lasts three leases, the retry comes after the first.
    gateways = [_harness(tmp_path, storage_url, n, idempotency_lease=1.0) for n in ("a", "b")]
    try:
        for harness in gateways:
            harness.deploy("Slow")
        license_id, token = gateways[0].license()
        headers = {"Authorization": f"Bearer {token}", "X-Call-Id": "long-call"}
        first = asyncio.run_coroutine_threadsafe(
            gateways[0].client.post("/function/Slow?s=3", headers=headers), gateways[0].loop
        )
        time.sleep(1.5)
        retry = gateways[1].call("Slow", token, path="?s=3", headers={"X-Call-Id": "long-call"})
        answer = first.result(30)
        assert answer.status_code == retry.status_code == 200, (answer.text, retry.text)
        assert retry.headers.get("X-Idempotent-Replay") == "true"
        assert _billed(gateways[0], license_id) == 1
    finally:
        for harness in gateways:
            harness.close()


# -- migrations ------------------------------------------------------------------------------


def _old_database(storage_url, tmp_path):
    if storage_url.startswith("sqlite://"):
        with sqlite3.connect(storage_url.removeprefix("sqlite://")) as conn:
            conn.executescript(_OLD_SCHEMA)
        return
    sql = _OLD_SCHEMA.replace(" REAL", " DOUBLE PRECISION")
    with psycopg.connect(storage_url, autocommit=True) as conn:
        for statement in sql.split(";"):
            if statement.strip():
                conn.execute(statement)


def test_a_database_of_the_unversioned_schema_is_migrated_in_place(tmp_path, storage_url):
    _old_database(storage_url, tmp_path)
    harness = _harness(tmp_path, storage_url)
    try:
        assert schema_version(harness.gateway.ledger.db) == LATEST
        (usage,) = harness.bill("lic_0123456789abcdef").json()["functions"]
        assert (usage["function"], usage["invocations"], usage["amount"]) == ("Echo", 1, 0.0005)
        assert [p.name for p in harness.gateway.license_store.plans()] == ["gold"]
        # The new tables work on the old database.
        harness.deploy("Echo", public=True)
        assert _call(harness, None, "k").status_code == 200
        assert _call(harness, None, "k").headers["x-idempotent-replay"] == "true"
    finally:
        harness.close()


def test_a_database_newer_than_the_code_is_refused(storage_url):
    db = open_database(storage_url)
    try:
        migrate(db)
        with db.transaction() as tx:
            tx.execute(
                "INSERT INTO schema_version (version, description, applied_at) VALUES (?, ?, ?)",
                (LATEST + 1, "from the future", 0.0),
            )
        with pytest.raises(SchemaTooNew, match=f"schema version {LATEST + 1}, newer than this gateway's"):
            migrate(db)
    finally:
        db.close()


def test_gateways_starting_together_migrate_once(postgres_server):
    url = postgres_server.fresh_database()

    def start(_):
        db = open_database(url)
        try:
            return migrate(db)
        finally:
            db.close()

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(start, range(8))) == [LATEST] * 8
    with psycopg.connect(url) as conn:
        versions = [row[0] for row in conn.execute("SELECT version FROM schema_version ORDER BY version")]
    assert versions == list(range(1, LATEST + 1))


# -- several gateways on one PostgreSQL ------------------------------------------------------


def test_two_gateways_bill_each_key_once_under_retries(tmp_path, postgres_server):
    url = postgres_server.fresh_database()
    gateways = [_harness(tmp_path, url, "a"), _harness(tmp_path, url, "b")]
    try:
        for harness in gateways:
            harness.deploy("Slow")
        license_id, token = gateways[0].license()
        keys_per_caller = 5

        def caller(number):
            answers = {}
            for i in range(keys_per_caller):
                key = f"caller{number}-{i}"
                # The same call through both gateways at once, then a retry through the other one.
                sent = [
                    asyncio.run_coroutine_threadsafe(
                        g.client.post(
                            "/function/Slow?s=0.02",
                            headers={"Authorization": f"Bearer {token}", "X-Call-Id": key},
                        ),
                        g.loop,
                    )
                    for g in (gateways[i % 2], gateways[(i + 1) % 2], gateways[(i + 1) % 2])
                ]
                answers[key] = [future.result(60) for future in sent]
            return answers

        with ThreadPoolExecutor(16) as pool:
            results = {k: v for answers in pool.map(caller, range(16)) for k, v in answers.items()}
        assert len(results) == 16 * keys_per_caller
        for key, answers in results.items():
            assert {a.status_code for a in answers} == {200}, key
            assert len({a.content for a in answers}) == 1, key
        for harness in gateways:
            assert _billed(harness, license_id) == len(results)
    finally:
        for harness in gateways:
            harness.close()


# -- the database lost and back --------------------------------------------------------------


def test_calls_fail_503_while_the_database_is_away_and_a_retry_bills_once(tmp_path, postgres_server):
    url = postgres_server.fresh_database()
    harness = _harness(tmp_path, url)
    try:
        harness.deploy("Echo")
        license_id, token = harness.license()
        assert _call(harness, token, "before").status_code == 200
        delivered = harness.transport.delivered
        postgres_server.stop()
        try:
            away = _call(harness, token, "during")
            assert away.status_code == 503, away.text
            assert "cannot be billed" in away.json()["error"] and away.headers["retry-after"]
            unkeyed = _call(harness, token, None)
            assert unkeyed.status_code == 503
            assert harness.transport.delivered == delivered  # the function never ran
        finally:
            postgres_server.start()
        deadline = time.monotonic() + 30
        while True:
            retried = _call(harness, token, "during")
            if retried.status_code == 200 or time.monotonic() > deadline:
                break
            assert retried.status_code == 503, retried.text
            time.sleep(0.2)
        assert retried.status_code == 200
        assert _call(harness, token, "during").headers["x-idempotent-replay"] == "true"
        assert _billed(harness, license_id) == 2
    finally:
        harness.close()


# -- backup and restore ----------------------------------------------------------------------


def _populate(harness):
    harness.plan("metered", price_per_call=0.25, price_per_second=1.5)
    harness.deploy("Echo")
    harness.deploy("Slow")
    ids = []
    for n, plan in enumerate(("standard", "metered", "free")):
        license_id, token = harness.license(plan, name=f"tenant{n}")
        ids.append(license_id)
        for i in range(3):
            assert _call(harness, token, f"k{i}", name=("Echo", "Slow")[i % 2]).status_code == 200
    harness.post(
        "/system/licenses", json={"name": "gone", "plan": "standard"}, auth=("admin", "test-password")
    )
    revoked = harness.gateway.license_store.licenses()[-1].id
    assert harness.delete(f"/system/licenses/{revoked}", auth=("admin", "test-password")).status_code in (
        200,
        204,
    )
    return [*ids, revoked, "public"]


SITE_TABLES = {
    "catalogue": "version",
    "site_state": "key",
    "usage_outbox": "seq",
    "site_usage": "site, seq",
}


def _insert(tx, table: str, row: dict) -> None:
    marks = ", ".join("?" * len(row))
    tx.execute(f"INSERT INTO {table} ({', '.join(row)}) VALUES ({marks})", list(row.values()))


def _add_site_rows(db):
    """What a site's gateway keeps beside the ledger (gateway.catalogue, gateway.usage): a signed
    catalogue entry, the outbox's acknowledgement, numbered usage, and usage from an edge."""
    usage = {
        "license_id": "lic_1",
        "function": "Echo",
        "started_at": 1700000000.5,
        "duration_us": 1234,
        "status": 200,
        "amount_micros": 250000,
    }
    with db.transaction() as tx:
        entry = {"function": "Echo", "version": 7, "sites": '["edge-1"]', "ever_sites": '["edge-1","edge-2"]'}
        entry |= {"spec": '{"name":"Echo"}', "payload": "p", "signature": "s", "published_at": 1700000000.25}
        _insert(tx, "catalogue", entry)
        _insert(tx, "site_state", {"key": "usage_acked", "value": "1"})
        for seq in (1, 2):
            _insert(tx, "usage_outbox", {"seq": seq, "call_id": f"call-{seq}", **usage})
        edge = {"site": "edge-1", "seq": 1, "call_id": "edge-call-1", **usage, "received_at": 1700000001.0}
        _insert(tx, "site_usage", edge)


def _site_rows(db):
    with db.transaction(write=False) as tx:
        return {
            table: [tuple(row) for row in tx.execute(f"SELECT * FROM {table} ORDER BY {key}").fetchall()]
            for table, key in SITE_TABLES.items()
        }


def _answers(harness, license_ids):
    return {
        license_id: (harness.bill(license_id).json(), list(harness.gateway.ledger.entries(license_id)))
        for license_id in license_ids
    } | {
        "plans": harness.get("/system/plans").json(),
        "licenses": [lic.__dict__ for lic in harness.gateway.license_store.licenses()],
    }


@pytest.mark.parametrize("direction", ["sqlite->postgresql", "postgresql->sqlite"])
def test_a_backup_restored_into_an_empty_database_gives_the_same_billing_answers(
    tmp_path, postgres_server, direction
):
    urls = {"sqlite": f"sqlite://{tmp_path / 'gateway.db'}", "postgresql": postgres_server.fresh_database()}
    source, target = direction.split("->")
    original = _harness(tmp_path, urls[source], "source")
    try:
        license_ids = _populate(original)
        expected = _answers(original, license_ids)
    finally:
        original.close()
    out = io.StringIO()
    db = open_migrated(urls[source])
    try:
        _add_site_rows(db)
        sites_before = _site_rows(db)
        counts = write_backup(db, out)
    finally:
        db.close()
    assert counts["license"] == 4 and counts["ledger"] == 9
    assert {k: counts[k] for k in SITE_TABLES} == {k: len(v) for k, v in sites_before.items()}
    lines = out.getvalue().splitlines()
    assert json.loads(lines[0])["schema_version"] == LATEST and "end" in json.loads(lines[-1])

    target_db = open_migrated(urls[target])
    try:
        restore(target_db, lines)
        assert _site_rows(target_db) == sites_before
        not_empty = r"not empty \(4 licenses, 9 ledger entries, 2 usage records to send, 1 usage records from"
        with pytest.raises(BackupError, match=not_empty):
            restore(target_db, lines)
    finally:
        target_db.close()
    restored = _harness(tmp_path, urls[target], "target")
    try:
        assert _answers(restored, license_ids) == expected
    finally:
        restored.close()


def test_a_cut_or_foreign_backup_is_refused(tmp_path):
    db = open_migrated(f"sqlite://{tmp_path / 'g.db'}")
    try:
        with pytest.raises(BackupError, match="not an EdgeFaaS gateway backup"):
            restore(db, ['{"something": 1}'])
        out = io.StringIO()
        write_backup(db, out)
        with pytest.raises(BackupError, match="no end line"):
            restore(db, out.getvalue().splitlines()[:-1])
    finally:
        db.close()


def test_a_backup_with_a_different_plan_of_the_same_name_is_refused(tmp_path):
    source = open_migrated(f"sqlite://{tmp_path / 'a.db'}")
    target = open_migrated(f"sqlite://{tmp_path / 'b.db'}")
    try:
        from edgefaas.gateway.licensing.store import SqlLicenseStore

        SqlLicenseStore(source, seed_plans=(Plan("gold", price_per_call_micros=1),), close_db=False)
        SqlLicenseStore(target, seed_plans=(Plan("gold", price_per_call_micros=2),), close_db=False)
        out = io.StringIO()
        write_backup(source, out)
        with pytest.raises(BackupError, match="plan 'gold' that differs"):
            restore(target, out.getvalue().splitlines())
    finally:
        source.close()
        target.close()


def test_backup_and_restore_commands(tmp_path, postgres_server):
    from click.testing import CliRunner

    from edgefaas.gateway.cli import gateway as gateway_command

    original = _harness(tmp_path, f"sqlite://{tmp_path / 'gateway.db'}", "source")
    try:
        license_id, token = original.license()
        original.deploy("Echo")
        assert _call(original, token, None).status_code == 200
    finally:
        original.close()
    runner = CliRunner()
    dumped = runner.invoke(gateway_command, ["backup", "--storage", f"sqlite://{tmp_path / 'gateway.db'}"])
    assert dumped.exit_code == 0, dumped.output
    url = postgres_server.fresh_database()
    backup_file = tmp_path / "backup.jsonl"
    backup_file.write_text(dumped.stdout)
    loaded = runner.invoke(gateway_command, ["restore", "--storage", url, str(backup_file)])
    assert loaded.exit_code == 0, loaded.output
    again = runner.invoke(gateway_command, ["restore", "--storage", url, str(backup_file)])
    assert again.exit_code == 1 and "not empty (1 licenses, 1 ledger entries)" in again.output
    db = open_migrated(url)
    try:
        assert [e.license_id for e in SqlLedger(db, close_db=False).entries(None)] == [license_id]
    finally:
        db.close()


def test_the_pool_serves_many_threads(postgres_server):
    # More threads than pooled connections: each waits for one, none fails.
    db = open_migrated(postgres_server.fresh_database())
    ledger = SqlLedger(db)
    try:
        barrier = threading.Barrier(24)

        def claim(n):
            barrier.wait()
            return ledger.claim("lic", f"k{n}", 10, 600).outcome

        with ThreadPoolExecutor(24) as pool:
            assert list(pool.map(claim, range(24))) == ["run"] * 24
    finally:
        ledger.close()


# -- license tokens across gateways with keys of their own -----------------------------------


def test_each_gateways_parsec_key_verifies_everywhere_by_kid(storage_url):
    from edgefaas.gateway.errors import ApiError
    from edgefaas.gateway.licensing.authority import LicenseAuthority
    from edgefaas.gateway.licensing.store import SqlLicenseStore
    from edgefaas.gateway.licensing.tokens import ParsecSigner, make_token

    from .parsec_fakes import FakeParsec

    db = open_migrated(storage_url)
    try:
        store = SqlLicenseStore(db, close_db=False)
        signer_a, signer_b = ParsecSigner(FakeParsec()), ParsecSigner(FakeParsec())
        assert signer_a.key_id != signer_b.key_id
        gateway_a, gateway_b = LicenseAuthority(store, signer_a), LicenseAuthority(store, signer_b)
        license, token = gateway_a.issue("acme", "standard")
        for authority in (gateway_a, gateway_b):
            assert authority.authorize(f"Bearer {token}", public=False).license.id == license.id
        # A key no gateway published (a third party's) is refused, naming its kid.
        stranger = ParsecSigner(FakeParsec())
        with pytest.raises(ApiError, match=f"signed by key '{stranger.key_id}'"):
            gateway_b.authorize(f"Bearer {make_token(stranger, license.id)}", public=False)
        # A published row whose key does not hash to its kid is not believed.
        store.publish_key("0123456789ab", "ES256", stranger.public_key)
        forged = make_token(stranger, license.id).split(".")
        header = json.loads(_unb64(forged[0]))
        header["kid"] = "0123456789ab"
        forged[0] = _b64(json.dumps(header, separators=(",", ":"), sort_keys=True).encode())
        forged[2] = _b64(stranger.sign(f"{forged[0]}.{forged[1]}".encode()))
        with pytest.raises(ApiError, match="no gateway of this site published"):
            gateway_b.authorize("Bearer " + ".".join(forged), public=False)
    finally:
        db.close()


def _b64(data):
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text):
    import base64

    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_a_call_whose_billing_failed_is_answered_503_and_its_retry_runs_once(tmp_path, postgres_server):
    url = postgres_server.fresh_database()
    harness = _harness(tmp_path, url)
    try:
        harness.deploy("Slow")
        license_id, token = harness.license()
        headers = {"Authorization": f"Bearer {token}", "X-Call-Id": "mid-call"}
        running = asyncio.run_coroutine_threadsafe(
            harness.client.post("/function/Slow?s=1.0", headers=headers), harness.loop
        )
        deadline = time.monotonic() + 10
        while harness.transport.delivered == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        postgres_server.stop()  # the function runs; its billing will find no database
        try:
            unbilled = running.result(60)
        finally:
            postgres_server.start()
        assert unbilled.status_code == 503 and "could not be billed" in unbilled.json()["error"]
        deadline = time.monotonic() + 30
        while True:
            retried = harness.post("/function/Slow?s=0.01", headers=headers)
            if retried.status_code == 200 or time.monotonic() > deadline:
                break
            assert retried.status_code in (503, 409), retried.text
            time.sleep(0.2)
        assert retried.status_code == 200 and "x-idempotent-replay" not in retried.headers
        assert _billed(harness, license_id) == 1
    finally:
        harness.close()


def test_the_gateway_refuses_to_serve_a_database_newer_than_itself(tmp_path):
    from click.testing import CliRunner

    from edgefaas.gateway.cli import gateway as gateway_command

    url = f"sqlite://{tmp_path / 'gateway.db'}"
    db = open_migrated(url)
    try:
        with db.transaction() as tx:
            tx.execute(
                "INSERT INTO schema_version (version, description, applied_at) VALUES (?, ?, ?)",
                (LATEST + 1, "from the future", 0.0),
            )
    finally:
        db.close()
    args = ["--backend", "local", "--data-dir", str(tmp_path), "--storage", url, "--admin-password", "x"]
    result = CliRunner().invoke(gateway_command, args)
    assert result.exit_code == 1
    assert f"schema version {LATEST + 1}, newer than this gateway's {LATEST}" in result.output


def test_a_revocation_through_one_gateway_reaches_the_other(tmp_path, storage_url, monkeypatch):
    from edgefaas.gateway.licensing.authority import LicenseAuthority

    monkeypatch.setattr(LicenseAuthority, "CACHE_SECONDS", 0.2)
    gateways = [_harness(tmp_path, storage_url, "a"), _harness(tmp_path, storage_url, "b")]
    try:
        for harness in gateways:
            harness.deploy("Echo")
        license_id, token = gateways[0].license()
        assert _call(gateways[1], token, None).status_code == 200  # b has it cached now
        assert (
            gateways[0].delete(f"/system/licenses/{license_id}", auth=("admin", "test-password")).is_success
        )
        deadline = time.monotonic() + 10
        while _call(gateways[1], token, None).status_code == 200:
            assert time.monotonic() < deadline, "gateway b still accepts the revoked license"
            time.sleep(0.05)
        assert _call(gateways[1], token, None).status_code == 403
    finally:
        for harness in gateways:
            harness.close()


def test_each_call_id_is_billed_once_by_writers_on_two_ledgers(storage_url):
    # Two gateways' ledgers (two database handles, two writer threads) write every id twice.
    ledgers = [SqlLedger(open_migrated(storage_url)), SqlLedger(open_migrated(storage_url))]
    try:

        def writer(thread):
            ledger = ledgers[thread % 2]
            futures = []
            for i in range(100):
                call = (thread * 100 + i) % 800
                entry = LedgerEntry(f"call-{call}", "lic_a", f"f{call % 3}", 1000.0 + call, 10, 200, 7)
                futures.append(ledger.record(entry))
            return [f.result(30) for f in futures]

        with ThreadPoolExecutor(16) as pool:
            fresh = [is_new for outcome in pool.map(writer, range(16)) for is_new in outcome]
        assert sum(fresh) == 800
        for ledger in ledgers:
            usage = ledger.usage("lic_a")
            assert sum(u.invocations for u in usage) == 800
            assert sum(u.amount_micros for u in usage) == 800 * 7
    finally:
        for ledger in ledgers:
            ledger.close()


def test_an_edge_numbers_its_callers_usage_and_a_cloud_rolls_it_up_on_either_database(storage_url):
    """Found on the lab: on PostgreSQL the site payers' LIKE pattern was read as a placeholder, and
    an edge sharing PostgreSQL numbered no usage at all."""
    from edgefaas.gateway.usage import Outbox, SiteUsage

    db = open_database(storage_url)
    try:
        migrate(db)
        row = {"function": "Echo", "started_at": 1700000000.5, "duration_us": 1234, "status": 200}
        with db.transaction() as tx:
            _insert(tx, "ledger", {"call_id": "mine", "license_id": "lic_1", "amount_micros": 250000, **row})
            _insert(
                tx, "ledger", {"call_id": "theirs", "license_id": "site:edge-1", "amount_micros": 0, **row}
            )
        outbox = Outbox(db)
        assert outbox.fill() == 1 and outbox.fill() == 0
        assert [r.call_id for r in outbox.pending(0)] == ["mine"]
        rollup = SiteUsage(db, "cloud").rollup("lic_1")
        assert rollup["licenses"][0]["sites"] == {
            "cloud": {"calls": 1, "duration_us": 1234, "amount_micros": 250000}
        }
        assert SiteUsage(db, "cloud").rollup("site:edge-1") == {"licenses": []}
    finally:
        db.close()
