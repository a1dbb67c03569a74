"""One SQL database behind the gateway's stores: SQLite (a file) or PostgreSQL (pooled connections).

The stores (``ledger.SqlLedger``, ``licensing.store.SqlLicenseStore``) write their SQL once,
with ``?`` placeholders and the upsert both dialects share (``INSERT ... ON CONFLICT ... DO
NOTHING``); a Database runs it in a transaction on one of its connections. Where the dialects
differ (types, row locks) ``migrations`` and the stores ask ``dialect``.

A database that cannot be reached (PostgreSQL stopped, its host gone) raises
StorageUnavailable, which the gateway answers 503 with the reason: a billed call must not
run when it cannot be billed. PostgreSQL's pool checks a connection before lending it and
replaces broken ones, so it reconnects by itself when the server is back.
"""

from __future__ import annotations

import contextlib
import queue
import re
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

Dialect = Literal["sqlite", "postgresql"]


class StorageUnavailable(Exception):
    """The database cannot be reached or did not complete the statement; the reason says which."""


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Transaction(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor: ...


class Database(ABC):
    dialect: Dialect

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
        conn = self._borrow()
        try:
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield conn  # type: ignore[misc]
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StorageUnavailable(f"{self.describe()}: {exc}") from exc
        finally:
            self._idle.put(conn)

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

    @contextlib.contextmanager
    def transaction(self, write: bool = True) -> Iterator[Transaction]:
        import psycopg
        from psycopg_pool import PoolTimeout

        try:
            with self._pool.connection() as conn, conn.transaction():
                yield _PostgresTransaction(conn)
        except PoolTimeout as exc:
            raise StorageUnavailable(
                f"no connection to PostgreSQL at {self.describe()} within {self.timeout:g}s"
            ) from exc
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise StorageUnavailable(f"PostgreSQL at {self.describe()}: {_first_line(exc)}") from exc

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
