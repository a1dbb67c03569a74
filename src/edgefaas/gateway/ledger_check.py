"""An integrity check of the billing ledger, read-only, for after a fault (a full disk, a crash).

What it proves, on SQLite and PostgreSQL alike:

- the database file is sound (SQLite: ``PRAGMA integrity_check`` and ``foreign_key_check``;
  PostgreSQL checks its own pages, and a damaged one fails the queries below);
- the schema is this release's;
- every ledger row is well-formed: a call id, a payer and a function named, a start time, an
  HTTP status, a duration and an amount that are not negative;
- every payer is a license the gateway issued (or the public payer, or on a cloud an edge site
  whose call it ran: ``site:<name>``, billed at that site);
- no call id appears twice in the ledger, no idempotency key twice for one payer;
- every idempotency key whose answer is stored ("done") has its ledger row: both are written
  in one transaction, so a stored answer without its row is an answer given without billing.

The gateway keeps no running totals beside the ledger (quotas and bills are sums over its
rows), so there are no counters to reconcile. It opens no write transaction: it runs on a
full disk.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .database import Database, Transaction
from .ledger import PUBLIC_LICENSE
from .migrations import LATEST, schema_version
from .usage import SITE_PAYER_PREFIX

# (what is wrong, the SQL counting the rows it is wrong in)
_ROW_CHECKS: tuple[tuple[str, str], ...] = (
    (
        "ledger rows without a call id, payer or function",
        "SELECT COUNT(*) FROM ledger WHERE call_id = '' OR license_id = '' OR function = ''",
    ),
    ("ledger rows with a start time not after 1970", "SELECT COUNT(*) FROM ledger WHERE NOT started_at > 0"),
    ("ledger rows with no HTTP status", "SELECT COUNT(*) FROM ledger WHERE status < 100 OR status > 599"),
    (
        "ledger rows with a negative duration or amount",
        "SELECT COUNT(*) FROM ledger WHERE duration_us < 0 OR amount_micros < 0",
    ),
    (
        "ledger rows billed to a license the gateway never issued",
        f"SELECT COUNT(*) FROM ledger WHERE license_id <> '{PUBLIC_LICENSE}'"
        # substr, not LIKE 'site:%': psycopg would read the % as a placeholder.
        f" AND substr(license_id, 1, {len(SITE_PAYER_PREFIX)}) <> '{SITE_PAYER_PREFIX}'"
        " AND license_id NOT IN (SELECT id FROM licenses)",
    ),
    (
        "call ids billed more than once",
        "SELECT COUNT(*) FROM (SELECT call_id FROM ledger GROUP BY call_id HAVING COUNT(*) > 1) AS twice",
    ),
    (
        "idempotency keys held twice by one payer",
        "SELECT COUNT(*) FROM (SELECT payer, key FROM idempotency GROUP BY payer, key HAVING COUNT(*) > 1)"
        " AS twice",
    ),
    (
        "stored answers (idempotency keys done) whose call has no ledger row",
        "SELECT COUNT(*) FROM idempotency WHERE state = 'done'"
        " AND call_id NOT IN (SELECT call_id FROM ledger)",
    ),
)


@dataclass
class LedgerCheck:
    rows: int = 0
    licenses: int = 0
    amount_micros: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_ledger(db: Database) -> LedgerCheck:
    """Every problem found in ``db``'s ledger, each named with how many rows it concerns."""
    result = LedgerCheck()
    version = schema_version(db)
    if version != LATEST:
        result.problems.append(f"schema version {version}, not this release's {LATEST}: run the gateway once")
        return result
    with db.transaction(write=False) as tx:
        if db.dialect == "sqlite":
            result.problems += _sqlite_file_problems(tx)
        for what, sql in _ROW_CHECKS:
            (count,) = tx.execute(sql).fetchone()
            if count:
                result.problems.append(f"{count} {what}")
        rows, payers, amount = tx.execute(
            "SELECT COUNT(*), COUNT(DISTINCT license_id), COALESCE(SUM(amount_micros), 0) FROM ledger"
        ).fetchone()
    result.rows, result.licenses, result.amount_micros = int(rows), int(payers), int(amount)
    return result


def _sqlite_file_problems(tx: Transaction) -> list[str]:
    problems = [
        f"the database file: {message}"
        for (message,) in tx.execute("PRAGMA integrity_check").fetchall()
        if message != "ok"
    ]
    broken = tx.execute("PRAGMA foreign_key_check").fetchall()
    if broken:
        tables = sorted({row[0] for row in broken})
        problems.append(f"{len(broken)} rows referring to rows that do not exist (in {', '.join(tables)})")
    return problems
