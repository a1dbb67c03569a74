"""Writing the blueprint's entries into a SONiC switch's Redis databases, owner by owner.

Everything on a SONiC switch is configured through CONFIG_DB: its daemons (caclmgrd,
bgpcfgd, ...) turn tables into running state. The blueprint adds entries only through
this module, so that it never rewrites what SONiC or an operator wrote:

- an owner's *owned* entries (`ACL_TABLE|EDGEFAAS_K3S`, its `ACL_RULE`s, ...) are written
  whole, and the ones it no longer lists are deleted;
- *shared* fields (`DEVICE_METADATA|localhost` `bgp_asn`) are set only when absent or
  already equal; a different value is refused and nothing at all is written;
- every entry an owner wrote is recorded in `<records>/<owner>.json`, so `remove` deletes
  exactly those and nothing else;
- the same keys are updated in `/etc/sonic/config_db.json`, which SONiC loads at boot, so a
  reboot keeps them without a `config save` that would persist others' unsaved changes.

A wanted document is `{"owned": {"TABLE|key": {field: value}}, "shared": {...}}`. Keys are
CONFIG_DB's unless prefixed with another database's name (`STATE_DB:ADVERTISE_NETWORK_TABLE|
10.1.0.0/24`). A list value is stored as SONiC's ConfigDBConnector stores lists: field
`name@`, values joined by commas. An entry with no fields is stored as `NULL`=`NULL`, as
ConfigDBConnector does, since Redis has no empty hashes.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import redis

SOCKET = Path("/var/run/redis/redis.sock")
DATABASE_CONFIG = Path("/var/run/redis/sonic-db/database_config.json")
CONFIG_DB_JSON = Path("/etc/sonic/config_db.json")
RECORDS = Path("/etc/edgefaas/config_db")

# SONiC's database numbers (sonic-buildimage dockers/docker-database/database_config.json.j2),
# used where a device has no layout file.
DEFAULT_DATABASES = {
    "APPL_DB": 0,
    "ASIC_DB": 1,
    "COUNTERS_DB": 2,
    "LOGLEVEL_DB": 3,
    "CONFIG_DB": 4,
    "FLEX_COUNTER_DB": 5,
    "STATE_DB": 6,
}
# The databases wanted documents and `set`/`del` may write: both use "|" between table and key.
WRITABLE = ("CONFIG_DB", "STATE_DB")
NULL_FIELD = "NULL"
OWNER_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class ConfigDbError(Exception):
    """The database could not be asked (exit 2): nothing was written."""


class WantedError(ValueError):
    """A wanted document that is not one: refused before the database is asked."""


class Refused(Exception):
    """Applying would overwrite a value someone else set: nothing was written."""

    def __init__(self, conflicts: list[str]) -> None:
        super().__init__("; ".join(conflicts))
        self.conflicts = conflicts


Fields = dict[str, str]


@dataclass(frozen=True)
class Wanted:
    owned: dict[str, Fields]
    shared: dict[str, Fields]


@dataclass
class Change:
    """One key's write: the fields to set, the fields to delete, or the whole key to delete."""

    key: str
    action: str  # "create", "update", "delete", "set-shared", "unset-shared", "persist"
    set: Fields = field(default_factory=dict)
    delete_fields: list[str] = field(default_factory=list)
    delete_key: bool = False
    # What /etc/sonic/config_db.json should hold for this key afterwards (CONFIG_DB keys):
    # the whole entry for an owned key (None: deleted), or for a shared key the fields set
    # (merged) and the fields removed.
    persist_entry: Fields | None = None
    persist_merge: bool = False

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": self.key, "action": self.action}
        if self.set:
            out["set"] = self.set
        if self.delete_fields:
            out["delete_fields"] = self.delete_fields
        return out


@dataclass
class Plan:
    changes: list[Change]
    conflicts: list[str]
    left_alone: list[str]
    record: dict[str, dict[str, Fields]]

    @property
    def differs(self) -> bool:
        return bool(self.changes or self.conflicts)


# --- wanted documents -------------------------------------------------------------------------


