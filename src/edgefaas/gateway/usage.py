"""Usage across sites: every edge's billed calls rolled up at its cloud, exactly once each.

A call is billed once, in the ledger of the site its caller entered. An edge copies its ledger
rows into ``usage_outbox``, numbering them 1, 2, 3... in the order it copies them (one writer at
a time), and pushes them from the first number the cloud has not acknowledged. The cloud keeps
them in ``site_usage`` under (site, number), with the call id unique per site too, and answers
with the highest number up to which it holds every record. So:

- a push lost on the way, or its answer lost, is pushed again, and storing it twice changes
  nothing (the same number with the same call id);
- a partition only delays the roll-up: the outbox keeps every row until the cloud has it;
- a record under a number the cloud already holds for another call is refused (409): that
  edge's numbering started again (its database replaced), which must be seen, not summed.

Rows are copied by looking for ledger rows not yet in the outbox: a row committed late (a long
call) is copied whenever it appears, whatever its start time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .database import Database
from .errors import ApiError

_LOCK_KEY = 0x6566757361676521  # pg_advisory_xact_lock for numbering ("efusage!")
ACKED_KEY = "usage_acked"
COLUMNS = "call_id, license_id, function, started_at, duration_us, status, amount_micros"
# Ledger rows a cloud writes for calls it ran for a site: billed at that site, not here.
SITE_PAYER_PREFIX = "site:"
SITE_PAYERS = f"{SITE_PAYER_PREFIX}%"  # LIKE pattern


@dataclass(frozen=True)
class UsageRecord:
    seq: int
    call_id: str
    license_id: str
    function: str
    started_at: float
    duration_us: int
    status: int
    amount_micros: int

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "call_id": self.call_id,
            "license_id": self.license_id,
            "function": self.function,
            "started_at": self.started_at,
            "duration_us": self.duration_us,
            "status": self.status,
            "amount_micros": self.amount_micros,
        }


def read_state(db: Database, key: str) -> str | None:
    with db.transaction(write=False) as tx:
        row = tx.execute("SELECT value FROM site_state WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def write_state(db: Database, key: str, value: str) -> None:
    with db.transaction() as tx:
        tx.execute(
            "INSERT INTO site_state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = ?",
            (key, value, value),
        )


class Outbox:
    """An edge's numbered copy of its ledger, and how far its cloud has acknowledged it."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def fill(self) -> int:
        """Number the ledger rows not copied yet; how many were."""
        with self.db.transaction() as tx:
            if self.db.dialect == "postgresql":
                tx.execute("SELECT pg_advisory_xact_lock(?)", (_LOCK_KEY,))
            (last,) = tx.execute("SELECT COALESCE(MAX(seq), 0) FROM usage_outbox").fetchone()
            # The pattern as a parameter: psycopg reads a literal % as a placeholder.
            rows = tx.execute(
                f"SELECT {COLUMNS} FROM ledger l WHERE license_id NOT LIKE ?"
                " AND NOT EXISTS (SELECT 1 FROM usage_outbox o WHERE o.call_id = l.call_id)"
                " ORDER BY started_at, call_id",
                (SITE_PAYERS,),
            ).fetchall()
            for number, row in enumerate(rows, start=int(last) + 1):
                tx.execute(
                    f"INSERT INTO usage_outbox (seq, {COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (number, *row),
                )
        return len(rows)

    def acked(self) -> int:
        return int(read_state(self.db, ACKED_KEY) or 0)

    def set_acked(self, seq: int) -> None:
        write_state(self.db, ACKED_KEY, str(seq))

    def pending(self, after: int, limit: int = 500) -> list[UsageRecord]:
        with self.db.transaction(write=False) as tx:
            rows = tx.execute(
                f"SELECT seq, {COLUMNS} FROM usage_outbox WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)
            ).fetchall()
        return [
            UsageRecord(int(r[0]), r[1], r[2], r[3], float(r[4]), int(r[5]), int(r[6]), int(r[7]))
            for r in rows
        ]

    def counts(self) -> tuple[int, int]:
        """(records numbered, the highest number)."""
        with self.db.transaction(write=False) as tx:
            count, last = tx.execute("SELECT COUNT(*), COALESCE(MAX(seq), 0) FROM usage_outbox").fetchone()
        return int(count), int(last)


