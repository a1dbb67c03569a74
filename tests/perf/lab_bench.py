"""Lab and platform-deploy timings for labs of several sizes, side by side in one run.

    sudo .venv/bin/python -m tests.perf.lab_bench [--sizes 3,20] [--json tests/perf/scale-figures.json]

For each size: lab up to all devices SSH-ready (the rootfs cache is warmed first and not
timed), the platform deploy's first run and its no-change re-run, and lab down. The labs
are named bench<N> on their own subnet, so a running default lab is left alone. --json adds
(or replaces) each size's deploy and re-run times in a scale-figures file, which
`edgefaas perf --scale-json` plots.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from edgefaas.lab import lifecycle, rootfs
from edgefaas.lab.spec import default_devices, parse_spec
from edgefaas.perf.scale import PLATFORM_SERIES, record_point
from tests.integration.conftest import run_deploy

REPO = Path(__file__).resolve().parents[2]
TARGETS = {"up": 15.0, "down": 10.0}  # seconds, for the 3-device lab


def _deploy(lab: str) -> tuple[float, str]:
    env = {**os.environ, "EDGEFAAS_LAB": lab}
    run = run_deploy("inventories/lab.py", "deploys/platform.py", env=env, timeout=None)
    if run.returncode != 0:
        raise SystemExit(f"platform deploy on {lab} failed:\n{run.output[-3000:]}")
    return run.seconds, (f"{run.changed} changed" if run.operations else "?")


def measure(size: int, subnet: str) -> dict[str, float | str]:
    spec = parse_spec({"name": f"bench{size}", "subnet": subnet, "devices": default_devices(size)})
    quiet = lambda _msg: None  # noqa: E731
    lifecycle.down(spec.name, log=quiet)
    try:
        started = time.monotonic()
        lifecycle.up(spec, log=quiet)
        up = time.monotonic() - started
        first, first_changes = _deploy(spec.name)
        rerun, rerun_changes = _deploy(spec.name)
    finally:
        started = time.monotonic()
        lifecycle.down(spec.name, log=quiet)
        down = time.monotonic() - started
    return {
        "up": up,
        "deploy": first,
        "deploy_changes": first_changes,
        "rerun": rerun,
        "rerun_changes": rerun_changes,
        "down": down,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="3,20", help="comma-separated device counts (default 3,20)")
    parser.add_argument("--subnet", default="10.78.0.0/24")
    parser.add_argument(
        "--json", type=Path, metavar="FILE", help="record the figures in this scale-figures file"
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rootfs.lower_dir(log=lambda m: print(m, file=sys.stderr))
    results = {}
    for size in sizes:
        print(f"measuring a {size}-device lab...", file=sys.stderr)
        results[size] = measure(size, args.subnet)
    print(f"\n{'devices':>7} {'up s':>7} {'deploy s':>9} {'re-run s':>9} {'down s':>7}  re-run result")
    for size, r in results.items():
        times = f"{r['up']:>7.1f} {r['deploy']:>9.1f} {r['rerun']:>9.1f} {r['down']:>7.1f}"
        print(f"{size:>7} {times}  {r['rerun_changes']}")
    if args.json:
        recorded = f"recorded {time.strftime('%Y-%m-%d')} on a {os.cpu_count()}-core machine"
        for size, r in results.items():
            record_point(args.json, PLATFORM_SERIES, size, float(r["deploy"]), float(r["rerun"]), recorded)
        print(f"figures recorded in {args.json}")
    base = results[sizes[0]]
    for size in sizes[1:]:
        r = results[size]
        ratios = ", ".join(f"{key} x{r[key] / base[key]:.2f}" for key in ("up", "deploy", "rerun", "down"))
        print(f"{size} vs {sizes[0]} devices: {ratios}")
    if 3 in results:
        for key, target in TARGETS.items():
            verdict = "ok" if results[3][key] <= target else "OVER TARGET"
            print(f"3-device lab {key}: {results[3][key]:.1f} s (target <= {target:.0f} s) {verdict}")


if __name__ == "__main__":
    main()
