"""The billing ledger: one row per call that reached a function, keyed by the call id.

Exactly once: the gateway makes a fresh call id for every call (a caller's X-Call-Id is
never trusted as the key, or one id reused would buy many calls for the price of one),
and the id is the primary key, so writing the same entry twice changes nothing.

Durable before answered: the gateway awaits ``record`` before it sends the function's
answer, and ``record`` resolves only after the row is committed. A gateway killed at any
moment has therefore billed every call whose answer left it. Writes from concurrent
calls share one transaction (group commit), so durability costs one commit per batch,
not one per call.

``Ledger`` is the interface; SqliteLedger fills it (the default, a file in the data dir).
A PostgreSQL ledger fills the same methods with ``INSERT ... ON CONFLICT (call_id) DO
NOTHING`` and the same queries.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

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


class Ledger(ABC):
    @abstractmethod
    def record(self, entry: LedgerEntry) -> Future[bool]:
        """Queue ``entry``; the future is True once committed, False if the call id was already there."""

    @abstractmethod
    def usage(self, license_id: str) -> list[FunctionUsage]:
        """Per function: calls, total duration and amount billed to ``license_id``."""

    @abstractmethod
    def entries(self, license_id: str) -> Iterator[LedgerEntry]:
        """Every call billed to ``license_id``, oldest first."""

    @abstractmethod
    def count_since(self, license_id: str, since: float) -> int:
        """Calls billed to ``license_id`` that started at or after ``since`` (for quotas)."""

    @abstractmethod
    def close(self) -> None: ...

    def record_now(self, entry: LedgerEntry) -> bool:
        return self.record(entry).result()


_SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger (
    call_id        TEXT PRIMARY KEY,
    license_id     TEXT NOT NULL,
    function       TEXT NOT NULL,
    started_at     REAL NOT NULL,
    duration_us    INTEGER NOT NULL,
    status         INTEGER NOT NULL,
    amount_micros  INTEGER NOT NULL,
    parent_call_id TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS ledger_by_license ON ledger (license_id, started_at);
"""

_INSERT = (
    "INSERT OR IGNORE INTO ledger (call_id, license_id, function, started_at, duration_us, status,"
    " amount_micros, parent_call_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_BATCH = 512
_STOP = object()


def _connect(path: Path, sync: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    # WAL + NORMAL: a commit is in the OS once it returns (survives the process being killed);
    # FULL adds an fsync per commit (survives power loss).
    conn.execute(f"PRAGMA synchronous={'FULL' if sync == 'full' else 'NORMAL'}")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


class SqliteLedger(Ledger):
    def __init__(self, path: Path, sync: Literal["normal", "full"] = "normal") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer_conn = _connect(self.path, sync)
        self._writer_conn.executescript(_SCHEMA)
        self._reader = _connect(self.path, sync)
        self._reader_lock = threading.Lock()
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write_loop, name="ledger-writer", daemon=True)
        self._writer.start()
        self._closed = False

    def record(self, entry: LedgerEntry) -> Future[bool]:
        future: Future[bool] = Future()
        if self._closed:
            future.set_exception(RuntimeError("the ledger is closed"))
        else:
            self._queue.put((entry, future))
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

    def _commit(self, batch: list[tuple[LedgerEntry, Future[bool]]]) -> None:
        conn = self._writer_conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            fresh = []
            for entry, _ in batch:
                cursor = conn.execute(
                    _INSERT,
                    (
                        entry.call_id,
                        entry.license_id,
                        entry.function,
                        entry.started_at,
                        entry.duration_us,
                        entry.status,
                        entry.amount_micros,
                        entry.parent_call_id,
                    ),
                )
                fresh.append(cursor.rowcount == 1)
            conn.execute("COMMIT")
        except Exception as exc:
            log.exception("ledger commit of %d entries failed", len(batch))
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for _, future in batch:
                future.set_exception(exc)
            return
        for (_, future), is_new in zip(batch, fresh, strict=True):
            future.set_result(is_new)

    def usage(self, license_id: str) -> list[FunctionUsage]:
        with self._reader_lock:
            rows = self._reader.execute(
                "SELECT function, COUNT(*), SUM(duration_us), SUM(amount_micros) FROM ledger"
                " WHERE license_id = ? GROUP BY function ORDER BY function",
                (license_id,),
            ).fetchall()
        return [FunctionUsage(f, n, int(d or 0), int(a or 0)) for f, n, d, a in rows]

    def entries(self, license_id: str) -> Iterator[LedgerEntry]:
        with self._reader_lock:
            rows = self._reader.execute(
                "SELECT call_id, license_id, function, started_at, duration_us, status, amount_micros,"
                " parent_call_id FROM ledger WHERE license_id = ? ORDER BY started_at, call_id",
                (license_id,),
            ).fetchall()
        for row in rows:
            yield LedgerEntry(*row)

    def count_since(self, license_id: str, since: float) -> int:
        with self._reader_lock:
            (count,) = self._reader.execute(
                "SELECT COUNT(*) FROM ledger WHERE license_id = ? AND started_at >= ?", (license_id, since)
            ).fetchone()
        return int(count)

    def close(self) -> None:
        """Commit everything queued, then stop."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._writer.join(timeout=30)
        self._writer_conn.close()
        with self._reader_lock:
            self._reader.close()