USAGE_PUSH = {
    "type": "object",
    "required": ["records"],
    "additionalProperties": False,
    "properties": {
        "records": {
            "type": "array",
            "maxItems": 1000,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": [
                    "seq",
                    "call_id",
                    "license_id",
                    "function",
                    "started_at",
                    "duration_us",
                    "status",
                    "amount_micros",
                ],
                "properties": {
                    "seq": {"type": "integer", "minimum": 1},
                    "call_id": {"type": "string", "minLength": 1, "maxLength": 128},
                    "license_id": {"type": "string", "minLength": 1, "maxLength": 64},
                    "function": {"type": "string", "minLength": 1, "maxLength": 63},
                    "started_at": {"type": "number", "minimum": 1},
                    "duration_us": {"type": "integer", "minimum": 0},
                    "status": {"type": "integer", "minimum": 100, "maximum": 599},
                    "amount_micros": {"type": "integer", "minimum": 0},
                },
            },
        }
    },
}


class SiteUsage:
    """The cloud's store of its edges' usage records, and the roll-up per license."""

    def __init__(self, db: Database, own_site: str) -> None:
        self.db = db
        self.own_site = own_site

    def record(self, site: str, records: list[dict[str, Any]], now: float) -> int:
        """Store ``records`` of ``site`` (those held already change nothing); the number up to
        which every record of the site is held. ApiError 409 for a number reused for another call."""
        with self.db.transaction() as tx:
            for r in records:
                tx.execute(
                    f"INSERT INTO site_usage (site, seq, {COLUMNS}, received_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    (site, r["seq"], r["call_id"], r["license_id"], r["function"], r["started_at"],
                     r["duration_us"], r["status"], r["amount_micros"], now),
                )  # fmt: skip
                held = tx.execute(
                    "SELECT call_id FROM site_usage WHERE site = ? AND seq = ?", (site, r["seq"])
                ).fetchone()
                if held is None or held[0] != r["call_id"]:
                    holds = "that call under another number" if held is None else f"{held[0]!r} under it"
                    raise ApiError(
                        409,
                        f"site {site!r}: usage record {r['seq']} is call {r['call_id']!r}, but the cloud "
                        f"holds {holds}; the site's numbering started again (its database replaced?) "
                        "and needs an operator",
                    )
            return self._contiguous(tx, site)

    @staticmethod
    def _contiguous(tx: Any, site: str) -> int:
        count, last = tx.execute(
            "SELECT COUNT(*), COALESCE(MAX(seq), 0) FROM site_usage WHERE site = ?", (site,)
        ).fetchone()
        if int(count) == int(last):
            return int(last)
        (gap,) = tx.execute(
            "SELECT MIN(seq) FROM site_usage s WHERE site = ? AND NOT EXISTS"
            " (SELECT 1 FROM site_usage t WHERE t.site = s.site AND t.seq = s.seq + 1)",
            (site,),
        ).fetchone()
        (first,) = tx.execute(
            "SELECT COUNT(*) FROM site_usage WHERE site = ? AND seq = 1", (site,)
        ).fetchone()
        return int(gap) if first else 0

    def acked(self, site: str) -> int:
        with self.db.transaction(write=False) as tx:
            return self._contiguous(tx, site)

    def rollup(self, license_id: str | None = None) -> dict[str, Any]:
        """Per license: calls, duration and amount at each site (the cloud's own ledger included)."""
        where, params = ("AND license_id = ?", (license_id,)) if license_id else ("", ())
        with self.db.transaction(write=False) as tx:
            remote = tx.execute(
                "SELECT license_id, site, COUNT(*), COALESCE(SUM(duration_us), 0),"
                f" COALESCE(SUM(amount_micros), 0) FROM site_usage WHERE 1 = 1 {where}"
                " GROUP BY license_id, site",
                params,
            ).fetchall()
            own = tx.execute(
                "SELECT license_id, COUNT(*), COALESCE(SUM(duration_us), 0), COALESCE(SUM(amount_micros), 0)"
                f" FROM ledger WHERE license_id NOT LIKE ? {where} GROUP BY license_id",
                (SITE_PAYERS, *params),
            ).fetchall()
        licenses: dict[str, dict[str, Any]] = {}
        rows = [(lic, site, n, d, a) for lic, site, n, d, a in remote]
        rows += [(lic, self.own_site, n, d, a) for lic, n, d, a in own]
        for lic, site, n, d, a in rows:
            entry = licenses.setdefault(lic, {"license": lic, "sites": {}, "calls": 0, "amount_micros": 0})
            entry["sites"][site] = {"calls": int(n), "duration_us": int(d), "amount_micros": int(a)}
            entry["calls"] += int(n)
            entry["amount_micros"] += int(a)
        return {"licenses": [licenses[k] for k in sorted(licenses)]}

    def sites(self) -> dict[str, int]:
        """Each edge site and the number up to which its usage is held."""
        with self.db.transaction(write=False) as tx:
            names = [row[0] for row in tx.execute("SELECT DISTINCT site FROM site_usage").fetchall()]
            return {name: self._contiguous(tx, name) for name in sorted(names)}