def check_owner(owner: str) -> str:
    if not OWNER_PATTERN.match(owner):
        raise WantedError(f"owner {owner!r}: use lower-case letters, digits, '-' and '_' (at most 63)")
    return owner


def split_key(key: str) -> tuple[str, str]:
    """`STATE_DB:TABLE|k` -> ("STATE_DB", "TABLE|k"); a key without a database is CONFIG_DB's."""
    for db in WRITABLE:
        if key.startswith(db + ":"):
            return db, key[len(db) + 1 :]
    return "CONFIG_DB", key


def _check_key(key: str) -> None:
    _db, bare = split_key(key)
    table, sep, rest = bare.partition("|")
    if not sep or not table or not rest or not re.match(r"^[A-Z][A-Z0-9_]*$", table):
        raise WantedError(f"key {key!r}: expected TABLE|key (TABLE in capitals, as SONiC names it)")


def redis_fields(key: str, fields: Any) -> Fields:
    """Fields as Redis holds them: lists as `name@` = comma-joined values, numbers as text."""
    if not isinstance(fields, Mapping):
        raise WantedError(f"{key}: the fields must be an object, not {type(fields).__name__}")
    out: Fields = {}
    for name, value in fields.items():
        if not isinstance(name, str) or not name or name == NULL_FIELD:
            raise WantedError(f"{key}: field name {name!r} is not allowed")
        if isinstance(value, list):
            if not all(isinstance(v, str) and "," not in v for v in value):
                raise WantedError(f"{key} {name}: list values must be strings without commas")
            out[name if name.endswith("@") else name + "@"] = ",".join(value)
        elif isinstance(value, bool) or not isinstance(value, str | int):
            raise WantedError(f"{key} {name}: {value!r} is not a string, a number or a list of strings")
        else:
            out[name] = str(value)
    return out


def parse_wanted(document: Any) -> Wanted:
    """Check a wanted document and bring its fields into Redis's form."""
    if not isinstance(document, Mapping):
        raise WantedError("the wanted document must be an object with 'owned' and/or 'shared'")
    unknown = set(document) - {"owned", "shared"}
    if unknown:
        raise WantedError(f"unknown section(s) {', '.join(sorted(unknown))}: only 'owned' and 'shared'")
    sections: dict[str, dict[str, Fields]] = {}
    for section in ("owned", "shared"):
        entries = document.get(section) or {}
        if not isinstance(entries, Mapping):
            raise WantedError(f"'{section}' must map TABLE|key to fields")
        sections[section] = {}
        for key, fields in entries.items():
            _check_key(key)
            sections[section][key] = redis_fields(key, fields)
    both = set(sections["owned"]) & set(sections["shared"])
    if both:
        raise WantedError(f"{', '.join(sorted(both))} both owned and shared")
    return Wanted(owned=sections["owned"], shared=sections["shared"])


def typed_entry(fields: Mapping[str, str]) -> dict[str, Any]:
    """An entry as SONiC's config_db.json holds it: `name@` fields become JSON lists."""
    out: dict[str, Any] = {}
    for name, value in fields.items():
        if name == NULL_FIELD:
            continue
        if name.endswith("@"):
            out[name[:-1]] = value.split(",") if value else []
        else:
            out[name] = value
    return out


def _stored(fields: Fields) -> Fields:
    return dict(fields) if fields else {NULL_FIELD: NULL_FIELD}


# --- planning (pure: current state in, changes out) ----------------------------------------------


