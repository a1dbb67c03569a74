"""Where plans and licenses are kept. SqliteLicenseStore is the default (see ``storage``)."""

from __future__ import annotations

import sqlite3
import threading
from abc import ABC, abstractmethod
from pathlib import Path

from .plans import DEFAULT_PLANS, License, Plan


class LicenseStore(ABC):
    """Plans and licenses. SqliteLicenseStore fills it; a PostgreSQL one would fill the same."""

    @abstractmethod
    def add_plan(self, plan: Plan) -> bool:
        """False if a plan of that name exists (plans never change: past bills stay explainable)."""

    @abstractmethod
    def plan(self, name: str) -> Plan | None: ...

    @abstractmethod
    def plans(self) -> list[Plan]: ...

    @abstractmethod
    def add_license(self, license: License) -> None: ...

    @abstractmethod
    def license(self, license_id: str) -> License | None: ...

    @abstractmethod
    def licenses(self) -> list[License]: ...

    @abstractmethod
    def revoke(self, license_id: str, when: float) -> bool: ...

    def close(self) -> None:  # noqa: B027 - optional
        pass


class SqliteLicenseStore(LicenseStore):
    _SCHEMA = """
    CREATE TABLE IF NOT EXISTS plans (
        name TEXT PRIMARY KEY, description TEXT NOT NULL, price_per_call_micros INTEGER NOT NULL,
        price_per_second_micros INTEGER NOT NULL, quota_calls INTEGER, quota_period_s INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS licenses (
        id TEXT PRIMARY KEY, name TEXT NOT NULL, plan TEXT NOT NULL REFERENCES plans (name),
        created_at REAL NOT NULL, revoked_at REAL
    );
    """

    def __init__(self, path: Path, seed_plans: tuple[Plan, ...] = DEFAULT_PLANS) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.executescript(self._SCHEMA)
        self._lock = threading.Lock()
        if not self.plans():
            for plan in seed_plans:
                self.add_plan(plan)

    def add_plan(self, plan: Plan) -> bool:
        with self._lock:
            cursor = self._conn.execute(
                "INSERT OR IGNORE INTO plans VALUES (?, ?, ?, ?, ?, ?)",
                (
                    plan.name,
                    plan.description,
                    plan.price_per_call_micros,
                    plan.price_per_second_micros,
                    plan.quota_calls,
                    plan.quota_period_s,
                ),
            )
            return cursor.rowcount == 1

    def plan(self, name: str) -> Plan | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT name, price_per_call_micros, price_per_second_micros, quota_calls, quota_period_s,"
                " description FROM plans WHERE name = ?",
                (name,),
            ).fetchone()
        return Plan(*row) if row else None

    def plans(self) -> list[Plan]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT name, price_per_call_micros, price_per_second_micros, quota_calls, quota_period_s,"
                " description FROM plans ORDER BY name"
            ).fetchall()
        return [Plan(*row) for row in rows]

    def add_license(self, license: License) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT INTO licenses VALUES (?, ?, ?, ?, ?)",
                (license.id, license.name, license.plan, license.created_at, license.revoked_at),
            )

    def license(self, license_id: str) -> License | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT id, name, plan, created_at, revoked_at FROM licenses WHERE id = ?", (license_id,)
            ).fetchone()
        return License(*row) if row else None

    def licenses(self) -> list[License]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, name, plan, created_at, revoked_at FROM licenses ORDER BY created_at, id"
            ).fetchall()
        return [License(*row) for row in rows]

    def revoke(self, license_id: str, when: float) -> bool:
        with self._lock:
            cursor = self._conn.execute(
                "UPDATE licenses SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (when, license_id)
            )
            return cursor.rowcount == 1

    def close(self) -> None:
        with self._lock:
            self._conn.close()
