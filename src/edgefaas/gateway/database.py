"""One SQL database behind the gateway's stores: SQLite (a file) or PostgreSQL (pooled connections).

The stores (``ledger.SqlLedger``, ``licensing.store.SqlLicenseStore``) write their SQL once,
with ``?`` placeholders and the upsert both dialects share (``INSERT ... ON CONFLICT ... DO
NOTHING``); a Database runs it in a transaction on one of its connections. Where the dialects
differ (types, row locks) ``migrations`` and the stores ask ``dialect``.

A database that cannot be reached (PostgreSQL stopped, its host gone) raises
StorageUnavailable, which the gateway answers 503 with the reason: a billed call must not
run when it cannot be billed. PostgreSQL's pool checks a connection before lending it and
replaces broken ones, so it reconnects by itself when the server is back.

A full disk (SQLite's SQLITE_FULL or an I/O error with no space left; PostgreSQL's SQLSTATE
53100 "could not extend file") raises StorageUnavailable too, its ``reason`` "disk_full":
reads still work then, so only a write that commits again ends that episode
(``StorageHealth``). Each episode is logged once, when it starts and when it ends.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import queue
import re
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

Dialect = Literal["sqlite", "postgresql"]
# Why storage failed, as the metrics label it: "unreachable" (server away, database closed),
# "disk_full" (no space left where it writes), "failed" (any other I/O error).
StorageProblem = Literal["unreachable", "disk_full", "failed"]
STORAGE_PROBLEMS: tuple[StorageProblem, ...] = ("unreachable", "disk_full", "failed")
DISK_FULL: StorageProblem = "disk_full"
# Below this many free bytes an SQLite I/O error is taken for a full disk (SQLite reports a
# failed write of the WAL as SQLITE_IOERR, not SQLITE_FULL, and does not say why).
_NEARLY_FULL_BYTES = 1 << 20

log = logging.getLogger("edgefaas.gateway.database")


class StorageUnavailable(Exception):
    """The database cannot be reached or did not complete the statement; the message says why,
    ``reason`` names the kind of problem (``StorageProblem``)."""

    def __init__(self, message: str, reason: StorageProblem = "unreachable") -> None:
        super().__init__(message)
        self.reason: StorageProblem = reason


class StorageHealth:
    """The current trouble with one database, its episodes, and failures counted by reason.

    ``problem`` is what the gateway acts on: set by a failure, cleared by the first success
    that proves it gone (any statement for an unreachable database, only a committed write
    for a full disk, where reads keep working). A nearly full disk lets some writes through
    and fails others, so ``problem`` may come and go many times a second; the log tells of
    the episode instead: one line when it starts, one when it has stayed clear
    ``quiet_s`` seconds (said at the next success after that).
    """

    def __init__(self, where: str, quiet_s: float = 2.0) -> None:
        self.where = where
        self.quiet_s = quiet_s
        self.problem: StorageProblem | None = None
        self.last_error = ""
        self.errors: dict[str, int] = dict.fromkeys(STORAGE_PROBLEMS, 0)
        self._episode: StorageProblem | None = None  # started and not yet logged as over
        self._since = self._cleared_at = 0.0
        self._lock = threading.Lock()

    def failed(self, exc: StorageUnavailable) -> None:
        with self._lock:
            self.errors[exc.reason] += 1
            self.last_error = str(exc)
            if self.problem == exc.reason:
                return
            self.problem = exc.reason
            if self._episode == exc.reason:
                return  # back within the quiet time: the same episode, already told
            self._episode, self._since = exc.reason, time.monotonic()
        log.warning("storage %s: %s (%s)", self.where, _SAYS[exc.reason], exc)

    def succeeded(self, wrote: bool) -> None:
        if self._episode is None or (self.problem == DISK_FULL and not wrote):
            return
        now = time.monotonic()
        with self._lock:
            if self.problem is not None:
                if self.problem == DISK_FULL and not wrote:
                    return
                self.problem, self._cleared_at = None, now
            episode = self._episode
            if episode is None or now - self._cleared_at < self.quiet_s:
                return
            self._episode = None
            lasted = self._cleared_at - self._since
        log.warning("storage %s: %s (the trouble lasted %.1fs)", self.where, _ENDED[episode], lasted)


_SAYS: dict[StorageProblem, str] = {
    "unreachable": "the database is unreachable; calls that must be billed are refused (503)",
    "disk_full": "no space left on the database's disk; calls that must be billed are refused (503)",
    "failed": "the database failed a statement; calls that must be billed are refused (503)",
}
_ENDED: dict[StorageProblem, str] = {
    "unreachable": "the database is reachable again",
    "disk_full": "the database writes again (space was freed)",
    "failed": "the database works again",
}


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Transaction(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor: ...


class Database(ABC):
    dialect: Dialect
    health: StorageHealth

    @abstractmethod
    def transaction(self, write: bool = True) -> contextlib.AbstractContextManager[Transaction]:
        """A transaction on a connection of its own: committed when the block ends, else rolled back.

        ``write=False`` promises only reads (SQLite then does not take the write lock)."""

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def describe(self) -> str:
        """Where it is, without credentials (for logs and errors)."""


class SqliteDatabase(Database):
    """A SQLite file in WAL mode; every transaction takes the write lock (BEGIN IMMEDIATE), so a
    read-then-write (an idempotency claim) cannot interleave with another writer."""

    dialect: Dialect = "sqlite"
    CONNECTIONS = 4

    def __init__(self, path: Path, sync: Literal["normal", "full"] = "normal") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._sync = sync
        self._idle: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        self.health = StorageHealth(self.describe())

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a commit is in the OS once it returns (survives the process being killed);
        # FULL adds an fsync per commit (survives power loss).
        conn.execute(f"PRAGMA synchronous={'FULL' if self._sync == 'full' else 'NORMAL'}")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def _borrow(self) -> sqlite3.Connection:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            if self._closed:
                raise StorageUnavailable(f"the database {self.describe()} is closed")
            conn = self._connect()
            self._all.append(conn)
            return conn

    @contextlib.contextmanager
    def transaction(self, write: bool = True) -> Iterator[Transaction]:
        try:
            conn = self._borrow()
        except sqlite3.OperationalError as exc:
            raise self._unavailable(exc) from exc
        try:
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield conn  # type: ignore[misc]
            except BaseException:
                # SQLite rolls a transaction back itself after some errors (SQLITE_FULL among
                # them); a second ROLLBACK would then hide the first error behind its own.
                self._rollback(conn)
                raise
            conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            self._rollback(conn)
            raise self._unavailable(exc) from exc
        finally:
            self._idle.put(conn)
        self.health.succeeded(wrote=write)

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.OperationalError):
                conn.execute("ROLLBACK")

    def _unavailable(self, exc: sqlite3.OperationalError) -> StorageUnavailable:
        if self._disk_full(exc):
            error = StorageUnavailable(f"no space left on the disk of {self.describe()}: {exc}", DISK_FULL)
        elif getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_IOERR:
            error = StorageUnavailable(f"{self.describe()}: {exc}", "failed")
        else:
            error = StorageUnavailable(f"{self.describe()}: {exc}")
        self.health.failed(error)
        return error

    def _disk_full(self, exc: sqlite3.OperationalError) -> bool:
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        if code == sqlite3.SQLITE_FULL or "disk is full" in str(exc):
            return True
        if code != sqlite3.SQLITE_IOERR:
            return False
        try:
            space = os.statvfs(self.path.parent)
        except OSError:
            return False
        return space.f_bavail * space.f_frsize < _NEARLY_FULL_BYTES

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for conn in self._all:
                conn.close()
            self._all.clear()

    def describe(self) -> str:
        return f"sqlite://{self.path}"


class _PostgresTransaction:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        cursor: Cursor = self._conn.execute(sql.replace("?", "%s"), params)
        return cursor


class PostgresDatabase(Database):
    """PostgreSQL through a psycopg connection pool (``pool_size`` connections at most)."""

    dialect: Dialect = "postgresql"

    def __init__(self, url: str, pool_size: int = 16, timeout: float = 5.0) -> None:
        try:
            from psycopg_pool import ConnectionPool
        except ImportError as exc:
            raise RuntimeError(
                f"PostgreSQL storage needs psycopg and psycopg_pool (pip install 'edgefaas[gateway]'): {exc}"
            ) from exc
        self.url = url
        self.timeout = timeout
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            timeout=timeout,
            # A connection the server dropped (restart, failover) is found and replaced when lent.
            check=ConnectionPool.check_connection,
            kwargs={"connect_timeout": max(int(timeout), 1), "autocommit": False},
            reconnect_timeout=24 * 3600,  # keep trying while the server is away: it is the only one
            open=False,
            name="edgefaas-storage",
        )
        self._pool.open(wait=False)
        self.health = StorageHealth(self.describe())

    @contextlib.contextmanager
    def transaction(self, write: bool = True) -> Iterator[Transaction]:
        import psycopg
        from psycopg_pool import PoolTimeout

        try:
            with self._pool.connection() as conn, conn.transaction():
                yield _PostgresTransaction(conn)
        except PoolTimeout as exc:
            error = StorageUnavailable(
                f"no connection to PostgreSQL at {self.describe()} within {self.timeout:g}s"
            )
            self.health.failed(error)
            raise error from exc
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            if isinstance(exc, psycopg.errors.DiskFull) or os.strerror(errno.ENOSPC) in str(exc):
                where = f"PostgreSQL at {self.describe()}"
                error = StorageUnavailable(
                    f"no space left on the disk of {where}: {_first_line(exc)}", DISK_FULL
                )
            else:
                error = StorageUnavailable(f"PostgreSQL at {self.describe()}: {_first_line(exc)}")
            self.health.failed(error)
            raise error from exc
        self.health.succeeded(wrote=write)

    def close(self) -> None:
        self._pool.close()

    def describe(self) -> str:
        return re.sub(r"//[^@/]*@", "//", self.url)


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def open_database(url: str, sync: Literal["normal", "full"] = "normal") -> Database:
    """``sqlite:///path`` or ``postgresql://user:password@host:port/dbname`` (libpq's URL)."""
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresDatabase(url)
    if url.startswith("sqlite://"):
        return SqliteDatabase(Path(url.removeprefix("sqlite://")), sync)
    raise ValueError(f"unknown storage URL {url!r}: use sqlite:///path or postgresql://host/dbname")