def plan(
    owner: str,
    wanted: Wanted,
    record: Mapping[str, Mapping[str, Fields]],
    current: Callable[[str], Fields | None],
    persisted: Callable[[str], dict[str, Any] | None],
    related: Callable[[str], list[str]] = lambda key: [],
) -> Plan:
    """What applying `wanted` for `owner` changes, given its `record` of what it wrote before.

    `current(key)` is the key's hash (None: absent); `persisted(key)` its entry in
    config_db.json (None: absent); `related(key)` the keys that belong to an owned table
    (an ACL table's rules), so that ones the owner did not write are reported.
    """
    recorded_owned = dict(record.get("owned", {}))
    recorded_shared = {k: dict(v) for k, v in record.get("shared", {}).items()}
    changes: list[Change] = []
    conflicts: list[str] = []
    left_alone: list[str] = []
    new_shared: dict[str, Fields] = {}

    for key, fields in wanted.owned.items():
        now = current(key)
        if now is not None and key not in recorded_owned:
            conflicts.append(f"{key} exists and was not written by {owner}: it is left alone")
            continue
        stored = _stored(fields)
        is_config = split_key(key)[0] == "CONFIG_DB"
        entry = typed_entry(fields)
        if now is None:
            changes.append(Change(key, "create", set=stored, persist_entry=entry))
        elif now != stored:
            to_set = {k: v for k, v in stored.items() if now.get(k) != v}
            gone = sorted(set(now) - set(stored))
            changes.append(Change(key, "update", set=to_set, delete_fields=gone, persist_entry=entry))
        elif is_config and persisted(key) != entry:
            changes.append(Change(key, "persist", persist_entry=entry))

    for key in recorded_owned:
        if key in wanted.owned:
            continue
        is_config = split_key(key)[0] == "CONFIG_DB"
        if current(key) is not None:
            changes.append(Change(key, "delete", delete_key=True, persist_entry=None))
        elif is_config and persisted(key) is not None:
            changes.append(Change(key, "persist", delete_key=True, persist_entry=None))

    for key, fields in wanted.shared.items():
        now = current(key) or {}
        mine = recorded_shared.get(key, {})
        to_set: Fields = {}
        for name, value in fields.items():
            have = now.get(name)
            if have is None:
                to_set[name] = value
            elif have != value:
                conflicts.append(
                    f"{key} field {name} is {have!r}, {owner} wants {value!r}: "
                    "it is shared and is never overwritten"
                )
                continue
            if have is None or name in mine:
                new_shared.setdefault(key, {})[name] = value
        ours = new_shared.get(key, {})
        stale = sorted(name for name in mine if name not in fields and now.get(name) == mine[name])
        is_config = split_key(key)[0] == "CONFIG_DB"
        saved = (persisted(key) or {}) if is_config else {}
        unsaved = is_config and any(saved.get(n) != v for n, v in typed_entry(ours).items())
        if to_set or stale or unsaved:
            changes.append(
                Change(
                    key,
                    "set-shared" if to_set or stale else "persist",
                    set=to_set,
                    delete_fields=stale,
                    persist_entry=typed_entry(ours),
                    persist_merge=True,
                )
            )

    for key, mine in recorded_shared.items():
        if key in wanted.shared:
            continue
        now = current(key) or {}
        ours = sorted(name for name, value in mine.items() if now.get(name) == value)
        changed_by_others = sorted(set(mine) - set(ours))
        for name in changed_by_others:
            if name in now:
                left_alone.append(f"{key} field {name} was changed by someone else since {owner} set it")
        if ours:
            changes.append(
                Change(key, "unset-shared", delete_fields=ours, persist_entry={}, persist_merge=True)
            )

    claimed = set(wanted.owned) | set(recorded_owned)
    for key in wanted.owned:
        for other in related(key):
            if other not in claimed:
                left_alone.append(f"{other} belongs to {owner}'s {key} but {owner} did not write it")

    record_out = {"owned": {k: v for k, v in wanted.owned.items() if k not in _conflicted(conflicts)}}
    record_out["shared"] = new_shared
    return Plan(changes=changes, conflicts=conflicts, left_alone=left_alone, record=record_out)


def _conflicted(conflicts: list[str]) -> set[str]:
    return {c.split(" ", 1)[0] for c in conflicts}


def related_pattern(key: str) -> str | None:
    """The keys that belong to an owned key: an ACL table's rules."""
    db, bare = split_key(key)
    table, _sep, name = bare.partition("|")
    if db == "CONFIG_DB" and table == "ACL_TABLE":
        return f"ACL_RULE|{_glob_escape(name)}|*"
    return None


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


# --- the device ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Paths:
    socket: Path = SOCKET
    database_config: Path = DATABASE_CONFIG
    config_db_json: Path = CONFIG_DB_JSON
    records: Path = RECORDS


