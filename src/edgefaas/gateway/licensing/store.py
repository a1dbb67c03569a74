"""Where plans, licenses and token verification keys are kept (see ``storage`` for which database)."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from pathlib import Path

from ..database import Database, SqliteDatabase
from ..migrations import migrate
from .plans import DEFAULT_PLANS, License, Plan


class LicenseStore(ABC):
    """Plans, licenses, and the public keys gateways sign license tokens with (by kid)."""

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

    @abstractmethod
    def publish_key(self, kid: str, algorithm: str, public_key: bytes) -> None:
        """Record a gateway's token verification key (an ES256 key's DER SubjectPublicKeyInfo)."""

    @abstractmethod
    def verification_key(self, kid: str) -> tuple[str, bytes] | None:
        """(algorithm, public key) of ``kid``, if a gateway published it."""

    def close(self) -> None:  # noqa: B027 - optional
        pass


PLAN_COLUMNS = (
    "name, price_per_call_micros, price_per_second_micros, quota_calls, quota_period_s, description"
)
LICENSE_COLUMNS = "id, name, plan, created_at, revoked_at"


class SqlLicenseStore(LicenseStore):
    def __init__(
        self, db: Database, seed_plans: tuple[Plan, ...] = DEFAULT_PLANS, *, close_db: bool = True
    ) -> None:
        self.db = db
        self._close_db = close_db
        if seed_plans and not self.plans():
            for plan in seed_plans:
                self.add_plan(plan)

    def add_plan(self, plan: Plan) -> bool:
        with self.db.transaction() as tx:
            cursor = tx.execute(
                f"INSERT INTO plans ({PLAN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING",
                (
                    plan.name,
                    plan.price_per_call_micros,
                    plan.price_per_second_micros,
                    plan.quota_calls,
                    plan.quota_period_s,
                    plan.description,
                ),
            )
            return cursor.rowcount == 1

    def plan(self, name: str) -> Plan | None:
        with self.db.transaction(write=False) as tx:
            row = tx.execute(f"SELECT {PLAN_COLUMNS} FROM plans WHERE name = ?", (name,)).fetchone()
        return Plan(*row) if row else None

    def plans(self) -> list[Plan]:
        with self.db.transaction(write=False) as tx:
            rows = tx.execute(f"SELECT {PLAN_COLUMNS} FROM plans ORDER BY name").fetchall()
        return [Plan(*row) for row in rows]

    def add_license(self, license: License) -> None:
        with self.db.transaction() as tx:
            tx.execute(
                f"INSERT INTO licenses ({LICENSE_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
                (license.id, license.name, license.plan, license.created_at, license.revoked_at),
            )

    def license(self, license_id: str) -> License | None:
        with self.db.transaction(write=False) as tx:
            row = tx.execute(f"SELECT {LICENSE_COLUMNS} FROM licenses WHERE id = ?", (license_id,)).fetchone()
        return License(*row) if row else None

    def licenses(self) -> list[License]:
        with self.db.transaction(write=False) as tx:
            rows = tx.execute(f"SELECT {LICENSE_COLUMNS} FROM licenses ORDER BY created_at, id").fetchall()
        return [License(*row) for row in rows]

    def revoke(self, license_id: str, when: float) -> bool:
        with self.db.transaction() as tx:
            cursor = tx.execute(
                "UPDATE licenses SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (when, license_id)
            )
            return cursor.rowcount == 1

    def publish_key(self, kid: str, algorithm: str, public_key: bytes) -> None:
        with self.db.transaction() as tx:
            tx.execute(
                "INSERT INTO signing_keys (kid, algorithm, public_key, created_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (kid) DO NOTHING",
                (kid, algorithm, public_key, time.time()),
            )

    def verification_key(self, kid: str) -> tuple[str, bytes] | None:
        with self.db.transaction(write=False) as tx:
            row = tx.execute(
                "SELECT algorithm, public_key FROM signing_keys WHERE kid = ?", (kid,)
            ).fetchone()
        return (str(row[0]), bytes(row[1])) if row else None

    def close(self) -> None:
        if self._close_db:
            self.db.close()


class SqliteLicenseStore(SqlLicenseStore):
    """The license store alone in a SQLite file (migrated to the latest schema on open)."""

    def __init__(self, path: Path, seed_plans: tuple[Plan, ...] = DEFAULT_PLANS) -> None:
        db = SqliteDatabase(Path(path))
        migrate(db)
        super().__init__(db, seed_plans)
