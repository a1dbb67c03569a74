"""The gateway's schema, as numbered migrations, applied forward when the gateway starts.

``schema_version`` records each migration applied. Migration 1 is the schema gateways made
before versions were recorded; its statements are ``IF NOT EXISTS``, so a database from
then is taken over in place and keeps its rows. A database whose version is newer than
this code knows is refused (a downgraded gateway must not write a schema it does not
understand). Gateways starting together on one PostgreSQL migrate one at a time: the
migration runs under a transaction-scoped advisory lock, and the others then find the
work done. SQLite's BEGIN IMMEDIATE does the same for processes sharing a file.

One list serves both dialects: ``{real}``, ``{bigint}`` and ``{blob}`` become each
dialect's type.
"""

from __future__ import annotations

import time

from .database import Database, Transaction

_TYPES = {
    "sqlite": {"real": "REAL", "bigint": "INTEGER", "blob": "BLOB"},
    "postgresql": {"real": "DOUBLE PRECISION", "bigint": "BIGINT", "blob": "BYTEA"},
}

MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (
        1,
        "plans, licenses and the ledger (the schema before versions were recorded)",
        """
        CREATE TABLE IF NOT EXISTS plans (
            name TEXT PRIMARY KEY, description TEXT NOT NULL, price_per_call_micros {bigint} NOT NULL,
            price_per_second_micros {bigint} NOT NULL, quota_calls {bigint}, quota_period_s {bigint} NOT NULL
        );
        CREATE TABLE IF NOT EXISTS licenses (
            id TEXT PRIMARY KEY, name TEXT NOT NULL, plan TEXT NOT NULL REFERENCES plans (name),
            created_at {real} NOT NULL, revoked_at {real}
        );
        CREATE TABLE IF NOT EXISTS ledger (
            call_id        TEXT PRIMARY KEY,
            license_id     TEXT NOT NULL,
            function       TEXT NOT NULL,
            started_at     {real} NOT NULL,
            duration_us    {bigint} NOT NULL,
            status         INTEGER NOT NULL,
            amount_micros  {bigint} NOT NULL,
            parent_call_id TEXT NOT NULL DEFAULT ''
        );
        CREATE INDEX IF NOT EXISTS ledger_by_license ON ledger (license_id, started_at);
        """,
    ),
    (
        2,
        "idempotency keys and their first answers; token verification keys by kid",
        """
        CREATE TABLE idempotency (
            payer       TEXT NOT NULL,
            key         TEXT NOT NULL,
            call_id     TEXT NOT NULL,
            holder      TEXT NOT NULL,
            state       TEXT NOT NULL CHECK (state IN ('running', 'done')),
            lease_until {real} NOT NULL,
            expires_at  {real} NOT NULL,
            status      INTEGER,
            headers     TEXT,
            body        {blob},
            body_size   {bigint},
            PRIMARY KEY (payer, key)
        );
        CREATE INDEX idempotency_by_expiry ON idempotency (expires_at);
        CREATE TABLE signing_keys (
            kid        TEXT PRIMARY KEY,
            algorithm  TEXT NOT NULL,
            public_key {blob} NOT NULL,
            created_at {real} NOT NULL
        );
        """,
    ),
    (
        3,
        "cloud and edge sites: the signed function catalogue, usage records and their sequences",
        """
        CREATE TABLE catalogue (
            function     TEXT PRIMARY KEY,
            version      {bigint} NOT NULL UNIQUE,
            sites        TEXT NOT NULL,
            ever_sites   TEXT NOT NULL,
            spec         TEXT,
            payload      TEXT NOT NULL,
            signature    TEXT NOT NULL,
            published_at {real} NOT NULL
        );
        CREATE TABLE site_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE usage_outbox (
            seq           {bigint} PRIMARY KEY,
            call_id       TEXT NOT NULL UNIQUE,
            license_id    TEXT NOT NULL,
            function      TEXT NOT NULL,
            started_at    {real} NOT NULL,
            duration_us   {bigint} NOT NULL,
            status        INTEGER NOT NULL,
            amount_micros {bigint} NOT NULL
        );
        CREATE TABLE site_usage (
            site          TEXT NOT NULL,
            seq           {bigint} NOT NULL,
            call_id       TEXT NOT NULL,
            license_id    TEXT NOT NULL,
            function      TEXT NOT NULL,
            started_at    {real} NOT NULL,
            duration_us   {bigint} NOT NULL,
            status        INTEGER NOT NULL,
            amount_micros {bigint} NOT NULL,
            received_at   {real} NOT NULL,
            PRIMARY KEY (site, seq),
            UNIQUE (site, call_id)
        );
        CREATE INDEX site_usage_by_license ON site_usage (license_id);
        """,
    ),
)
LATEST = MIGRATIONS[-1][0]
# pg_advisory_xact_lock's key: any constant the gateway alone uses ("edgefaas" in ASCII).
_LOCK_KEY = 0x6564676566616173


class SchemaTooNew(RuntimeError):
    pass


def _version(tx: Transaction) -> int:
    row = tx.execute("SELECT MAX(version) FROM schema_version").fetchone()
    return int(row[0] or 0)


def migrate(db: Database) -> int:
    """Bring ``db`` to LATEST; its version afterwards. SchemaTooNew if it is ahead of this code."""
    types = _TYPES[db.dialect]
    with db.transaction() as tx:
        if db.dialect == "postgresql":
            tx.execute("SELECT pg_advisory_xact_lock(?)", (_LOCK_KEY,))
        tx.execute(
            f"CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY,"
            f" description TEXT NOT NULL, applied_at {types['real']} NOT NULL)"
        )
        current = _version(tx)
        if current > LATEST:
            raise SchemaTooNew(
                f"the database {db.describe()} has schema version {current}, newer than this gateway's "
                f"{LATEST}: run a gateway release that knows it (or restore a backup into an empty database)"
            )
        for number, description, sql in MIGRATIONS:
            if number <= current:
                continue
            for statement in sql.format(**types).split(";"):
                if statement.strip():
                    tx.execute(statement)
            tx.execute(
                "INSERT INTO schema_version (version, description, applied_at) VALUES (?, ?, ?)",
                (number, description, time.time()),
            )
        return max(current, LATEST)


def schema_version(db: Database) -> int:
    with db.transaction() as tx:
        tables = (
            "SELECT COUNT(*) FROM sqlite_master WHERE name = 'schema_version'"
            if db.dialect == "sqlite"
            else "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'schema_version'"
            " AND table_schema = current_schema()"
        )
        if not tx.execute(tables).fetchone()[0]:
            return 0
        return _version(tx)
