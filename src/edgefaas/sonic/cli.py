"""`edgefaas config-db ...`: read and write a SONiC switch's Redis databases, run on the switch."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from edgefaas.sonic import config_db
from edgefaas.sonic.config_db import ConfigDbError, Databases, Paths, Refused, WantedError

# Exit statuses of diff (apply and remove share them): the deploys' fact reads them.
SAME, DIFFERS, CANNOT_TELL = 0, 1, 2


def _print(document: Any) -> None:
    click.echo(json.dumps(document, indent=2, sort_keys=True))


def _cannot(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    _print({"error": message})
    sys.exit(CANNOT_TELL)


def _wanted(source: str) -> config_db.Wanted:
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
        return config_db.parse_wanted(json.loads(text))
    except OSError as exc:
        _cannot(f"cannot read {source}: {exc.strerror}")
    except ValueError as exc:  # JSON errors and WantedError
        _cannot(f"{'stdin' if source == '-' else source}: {exc}")


def _owner(owner: str) -> str:
    try:
        return config_db.check_owner(owner)
    except WantedError as exc:
        _cannot(str(exc))


db_option = click.option(
    "--db",
    type=click.Choice(sorted(config_db.DEFAULT_DATABASES)),
    default="CONFIG_DB",
    show_default=True,
    help="The SONiC database.",
)
writable_db_option = click.option(
    "--db", type=click.Choice(config_db.WRITABLE), default="CONFIG_DB", show_default=True
)
owner_option = click.option(
    "--owner", required=True, help="Who owns the entries (k3s, parsec, ...): its record's name."
)


# Where SONiC's database is: every command that reads or writes it takes these.
socket_option = click.option(
    "--socket", type=click.Path(path_type=Path), default=config_db.SOCKET, show_default=True
)
database_config_option = click.option(
    "--database-config",
    type=click.Path(path_type=Path),
    default=config_db.DATABASE_CONFIG,
    show_default=True,
    help="SONiC's database layout (SONiC's database numbers when absent).",
)


@click.group("config-db")
@socket_option
@database_config_option
@click.option(
    "--config-db-json",
    type=click.Path(path_type=Path),
    default=config_db.CONFIG_DB_JSON,
    show_default=True,
    help="The configuration SONiC loads at boot; apply and remove update the owner's keys in it.",
)
@click.option(
    "--records",
    type=click.Path(file_okay=False, path_type=Path),
    default=config_db.RECORDS,
    show_default=True,
    help="Where each owner's record of what it wrote is kept (<owner>.json).",
)
@click.pass_context
def config_db_group(
    ctx: click.Context, socket: Path, database_config: Path, config_db_json: Path, records: Path
) -> None:
    """A SONiC switch's Redis databases (CONFIG_DB, STATE_DB, ...), written owner by owner.

    \b
    FILE (or - for stdin) is JSON:
      {"owned":  {"ACL_TABLE|EDGEFAAS_K3S": {"type": "CTRLPLANE", "services": ["EXTERNAL_CLIENT"]}},
       "shared": {"DEVICE_METADATA|localhost": {"bgp_asn": "65001"}}}
    Owned entries are written whole, and deleted once no longer listed; shared fields are set
    only when absent or equal. Keys are CONFIG_DB's unless prefixed (STATE_DB:TABLE|key).
    Output is JSON. Exit status: 0 done (diff: same), 1 refused (diff: differs), 2 the
    database did not answer or the input is not valid: nothing was written.
    """
    ctx.obj = Paths(
        socket=socket, database_config=database_config, config_db_json=config_db_json, records=records
    )


def _databases(ctx: click.Context) -> Databases:
    try:
        return Databases(ctx.obj)
    except ConfigDbError as exc:
        _cannot(str(exc))


@config_db_group.command("get")
@db_option
@click.argument("pattern", default="*")
@click.pass_context
def get_command(ctx: click.Context, db: str, pattern: str) -> None:
    """Print the entries whose keys match PATTERN (a Redis glob: 'ACL_RULE|EDGEFAAS_*')."""
    try:
        _print(config_db.get(_databases(ctx), db, pattern))
    except ConfigDbError as exc:
        _cannot(str(exc))


@config_db_group.command("diff")
@owner_option
@click.argument("file")
@click.pass_context
def diff_command(ctx: click.Context, owner: str, file: str) -> None:
    """Whether applying FILE for OWNER would change anything (exit 0 no, 1 yes, 2 cannot tell)."""
    owner = _owner(owner)
    wanted = _wanted(file)
    try:
        found = config_db.plan_on_device(_databases(ctx), owner, wanted)
    except ConfigDbError as exc:
        _cannot(str(exc))
    _print(
        {
            "owner": owner,
            "differs": [change.describe() for change in found.changes],
            "conflicts": found.conflicts,
            "left_alone": found.left_alone,
        }
    )
    sys.exit(DIFFERS if found.differs else SAME)


def _report(owner: str, run: config_db.Plan) -> None:
    for line in run.left_alone:
        click.echo(f"left alone: {line}", err=True)
    _print(
        {
            "owner": owner,
            "changed": [change.describe() for change in run.changes],
            "left_alone": run.left_alone,
        }
    )


@config_db_group.command("apply")
@owner_option
@click.argument("file")
@click.pass_context
def apply_command(ctx: click.Context, owner: str, file: str) -> None:
    """Make the databases hold FILE's entries for OWNER; print what changed."""
    owner = _owner(owner)
    wanted = _wanted(file)
    try:
        run = config_db.apply(_databases(ctx), owner, wanted)
    except Refused as exc:
        for conflict in exc.conflicts:
            click.echo(f"refused: {conflict}", err=True)
        _print({"owner": owner, "refused": exc.conflicts, "changed": []})
        sys.exit(DIFFERS)
    except ConfigDbError as exc:
        _cannot(str(exc))
    _report(owner, run)


@config_db_group.command("remove")
@owner_option
@click.pass_context
def remove_command(ctx: click.Context, owner: str) -> None:
    """Delete every entry OWNER wrote (its record says which), and nothing else."""
    owner = _owner(owner)
    try:
        run = config_db.remove(_databases(ctx), owner)
    except ConfigDbError as exc:
        _cannot(str(exc))
    _report(owner, run)


@config_db_group.command("set")
@writable_db_option
@click.argument("key")
@click.argument("assignments", nargs=-1, required=True, metavar="FIELD=VALUE...")
@click.pass_context
def set_command(ctx: click.Context, db: str, key: str, assignments: tuple[str, ...]) -> None:
    """Set fields of one entry, in the database only (not saved to config_db.json, no owner)."""
    fields = {}
    for assignment in assignments:
        name, sep, value = assignment.partition("=")
        if not sep or not name:
            _cannot(f"{assignment!r}: expected FIELD=VALUE")
        fields[name] = value
    change = config_db.Change(f"{db}:{key}", "update", set=fields)
    try:
        _databases(ctx).write(change)
    except ConfigDbError as exc:
        _cannot(str(exc))
    _print({"changed": [change.describe()]})


@config_db_group.command("del")
@writable_db_option
@click.argument("key")
@click.argument("fields", nargs=-1)
@click.pass_context
def del_command(ctx: click.Context, db: str, key: str, fields: tuple[str, ...]) -> None:
    """Delete one entry, or only FIELDS of it, in the database only (not saved to config_db.json)."""
    change = config_db.Change(f"{db}:{key}", "delete", delete_fields=list(fields), delete_key=not fields)
    try:
        _databases(ctx).write(change)
    except ConfigDbError as exc:
        _cannot(str(exc))
    _print({"changed": [change.describe()]})