def database_numbers(layout: Path) -> dict[str, int]:
    """Database name -> number, from SONiC's database_config.json, SONiC's defaults where absent."""
    numbers = dict(DEFAULT_DATABASES)
    try:
        document = json.loads(layout.read_text())
    except FileNotFoundError:
        return numbers
    except (OSError, ValueError) as exc:
        raise ConfigDbError(f"cannot read the database layout {layout}: {exc}") from exc
    for name, spec in (document.get("DATABASES") or {}).items():
        if isinstance(spec, Mapping) and isinstance(spec.get("id"), int):
            numbers[name] = spec["id"]
    return numbers


class Databases:
    """Connections to the switch's Redis databases, by SONiC name."""

    def __init__(self, paths: Paths) -> None:
        # Imported here: the `edgefaas` command runs on devices without the sonic extra.
        import redis

        self._redis = redis
        self.paths = paths
        self.numbers = database_numbers(paths.database_config)
        self._clients: dict[str, redis.Redis] = {}

    def client(self, db: str) -> redis.Redis:
        if db not in self.numbers:
            raise ConfigDbError(f"unknown database {db}: one of {', '.join(sorted(self.numbers))}")
        if db not in self._clients:
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            client = self._redis.Redis(
                unix_socket_path=str(self.paths.socket),
                # A socket nobody listens on is an answer: retrying it only delays the error.
                retry=Retry(NoBackoff(), 0),
                db=self.numbers[db],
                decode_responses=True,
                socket_timeout=5,
                socket_connect_timeout=5,
            )
            try:
                client.ping()
            except self._redis.exceptions.RedisError as exc:
                reason = str(exc).rstrip(".")
                raise ConfigDbError(
                    f"{db} does not answer on {self.paths.socket}: {reason}. Is redis-server running?"
                ) from exc
            self._clients[db] = client
        return self._clients[db]

    def hash(self, key: str) -> Fields | None:
        db, bare = split_key(key)
        try:
            fields = self.client(db).hgetall(bare)
        except self._redis.exceptions.ResponseError as exc:  # not a hash: someone else's, left alone
            raise ConfigDbError(f"{key} is not a hash in {db}: {exc}") from exc
        except self._redis.exceptions.RedisError as exc:
            raise ConfigDbError(f"{db} on {self.paths.socket} failed: {exc}") from exc
        return fields or None

    def entry(self, db: str, key: str) -> dict[str, str]:
        client = self.client(db)
        try:
            kind = client.type(key)
            return client.hgetall(key) if kind == "hash" else {"(type)": kind}
        except self._redis.exceptions.RedisError as exc:
            raise ConfigDbError(f"{db} on {self.paths.socket} failed: {exc}") from exc

    def keys(self, db: str, pattern: str) -> list[str]:
        try:
            return sorted(self.client(db).scan_iter(match=pattern, count=1000))
        except self._redis.exceptions.RedisError as exc:
            raise ConfigDbError(f"{db} on {self.paths.socket} failed: {exc}") from exc

    def write(self, change: Change) -> None:
        """One key's change in one MULTI/EXEC: readers never see it half done."""
        db, bare = split_key(change.key)
        try:
            with self.client(db).pipeline(transaction=True) as pipe:
                if change.delete_key:
                    pipe.delete(bare)
                else:
                    if change.set:
                        pipe.hset(bare, mapping=change.set)
                    if change.delete_fields:
                        pipe.hdel(bare, *change.delete_fields)
                pipe.execute()
        except self._redis.exceptions.RedisError as exc:
            raise ConfigDbError(f"writing {change.key} to {db} on {self.paths.socket} failed: {exc}") from exc


