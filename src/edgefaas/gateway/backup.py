"""Backup and restore of the gateway's database: plans, licenses, the ledger, verification keys,
and the sites' tables (a cloud's signed catalogue and the usage its edges sent; an edge's
numbered usage outbox and how far its cloud acknowledged it).

A backup is JSON lines: a header ``{"edgefaas_gateway_backup": FORMAT, "schema_version": N, ...}``,
one object per row (``{"plan": {...}}``, ``{"license": {...}}``, ``{"ledger": {...}}``,
``{"signing_key": {...}}``, ``{"catalogue": {...}}``, ``{"site_state": {...}}``,
``{"usage_outbox": {...}}``, ``{"site_usage": {...}}``), and a trailer ``{"end": {counts}}``
whose absence shows a cut-off file. An edge restored with its outbox and acknowledgement goes on
numbering where it was, so its cloud's roll-up stays exact; a backup made before the sites'
tables existed restores with them empty. Amounts stay integer micros and times epoch seconds,
so a restore is exact. Idempotency keys are not kept: they matter for minutes, not across a
restore.

Restoring writes into an empty database only (no licenses, no ledger entries, no site usage), in one
transaction; a non-empty one is refused, naming what it holds, so a restore cannot merge two
histories. Plans already there (a gateway seeds the default ones when it starts) are kept if
they are the same as the backup's and refused if they differ. Either dialect restores the
other's backup.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from .database import Database
from .ledger import LEDGER_COLUMNS
from .licensing.store import LICENSE_COLUMNS, PLAN_COLUMNS
from .migrations import LATEST
from .timestamps import iso_time
from .usage import COLUMNS as USAGE_COLUMNS

FORMAT = 1
_TABLES = {
    "plan": ("plans", PLAN_COLUMNS, "name"),
    "license": ("licenses", LICENSE_COLUMNS, "id"),
    "ledger": ("ledger", LEDGER_COLUMNS, "call_id"),
    "signing_key": ("signing_keys", "kid, algorithm, public_key, created_at", "kid"),
    "catalogue": (
        "catalogue",
        "function, version, sites, ever_sites, spec, payload, signature, published_at",
        "version",
    ),
    "site_state": ("site_state", "key, value", "key"),
    "usage_outbox": ("usage_outbox", f"seq, {USAGE_COLUMNS}", "seq"),
    "site_usage": ("site_usage", f"site, seq, {USAGE_COLUMNS}, received_at", "site, seq"),
}
# Licenses name plans: plans first.
_ORDER = ("plan", "license", "ledger", "signing_key", "catalogue", "site_state", "usage_outbox", "site_usage")
# What a database holds once it has been used: a restore over any of it would merge two histories.
_HISTORY = ("licenses", "ledger", "usage_outbox", "site_usage", "catalogue")


_HELD_AS = {
    "licenses": "licenses",
    "ledger": "ledger entries",
    "usage_outbox": "usage records to send",
    "site_usage": "usage records from sites",
    "catalogue": "catalogue entries",
}


class BackupError(Exception):
    """A backup that cannot be read or restored here; the message says why."""


def _names(columns: str) -> list[str]:
    return [c.strip() for c in columns.split(",")]


def _encode(value: Any) -> Any:
    if isinstance(value, bytes | memoryview):
        return {"base64": base64.b64encode(bytes(value)).decode("ascii")}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"base64"}:
        return base64.b64decode(value["base64"])
    return value


def dump(db: Database) -> Iterator[str]:
    """The backup of ``db``, line by line (each line one JSON object, no newline)."""
    counts: dict[str, int] = {}
    with db.transaction(write=False) as tx:  # one snapshot: the rows agree with each other
        if db.dialect == "postgresql":  # its default isolation sees each statement's own snapshot
            tx.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield json.dumps(
            {
                "edgefaas_gateway_backup": FORMAT,
                "schema_version": _version_in(tx),
                "created_at": iso_time(time.time()),
                "source": db.describe(),
            }
        )
        for kind in _ORDER:
            table, columns, key = _TABLES[kind]
            names = _names(columns)
            counts[kind] = 0
            for row in tx.execute(f"SELECT {columns} FROM {table} ORDER BY {key}").fetchall():
                counts[kind] += 1
                yield json.dumps({kind: {n: _encode(v) for n, v in zip(names, row, strict=True)}})
    yield json.dumps({"end": counts})


def _version_in(tx: Any) -> int:
    return int(tx.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0)


def write_backup(db: Database, out: TextIO) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in dump(db):
        out.write(line + "\n")
        record = json.loads(line)
        if "end" in record:
            counts = record["end"]
    return counts


def _read(lines: Iterable[str]) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    header: dict[str, Any] | None = None
    rows: dict[str, list[dict[str, Any]]] = {kind: [] for kind in _ORDER}
    end = None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            raise BackupError(f"line {number} is not JSON") from None
        if header is None:
            if not isinstance(record, dict) or "edgefaas_gateway_backup" not in record:
                raise BackupError(
                    "not an EdgeFaaS gateway backup: its first line has no edgefaas_gateway_backup"
                )
            if record["edgefaas_gateway_backup"] != FORMAT:
                raise BackupError(
                    f"backup format {record['edgefaas_gateway_backup']} is not this release's {FORMAT}"
                )
            header = record
            continue
        if end is not None:
            raise BackupError(f"line {number} follows the backup's end")
        if not isinstance(record, dict) or len(record) != 1:
            raise BackupError(f"line {number} is not one row")
        ((kind, value),) = record.items()
        if kind == "end":
            end = value
        elif kind in rows and isinstance(value, dict):
            rows[kind].append({k: _decode(v) for k, v in value.items()})
        else:
            raise BackupError(f"line {number}: unknown row kind {kind!r}")
    if header is None:
        raise BackupError("the backup is empty")
    if end is None:
        raise BackupError("the backup has no end line: it was cut off")
    found = {kind: len(rows[kind]) for kind in _ORDER}
    if {k: end.get(k, 0) for k in _ORDER} != found:
        raise BackupError(f"the backup's end line counts {end}, but it holds {found}")
    if int(header.get("schema_version", 0)) > LATEST:
        raise BackupError(
            f"the backup is of schema version {header['schema_version']}, newer than this gateway's {LATEST}"
        )
    return header, rows


def restore(db: Database, lines: Iterable[str]) -> dict[str, int]:
    """Restore a backup into ``db`` (migrated, and empty of licenses and ledger entries)."""
    _, rows = _read(lines)
    with db.transaction() as tx:
        held = {table: tx.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] for table in _HISTORY}
        if any(held.values()):
            what = ", ".join(f"{n} {_HELD_AS[t]}" for t, n in held.items() if n)
            raise BackupError(
                f"the database {db.describe()} is not empty ({what}): restore into an empty database"
            )
        for plan in rows["plan"]:
            existing = tx.execute(
                f"SELECT {PLAN_COLUMNS} FROM plans WHERE name = ?", (plan["name"],)
            ).fetchone()
            if existing is not None and list(existing) != [plan[n] for n in _names(PLAN_COLUMNS)]:
                raise BackupError(
                    f"the database already has a plan {plan['name']!r} that differs from the backup's"
                )
        for kind in _ORDER:
            table, columns, _ = _TABLES[kind]
            names = _names(columns)
            # Plans and keys a starting gateway seeds; the site's state is the backup's own.
            conflict = {
                "plan": f" ON CONFLICT ({names[0]}) DO NOTHING",
                "signing_key": f" ON CONFLICT ({names[0]}) DO NOTHING",
                "site_state": " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            }.get(kind, "")
            sql = f"INSERT INTO {table} ({columns}) VALUES ({', '.join('?' * len(names))}){conflict}"
            for row in rows[kind]:
                missing = [n for n in names if n not in row]
                if missing:
                    raise BackupError(f"a {kind} row lacks {', '.join(missing)}")
                tx.execute(sql, [row[n] for n in names])
    return {kind: len(rows[kind]) for kind in _ORDER}
