"""The billing ledger: one row per call that reached a function, keyed by the call id.

Exactly once: the gateway makes a fresh call id for every call (a caller's X-Call-Id is
never the ledger's key, or one id reused would buy many calls for the price of one; it is
an idempotency key instead, see ``idempotency``), the id is the primary key, and rows are
written with ``INSERT ... ON CONFLICT (call_id) DO NOTHING``, so writing the same entry
twice, from one gateway or from several sharing a database, changes nothing.

Durable before answered: the gateway awaits ``record`` before it sends the function's
answer, and ``record`` resolves only after the row is committed. A gateway killed at any
moment has therefore billed every call whose answer left it. Writes from concurrent
calls share one transaction (group commit), so durability costs one commit per batch,
not one per call. An idempotent call's answer is stored in that same transaction.

``Ledger`` is the interface; SqlLedger fills it on a ``database.Database`` (SQLite or
PostgreSQL). While the database cannot be reached, or its disk is full, the ledger says so
(``degraded``) and ``ensure_available`` raises StorageUnavailable until a probe succeeds again
(a read for an unreachable database, a committed write for a full disk), so calls are refused
before their function runs rather than run and then not billed. A call admitted just before
the disk filled, whose ledger row then cannot be written, is answered 503 without its answer:
no call is answered 2xx without its ledger row.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .database import DISK_FULL, Database, SqliteDatabase, StorageUnavailable, Transaction
from .idempotency import Claim, Hold, StoredAnswer
from .migrations import migrate
from .site_clock import SiteClock

log = logging.getLogger("edgefaas.gateway.ledger")

# The ledger's payer for calls of public functions made without a license: metered, not charged.
PUBLIC_LICENSE = "public"
MICROS = 1_000_000


@dataclass(frozen=True)
class LedgerEntry:
    call_id: str
    license_id: str
    function: str
    started_at: float  # epoch seconds
    duration_us: int
    status: int
    amount_micros: int  # money in millionths of the currency unit: sums stay exact
    parent_call_id: str = ""


@dataclass(frozen=True)
class FunctionUsage:
    function: str
    invocations: int
    duration_us: int
    amount_micros: int


Done = tuple[Hold, StoredAnswer]


class Ledger(ABC):
    @abstractmethod
    def record(self, entry: LedgerEntry, done: Done | None = None) -> Future[bool]:
        """Queue ``entry``; the future is True once committed, False if the call id was already there.

        ``done``: the idempotency claim this call ran under and the answer to store for its
        replays, written in the same transaction as the entry.
        """

    @abstractmethod
    def usage(self, license_id: str) -> list[FunctionUsage]:
        """Per function: calls, total duration and amount billed to ``license_id``."""

    @abstractmethod
    def entries(self, license_id: str | None) -> Iterator[LedgerEntry]:
        """Every call billed to ``license_id`` (None: to anyone), oldest first."""

    @abstractmethod
    def count_since(self, license_id: str, since: float) -> int:
        """Calls billed to ``license_id`` that started at or after ``since`` (for quotas)."""

    @abstractmethod
    def restore(self, entries: Iterable[LedgerEntry]) -> int:
        """Write ``entries`` as they are (a backup's); how many were new."""

    @abstractmethod
    def claim(self, payer: str, key: str, lease_s: float, window_s: float) -> Claim:
        """Claim the idempotency ``key`` of ``payer``: run it, replay its answer, or wait for it."""

    @abstractmethod
    def release(self, hold: Hold) -> None:
        """Give back a claim whose call was not billed, so a retry runs it."""

    @abstractmethod
    def renew(self, hold: Hold, lease_s: float) -> bool:
        """Keep a running claim ``lease_s`` more seconds; False if it is no longer this holder's."""

    @abstractmethod
    def close(self) -> None: ...

    @property
    def degraded(self) -> bool:
        """True while the database is known to be unreachable."""
        return False

    def ensure_available(self) -> None:  # noqa: B027 - optional: a ledger that is never away
        """StorageUnavailable while the database cannot be reached or cannot write (disk full)."""

    @property
    def storage_errors(self) -> dict[str, int]:
        """Failed storage operations by reason (``database.STORAGE_PROBLEMS``), for the metrics."""
        return {}

    def now(self) -> float:
        """The time billing and idempotency decisions use (the site's, where gateways share one)."""
        return time.time()

    def record_now(self, entry: LedgerEntry) -> bool:
        return self.record(entry).result()


LEDGER_COLUMNS = (
    "call_id, license_id, function, started_at, duration_us, status, amount_micros, parent_call_id"
)
_INSERT = (
    f"INSERT INTO ledger ({LEDGER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (call_id) DO NOTHING"
)
_DONE = (
    "UPDATE idempotency SET state = 'done', status = ?, headers = ?, body = ?, body_size = ?"
    " WHERE payer = ? AND key = ? AND call_id = ? AND state = 'running'"
)
_BATCH = 512
_STOP = object()
_PROBE_EVERY = 0.5  # seconds between reachability probes while the database is away
_PURGE_EVERY = 60.0  # seconds between deletions of expired idempotency keys
_CLAIM_TRIES = 3  # inserts of a key whose row keeps vanishing before a claim asks the caller to wait


def _row(entry: LedgerEntry) -> tuple[object, ...]:
    return (
        entry.call_id,
        entry.license_id,
        entry.function,
        entry.started_at,
        entry.duration_us,
        entry.status,
        entry.amount_micros,
        entry.parent_call_id,
    )


class SqlLedger(Ledger):
    def __init__(self, db: Database, *, close_db: bool = True) -> None:
        self.db = db
        self._close_db = close_db
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write_loop, name="ledger-writer", daemon=True)
        self._writer.start()
        self._closed = False
        self._last_probe = 0.0
        self._last_purge = 0.0
        # Claims that could not be given back while the database was away: given back once it is.
        self._unreleased: list[Hold] = []
        self.site_clock = SiteClock(db)

    def now(self) -> float:
        return self.site_clock.now()

    # -- reachability ------------------------------------------------------------------------

    def _came_back(self) -> None:
        if self.db.health.problem is not None:
            return
        if self._unreleased:
            pending, self._unreleased = self._unreleased, []
            for hold in pending:
                self.release(hold)  # one that fails again waits for the next return

    @property
    def degraded(self) -> bool:
        return self.db.health.problem is not None

    @property
    def storage_errors(self) -> dict[str, int]:
        return dict(self.db.health.errors)

    def ensure_available(self) -> None:
        health = self.db.health
        problem = health.problem
        if problem is None:
            return
        now = time.monotonic()
        if now - self._last_probe < _PROBE_EVERY:
            why = health.last_error or f"the database {self.db.describe()} is unavailable"
            raise StorageUnavailable(why, problem)
        self._last_probe = now
        if problem == DISK_FULL:
            self._probe_write()  # reads work on a full disk: only a committed write says it is over
        else:
            self._read("SELECT 1", ())

    def _probe_write(self) -> None:
        key = f"storage-probe-{uuid.uuid4().hex}"
        with self.db.transaction() as tx:
            tx.execute(
                "INSERT INTO idempotency (payer, key, call_id, holder, state, lease_until, expires_at)"
                " VALUES ('', ?, '', '', 'done', 0, 0)",
                (key,),
            )
            tx.execute("DELETE FROM idempotency WHERE payer = '' AND key = ?", (key,))
        self._came_back()

    def _read(self, sql: str, params: tuple[object, ...]) -> list[Any]:
        with self.db.transaction(write=False) as tx:
            rows = tx.execute(sql, params).fetchall()
        self._came_back()
        return rows

    # -- writing -----------------------------------------------------------------------------

    def record(self, entry: LedgerEntry, done: Done | None = None) -> Future[bool]:
        future: Future[bool] = Future()
        if self._closed:
            future.set_exception(RuntimeError("the ledger is closed"))
        else:
            self._queue.put((entry, done, future))
        return future

    def _write_loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            stop_after = False
            while len(batch) < _BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop_after = True
                    break
                batch.append(item)
            self._commit(batch)  # type: ignore[arg-type]
            if stop_after:
                return

    def _commit(self, batch: list[tuple[LedgerEntry, Done | None, Future[bool]]]) -> None:
        try:
            fresh = []
            with self.db.transaction() as tx:
                for entry, done, _ in batch:
                    fresh.append(tx.execute(_INSERT, _row(entry)).rowcount == 1)
                    if done is not None:
                        hold, answer = done
                        tx.execute(
                            _DONE,
                            (
                                answer.status,
                                answer.headers_json(),
                                answer.body,
                                answer.body_size,
                                hold.payer,
                                hold.key,
                                hold.call_id,
                            ),
                        )
        except Exception as exc:
            if not isinstance(exc, StorageUnavailable):  # that one the database's health logged
                log.exception("ledger commit of %d entries failed", len(batch))
            for _, _, future in batch:
                if not future.cancelled():  # its caller went away; the outcome is the ledger's
                    future.set_exception(exc)
            return
        self._came_back()
        for (_, _, future), is_new in zip(batch, fresh, strict=True):
            if not future.cancelled():
                future.set_result(is_new)

    def restore(self, entries: Iterable[LedgerEntry]) -> int:
        written = 0
        with self.db.transaction() as tx:
            for entry in entries:
                written += tx.execute(_INSERT, _row(entry)).rowcount == 1
        return written

    # -- idempotency -------------------------------------------------------------------------

    def claim(self, payer: str, key: str, lease_s: float, window_s: float) -> Claim:
        # The site's clock: a gateway whose own clock moved must not take over a call another
        # gateway is still running, nor forget a key the others still honour.
        now = self.now()
        fresh_id, holder = uuid.uuid4().hex, uuid.uuid4().hex
        lock = " FOR UPDATE" if self.db.dialect == "postgresql" else ""
        with self.db.transaction() as tx:
            if now - self._last_purge > _PURGE_EVERY:
                self._last_purge = now
                tx.execute("DELETE FROM idempotency WHERE expires_at < ?", (now,))
            claim: Claim | None = None
            # PostgreSQL reads each statement afresh (READ COMMITTED): the row the insert ran into
            # may be gone by the select (its holder gave the key back, say after its function
            # could not be reached). The key is then free: insert again.
            for _ in range(_CLAIM_TRIES):
                inserted = tx.execute(
                    "INSERT INTO idempotency (payer, key, call_id, holder, state, lease_until, expires_at)"
                    " VALUES (?, ?, ?, ?, 'running', ?, ?) ON CONFLICT (payer, key) DO NOTHING",
                    (payer, key, fresh_id, holder, now + lease_s, now + window_s),
                ).rowcount
                if inserted == 1:
                    claim = Claim("run", fresh_id, Hold(payer, key, fresh_id, holder))
                    break
                claim = self._claim_existing(tx, lock, payer, key, now, fresh_id, holder, lease_s, window_s)
                if claim is not None:
                    break
            if claim is None:  # taken and given back between every try: the caller asks again
                claim = Claim("wait", fresh_id, retry_after=0.0)
        self._came_back()
        return claim

    @staticmethod
    def _claim_existing(
        tx: Transaction,
        lock: str,
        payer: str,
        key: str,
        now: float,
        fresh_id: str,
        holder: str,
        lease_s: float,
        window_s: float,
    ) -> Claim | None:
        """The claim on the key's row; None when there is no row any more."""
        row = tx.execute(
            "SELECT call_id, state, lease_until, expires_at, status, headers, body, body_size"
            f" FROM idempotency WHERE payer = ? AND key = ?{lock}",
            (payer, key),
        ).fetchone()
        if row is None:
            return None
        call_id, state, lease_until, expires_at, status, headers, body, body_size = row
        if expires_at <= now:  # past the window: a new call, paid again
            tx.execute(
                "UPDATE idempotency SET call_id = ?, holder = ?, state = 'running', lease_until = ?,"
                " expires_at = ?, status = NULL, headers = NULL, body = NULL, body_size = NULL"
                " WHERE payer = ? AND key = ?",
                (fresh_id, holder, now + lease_s, now + window_s, payer, key),
            )
            return Claim("run", fresh_id, Hold(payer, key, fresh_id, holder))
        if state == "done":
            stored = StoredAnswer(
                int(status), StoredAnswer.headers_from_json(headers), None if body is None else bytes(body),
                int(body_size),
            )  # fmt: skip
            return Claim("replay", call_id, answer=stored)
        if lease_until > now:
            return Claim("wait", call_id, retry_after=lease_until - now)
        # Its holder is gone (the gateway died, or gave up): run it again under the same call id,
        # so if the first run was billed after all the ledger's primary key keeps it once.
        tx.execute(
            "UPDATE idempotency SET holder = ?, lease_until = ? WHERE payer = ? AND key = ?",
            (holder, now + lease_s, payer, key),
        )
        return Claim("run", call_id, Hold(payer, key, call_id, holder))

    def renew(self, hold: Hold, lease_s: float) -> bool:
        with self.db.transaction() as tx:
            return (
                tx.execute(
                    "UPDATE idempotency SET lease_until = ?"
                    " WHERE payer = ? AND key = ? AND holder = ? AND state = 'running'",
                    (self.now() + lease_s, hold.payer, hold.key, hold.holder),
                ).rowcount
                == 1
            )

    def release(self, hold: Hold) -> None:
        try:
            with self.db.transaction() as tx:
                tx.execute(
                    "DELETE FROM idempotency"
                    " WHERE payer = ? AND key = ? AND holder = ? AND state = 'running'",
                    (hold.payer, hold.key, hold.holder),
                )
        except StorageUnavailable as exc:
            # Given back when the database is reached again (a retry then runs at once); if this
            # gateway dies first, the lease runs out and a retry takes the key over.
            self._unreleased.append(hold)
            log.info("could not give back idempotency key %r yet: %s", hold.key, exc)

    # -- reading -----------------------------------------------------------------------------

    def usage(self, license_id: str) -> list[FunctionUsage]:
        rows = self._read(
            "SELECT function, COUNT(*), SUM(duration_us), SUM(amount_micros) FROM ledger"
            " WHERE license_id = ? GROUP BY function ORDER BY function",
            (license_id,),
        )
        return [FunctionUsage(f, int(n), int(d or 0), int(a or 0)) for f, n, d, a in rows]

    def entries(self, license_id: str | None) -> Iterator[LedgerEntry]:
        where, params = ("WHERE license_id = ?", (license_id,)) if license_id is not None else ("", ())
        rows = self._read(f"SELECT {LEDGER_COLUMNS} FROM ledger {where} ORDER BY started_at, call_id", params)
        for row in rows:
            yield LedgerEntry(*row)

    def count_since(self, license_id: str, since: float) -> int:
        ((count,),) = self._read(
            "SELECT COUNT(*) FROM ledger WHERE license_id = ? AND started_at >= ?", (license_id, since)
        )
        return int(count)

    def close(self) -> None:
        """Commit everything queued, then stop."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._writer.join(timeout=30)
        if self._close_db:
            self.db.close()


class SqliteLedger(SqlLedger):
    """The ledger alone in a SQLite file (migrated to the latest schema on open)."""

    def __init__(self, path: Path, sync: Literal["normal", "full"] = "normal") -> None:
        db = SqliteDatabase(Path(path), sync)
        migrate(db)
        super().__init__(db)
        self.path = db.path