def _write_json_atomically(path: Path, document: Any, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(document, out, indent=4, sort_keys=True)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Persisted:
    """/etc/sonic/config_db.json: read once, changed only for the keys given."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.document: dict[str, Any] = json.loads(path.read_text())
            self.mode = path.stat().st_mode & 0o7777
        except FileNotFoundError:
            self.document, self.mode = {}, 0o644
        except (OSError, ValueError) as exc:
            raise ConfigDbError(f"cannot read {path}: {exc}") from exc
        if not isinstance(self.document, dict):
            raise ConfigDbError(f"{path} does not hold a JSON object")

    def entry(self, key: str) -> dict[str, Any] | None:
        table, _sep, name = split_key(key)[1].partition("|")
        found = (self.document.get(table) or {}).get(name)
        return found if isinstance(found, dict) else None

    def update(self, changes: list[Change]) -> bool:
        touched = False
        for change in changes:
            if split_key(change.key)[0] != "CONFIG_DB":
                continue
            table, _sep, name = change.key.partition("|")
            entries = self.document.setdefault(table, {})
            if change.persist_merge:
                entry = dict(entries.get(name) or {})
                for gone in change.delete_fields:
                    entry.pop(gone[:-1] if gone.endswith("@") else gone, None)
                entry.update(change.persist_entry or {})
                if entry or name in entries:
                    entries[name] = entry
            elif change.persist_entry is None:
                entries.pop(name, None)
            else:
                entries[name] = change.persist_entry
            if not entries:
                self.document.pop(table, None)
            touched = True
        return touched

    def save(self) -> None:
        _write_json_atomically(self.path, self.document, self.mode)


def _record_path(paths: Paths, owner: str) -> Path:
    return paths.records / f"{check_owner(owner)}.json"


def read_record(paths: Paths, owner: str) -> dict[str, dict[str, Fields]]:
    path = _record_path(paths, owner)
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        return {"owned": {}, "shared": {}}
    except (OSError, ValueError) as exc:
        raise ConfigDbError(f"cannot read {owner}'s record {path}: {exc}") from exc
    return {"owned": document.get("owned") or {}, "shared": document.get("shared") or {}}


def _save_record(paths: Paths, owner: str, record: Mapping[str, Mapping[str, Fields]]) -> None:
    path = _record_path(paths, owner)
    if not record.get("owned") and not record.get("shared"):
        path.unlink(missing_ok=True)
        return
    _write_json_atomically(path, {"owner": owner, **record}, 0o644)


def _union(a: Mapping[str, Mapping[str, Fields]], b: Mapping[str, Mapping[str, Fields]]) -> dict:
    shared: dict[str, Fields] = {k: dict(v) for k, v in a.get("shared", {}).items()}
    for key, fields in b.get("shared", {}).items():
        shared.setdefault(key, {}).update(fields)
    return {"owned": {**a.get("owned", {}), **b.get("owned", {})}, "shared": shared}


def plan_on_device(databases: Databases, owner: str, wanted: Wanted) -> Plan:
    databases.client("CONFIG_DB")  # a database that does not answer stops everything here
    persisted = Persisted(databases.paths.config_db_json)

    def related(key: str) -> list[str]:
        pattern = related_pattern(key)
        return databases.keys("CONFIG_DB", pattern) if pattern else []

    record = read_record(databases.paths, owner)
    return plan(owner, wanted, record, databases.hash, persisted.entry, related)


def apply(databases: Databases, owner: str, wanted: Wanted) -> Plan:
    """Make the device hold `wanted` for `owner`; raises Refused (nothing written) on conflicts."""
    check_owner(owner)
    found = plan_on_device(databases, owner, wanted)
    if found.conflicts:
        raise Refused(found.conflicts)
    if found.changes:
        # Recorded before the writes, so a run cut short never leaves an entry nobody owns.
        before = read_record(databases.paths, owner)
        _save_record(databases.paths, owner, _union(before, found.record))
        for change in found.changes:
            if change.action != "persist":
                databases.write(change)
        persisted = Persisted(databases.paths.config_db_json)
        if persisted.update(found.changes):
            persisted.save()
    _save_record(databases.paths, owner, found.record)
    return found


def remove(databases: Databases, owner: str) -> Plan:
    """Delete every entry `owner` wrote (its record), and the record."""
    return apply(databases, owner, Wanted(owned={}, shared={}))


def get(databases: Databases, db: str, pattern: str) -> dict[str, Any]:
    """The hashes whose keys match `pattern`; another type is shown as {"(type)": its type}."""
    return {key: databases.entry(db, key) for key in databases.keys(db, pattern)}
