"""`edgefaas announce`: the switch's announcer of the API and function addresses (a systemd service)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

from edgefaas.sonic import announce, config_db
from edgefaas.sonic.cli import database_config_option, socket_option
from edgefaas.sonic.frr_tables import FrrTables


@click.command("announce")
@click.option(
    "--plan",
    "plan_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=announce.PLAN,
    show_default=True,
    help="The WAN plan the deploy renders (no file: nothing is announced).",
)
@click.option("--interval", type=click.FloatRange(0.05), default=0.5, show_default=True, help="Seconds.")
@click.option(
    "--health-timeout",
    type=click.FloatRange(0.05),
    default=0.4,
    show_default=True,
    help="Seconds the gateway's /healthz may take; 2 failed checks in a row withdraw everything.",
)
@click.option(
    "--functions-interval",
    type=click.FloatRange(0.1),
    default=2.0,
    show_default=True,
    help="Seconds between asks of /wan (which functions are served here).",
)
@click.option(
    "--frr-interval",
    type=click.FloatRange(0.5),
    default=5.0,
    show_default=True,
    help="Seconds between comparisons of EdgeFaaS's route-map entries with FRR's (a restart loses them).",
)
@click.option(
    "--drain-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("/run/edgefaas/wan-drain"),
    show_default=True,
    help="While this file exists everything is withdrawn, as if the gateway were down (upgrades).",
)
@click.option(
    "--withdraw-grace",
    type=click.FloatRange(0),
    default=1.0,
    show_default=True,
    help="On SIGTERM: seconds between withdrawing the routes and removing the addresses from lo.",
)
@socket_option
@database_config_option
@click.option("--vtysh", default="vtysh", show_default=True, help="The vtysh command (split like a shell).")
@click.option(
    "--ip", "ip_command", default="ip", show_default=True, help="The ip command (split like a shell)."
)
@click.option(
    "--frr-asn",
    type=click.IntRange(1, 4294967295),
    default=None,
    help="No SONiC here (a cloud server): announce through FRR's `router bgp FRR_ASN` directly, "
    "playing bgpcfgd's part, instead of through STATE_DB.",
)
@click.option(
    "--prepend",
    type=click.IntRange(0, 10),
    default=0,
    show_default=True,
    help="With --frr-asn: prepend the AS this many times, so that paths through here are the WAN's "
    "fallback (the cloud behind the edges).",
)
@click.option("--bind/--no-bind", default=True, show_default=True, help="Put announced addresses on lo.")
@click.option("--once", is_flag=True, help="One round, then exit (announcements stay).")
@click.option("--dry-run", is_flag=True, help="Write nothing: print what would be announced (with --once).")
@click.option(
    "--log-level", default="info", show_default=True, type=click.Choice(["debug", "info", "warning"])
)
def announce_command(
    plan_path: Path,
    interval: float,
    health_timeout: float,
    functions_interval: float,
    frr_interval: float,
    drain_file: Path,
    withdraw_grace: float,
    socket: Path,
    database_config: Path,
    vtysh: str,
    ip_command: str,
    frr_asn: int | None,
    prepend: int,
    bind: bool,
    once: bool,
    dry_run: bool,
    log_level: str,
) -> None:
    """Announce the gateway's anycast address and its functions' addresses into BGP, the SONiC way
    (or, with --frr-asn, straight into FRR where no SONiC runs).

    \b
    Each round: the local gateway's /healthz (2 failures in a row: down) and /wan; then
    STATE_DB ADVERTISE_NETWORK_TABLE holds the anycast address (FROM_SDN_SLB_ROUTES) while the
    gateway is healthy and each served function's address (FROM_SDN_APPLIANCE_ROUTES); its
    large community <asn>:<id>:<version> is set by EdgeFaaS's FRR route-map entries (vtysh).
    SIGTERM withdraws everything, then exits.
    """
    logging.basicConfig(
        stream=sys.stderr, level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    settings = announce.Settings(
        plan_path=plan_path,
        interval=interval,
        health_timeout=health_timeout,
        functions_interval=functions_interval,
        frr_interval=frr_interval,
        drain_file=drain_file,
        withdraw_grace=withdraw_grace,
        bind=bind,
        dry_run=dry_run,
    )
    try:
        announce.load_plan(plan_path)
    except announce.PlanError as exc:
        raise click.ClickException(str(exc)) from None
    tables = frr = loopback = None
    if prepend and frr_asn is None:
        raise click.UsageError("--prepend needs --frr-asn (on SONiC, bgpcfgd writes the route-maps)")
    if not dry_run:
        frr = announce.Frr(announce.split_command(vtysh))
        if frr_asn is not None:
            tables = FrrTables(frr_asn, prepend, frr)
        else:
            try:
                paths = config_db.Paths(socket=socket, database_config=database_config)
                tables = announce.Tables(config_db.Databases(paths))
            except config_db.ConfigDbError as exc:
                raise click.ClickException(str(exc)) from None
        loopback = announce.Loopback(announce.split_command(ip_command))
    announcer = announce.Announcer(settings, tables, frr, loopback)
    status = announce.run(announcer, once=once)
    if once:
        desired = announcer.desired
        click.echo(
            json.dumps(
                {
                    "advertise": desired.advertise,
                    "profiles": desired.profiles,
                    "communities": {prefix: c for prefix, c in desired.communities.values()},
                    "reasons": desired.reasons,
                },
                indent=2,
                sort_keys=True,
            )
        )
    sys.exit(status)
