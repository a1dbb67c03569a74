"""`edgefaas perf`: the performance suites, headless, into one combined report."""

from __future__ import annotations

import time
from pathlib import Path

import click


@click.command("perf")
@click.option("--inventory", default="inventories/lab.py", show_default=True, help="pyinfra inventory.")
@click.option("--duration", default="60s", show_default=True, help="Measured time per side and load level.")
@click.option("--users", default=16, show_default=True, type=click.IntRange(1), help="Most concurrent users.")
@click.option(
    "--out", type=click.Path(path_type=Path), help="Output folder (default tests/perf/out/perf-<time>)."
)
@click.option(
    "--suites",
    default="gateway,triton,parsec",
    show_default=True,
    help="Comma-separated suites; also joint (edge/cloud joint inference: needs a cloud site).",
)
@click.option(
    "--workers", default=0, show_default=True, type=click.IntRange(0), help="Local locust workers (0: none)."
)
@click.option("--scale-json", type=click.Path(path_type=Path), help="Scale figures (default tests/perf/...).")
@click.option(
    "--ca-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="EDGEFAAS_CA_FILE",
    show_envvar=True,
    help="PEM of the CA the gateway's HTTPS is verified by, alone "
    "(default: the K3S server's /etc/edgefaas/ca.pem, read over SSH).",
)
@click.option(
    "--publish/--no-publish",
    default=True,
    show_default=True,
    help="Upload report.html to the inventory's gateway for its web console (a failure is only printed).",
)
def perf(
    inventory: str,
    duration: str,
    users: int,
    out: Path | None,
    suites: str,
    workers: int,
    scale_json: Path | None,
    ca_file: Path | None,
    publish: bool,
) -> None:
    """Run the suites headless and write OUT/report.html.

    The inventory's gateway (the triton suite's function path, and --publish) is called in the
    scheme the inventory says: HTTPS by default, verified by the blueprint's CA alone.

    \b
    Exit status:
      0  every threshold holds
      1  a threshold is broken
      2  usage error (a bad option)
      3  a suite could not run (OUT/report.html says which and why)
    """
    from edgefaas.perf.bench import out_root
    from edgefaas.perf.runner import SUITES, PerfOptions, parse_duration, run_perf

    try:
        seconds = parse_duration(duration)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--duration") from None
    chosen = tuple(s.strip() for s in suites.split(",") if s.strip())
    unknown = sorted(set(chosen) - set(SUITES))
    if unknown or not chosen:
        raise click.BadParameter(f"choose from {', '.join(SUITES)}", param_hint="--suites")
    folder = out or out_root() / time.strftime("perf-%Y%m%d-%H%M%S")
    options = PerfOptions(
        inventory, seconds, users, folder.resolve(), chosen, workers, scale_json, publish,
        ca_file.resolve() if ca_file else None,
    )  # fmt: skip
    raise SystemExit(run_perf(options, log=click.echo))
