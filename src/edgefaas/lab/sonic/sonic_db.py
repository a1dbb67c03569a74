"""SONiC's database on a lab device: its layout, its boot-time load, and table watches.

On a SONiC switch the `database` container serves Redis with the layout in
/var/run/redis/sonic-db/database_config.json, and config-setup loads
/etc/sonic/config_db.json into CONFIG_DB at boot (lists become `field@` hashes fields
holding the comma-joined values, as ConfigDBConnector stores them). In the lab, Debian's
redis-server is the database and this module, run by a oneshot unit, writes the layout
and loads CONFIG_DB; the stand-ins use its readers and its keyspace watch.

Runs on the device with the standard library and python3-redis only.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterable

SOCKET = "/var/run/redis/redis.sock"
LAYOUT_PATH = "/var/run/redis/sonic-db/database_config.json"
CONFIG_DB_JSON = "/etc/sonic/config_db.json"
# What SONiC's database container enables, so daemons learn of every change.
NOTIFY_KEYSPACE_EVENTS = "AKE"
# config-setup sets this once CONFIG_DB holds config_db.json; SONiC's daemons wait for it.
INITIALIZED_KEY = "CONFIG_DB_INITIALIZED"

# (name, id, separator) exactly as SONiC's docker-database/database_config.json.j2.
DATABASES = (
    ("APPL_DB", 0, ":"),
    ("ASIC_DB", 1, ":"),
    ("COUNTERS_DB", 2, ":"),
    ("LOGLEVEL_DB", 3, ":"),
    ("CONFIG_DB", 4, "|"),
    ("PFC_WD_DB", 5, ":"),
    ("FLEX_COUNTER_DB", 5, ":"),
    ("STATE_DB", 6, "|"),
    ("SNMP_OVERLAY_DB", 7, "|"),
)
DB_ID = {name: number for name, number, _ in DATABASES}
SEPARATOR = {name: sep for name, _, sep in DATABASES}

Tables = dict[str, dict[str, dict[str, str]]]


def layout(socket: str = SOCKET) -> dict:
    """SONiC's database_config.json for a single local Redis instance."""
    return {
        "INSTANCES": {
            "redis": {
                "hostname": "127.0.0.1",
                "port": 6379,
                "unix_socket_path": socket,
                "persistence_for_warm_boot": "yes",
            }
        },
        "DATABASES": {
            name: {"id": number, "separator": sep, "instance": "redis"} for name, number, sep in DATABASES
        },
        "VERSION": "1.0",
    }


def to_hash(entry: dict) -> dict[str, str]:
    """One config_db.json entry as the Redis hash ConfigDBConnector writes."""
    fields: dict[str, str] = {}
    for field, value in entry.items():
        if isinstance(value, list):
            fields[f"{field}@"] = ",".join(str(v) for v in value)
        else:
            fields[field] = str(value)
    # Redis has no empty hash; SONiC keeps an entry without fields as NULL: NULL.
    return fields or {"NULL": "NULL"}


def from_hash(fields: dict[str, str]) -> dict[str, str | list[str]]:
    """A Redis hash as ConfigDBConnector reads it: `field@` back into a list."""
    entry: dict[str, str | list[str]] = {}
    for field, value in fields.items():
        if field == "NULL":
            continue
        if field.endswith("@"):
            entry[field[:-1]] = value.split(",") if value else []
        else:
            entry[field] = value
    return entry


def flatten(config: dict, separator: str = "|") -> dict[str, dict[str, str]]:
    """config_db.json ({TABLE: {key: {field: value}}}) as Redis keys and hashes."""
    keys: dict[str, dict[str, str]] = {}
    for table, entries in config.items():
        if not isinstance(entries, dict):
            continue
        for key, entry in entries.items():
            keys[f"{table}{separator}{key}"] = to_hash(entry if isinstance(entry, dict) else {})
    return keys


def load(client, config: dict) -> int:
    """Replace CONFIG_DB (the client's database) with `config`; return how many keys."""
    keys = flatten(config)
    pipe = client.pipeline(transaction=True)
    pipe.flushdb()
    for key, fields in keys.items():
        pipe.hset(key, mapping=fields)
    pipe.set(INITIALIZED_KEY, "1")
    pipe.execute()
    return len(keys)


def read_table(client, table: str, separator: str = "|") -> dict[str, dict]:
    """Every entry of `table` as {key: entry} (lists decoded), keys without the table name."""
    prefix = f"{table}{separator}"
    entries = {}
    for name in client.scan_iter(match=f"{prefix}*", count=1000):
        if client.type(name) != "hash":
            continue
        entries[name[len(prefix) :]] = from_hash(client.hgetall(name))
    return entries


def read_tables(client, tables: Iterable[str], separator: str = "|") -> Tables:
    return {table: read_table(client, table, separator) for table in tables}


def connect(db: str, socket: str = SOCKET):
    import redis

    return redis.Redis(unix_socket_path=socket, db=DB_ID[db], decode_responses=True)


def keyspace_patterns(watched: dict[str, Iterable[str]]) -> list[str]:
    """Keyspace-notification channels for {db name: tables}."""
    return [
        f"__keyspace@{DB_ID[db]}__:{table}{SEPARATOR[db]}*"
        for db, tables in watched.items()
        for table in tables
    ]


def drain(pubsub, quiet: float = 0.1, limit: float = 0.5) -> int:
    """After one notification, consume the rest of its burst; return how many there were.

    A burst (a deploy writing a table's entries one by one) becomes one rebuild: it ends
    after `quiet` s without a notification, and `limit` bounds how long a steady stream
    can hold a rebuild back.
    """
    count, started = 1, time.monotonic()
    while time.monotonic() - started < limit:
        if pubsub.get_message(ignore_subscribe_messages=True, timeout=quiet) is None:
            break
        count += 1
    return count


def _rebuild_when_initialized(client, rebuild: Callable[[], bool]) -> bool:
    # After the database restarts it is empty until the boot unit reloads it; rebuilding
    # from an empty CONFIG_DB would withdraw everything meanwhile.
    return client.get(INITIALIZED_KEY) == "1" and rebuild()


def run_forever(
    name: str,
    watched: dict[str, Iterable[str]],
    rebuild: Callable[[], bool],
    log: Callable[[str], None],
    socket: str = SOCKET,
    retry: float = 2.0,
) -> None:
    """Rebuild on start, after each reconnect and after every burst of changes.

    `rebuild` returns False when it could not apply (a daemon not up yet): it is tried
    again every `retry` s until it succeeds. A database that is down or restarting is
    waited for, never a reason to exit: systemd would only restart us into the same wait.
    """
    import redis

    while True:
        try:
            client = connect("CONFIG_DB", socket)
            client.ping()
            pubsub = client.pubsub()
            pubsub.psubscribe(*keyspace_patterns(watched))
            done = _rebuild_when_initialized(client, rebuild)
            while True:
                message = pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0 if done else retry)
                if message is not None:
                    drain(pubsub)
                elif done:
                    continue
                done = _rebuild_when_initialized(client, rebuild)
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            log(f"{name}: database unavailable ({exc}); retrying")
            time.sleep(1)


def wait_for_database(socket: str = SOCKET, timeout: float = 60.0) -> None:
    import redis

    deadline = time.monotonic() + timeout
    while True:
        try:
            connect("CONFIG_DB", socket).ping()
            return
        except (redis.ConnectionError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def boot(socket: str = SOCKET, layout_path: str = LAYOUT_PATH, config_path: str = CONFIG_DB_JSON) -> str:
    """What config-setup does at boot: the layout file, then CONFIG_DB from config_db.json."""
    os.makedirs(os.path.dirname(layout_path), exist_ok=True)
    tmp = f"{layout_path}.tmp"
    with open(tmp, "w") as out:
        json.dump(layout(socket), out, indent=4)
        out.write("\n")
    os.replace(tmp, layout_path)
    wait_for_database(socket)
    client = connect("CONFIG_DB", socket)
    # The database keeps nothing across its own restarts (no persistence), so a set flag
    # means this unit alone was restarted: reloading would drop changes not yet saved.
    if client.get(INITIALIZED_KEY) == "1":
        return f"sonic-db: wrote {layout_path}; CONFIG_DB already initialized, not reloaded"
    with open(config_path) as f:
        config = json.load(f)
    count = load(client, config)
    return f"sonic-db: wrote {layout_path}; loaded {count} keys from {config_path} into CONFIG_DB"


if __name__ == "__main__":
    if sys.argv[1:] != ["boot"]:
        sys.exit("usage: sonic_db.py boot")
    print(boot(), flush=True)
