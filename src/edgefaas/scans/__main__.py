"""`python -m edgefaas.scans --inventory INV`: every scan on every device, in parallel.

Writes reports/scans/ (Lynis reports lynis-<device>.dat with their logs, kube-hunter.json,
summary.txt and summary.json) and the JUnit report reports/scan.xml. Exit 0 when nothing
failed, 1 when a finding failed or a scan could not run, 2 for bad arguments or inventory.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from edgefaas.deploy.inventory import PROFILE_GROUPS, InventoryError, load_inventory
from edgefaas.scans import debsecurity, kubehunter, lynis, remote, report, tools

SCANS = ("lynis", "kube-hunter", "debian")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgefaas.scans", description=__doc__.splitlines()[0])
    parser.add_argument("--inventory", default="inventories/lab.py")
    parser.add_argument("--out", type=Path, default=Path("reports/scans"))
    parser.add_argument("--junit", type=Path, default=Path("reports/scan.xml"))
    parser.add_argument("--only", choices=SCANS, action="append", help="run only these scans (repeatable)")
    args = parser.parse_args(argv)
    wanted = set(args.only or SCANS)
    try:
        inventory = load_inventory(args.inventory)
    except InventoryError as exc:
        print(f"scan: {exc}", file=sys.stderr)
        return 2
    hosts = [remote.Host(h.name, h.data) for h in inventory]
    if not hosts:
        print(f"scan: {args.inventory} has no hosts", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    args.junit.parent.mkdir(parents=True, exist_ok=True)

    started = time.monotonic()
    profiles = {h.name: next((g for g in PROFILE_GROUPS if g in h.groups), "other") for h in inventory}
    scans = report.Scans(addresses=[h.address for h in hosts], profiles=profiles)
    with ThreadPoolExecutor(max_workers=len(hosts) + 1) as pool:
        # kube-hunter first and alone with the devices: its port probes give up after 1.5 s, which
        # busy devices (Lynis on all of them at once) can miss, and a missed kubelet looks clean.
        hunt = pool.submit(_hunt, [h.address for h in hosts], args.out) if "kube-hunter" in wanted else None
        # One after another: the listings share the security index, fetched once per release.
        if "debian" in wanted:
            lists = debsecurity.AptLists(tools.VENVS / "apt")
            indexes: dict = {}
            scans.debian = [debsecurity.list_device(host, lists, indexes) for host in hosts]
        scans.hunt = hunt.result() if hunt else None
        if "lynis" in wanted:
            archive = lynis.tree_archive()
            audits = [pool.submit(lynis.scan, host, archive, args.out) for host in hosts]
            scans.lynis = [audit.result() for audit in audits]
    scans.seconds = time.monotonic() - started

    figures = report.write(scans, args.out, args.junit)
    print(report.summary_text(figures), end="")
    print(f"reports: {args.out}/ and {args.junit}")
    return 1 if figures["failed"] else 0


def _hunt(addresses: list[str], out: Path) -> kubehunter.HuntResult:
    try:
        python = tools.venv_bin("kube-hunter") / "python"
    except tools.ToolError as exc:
        return kubehunter.HuntResult(None, str(exc), 0.0)
    return kubehunter.hunt(python, addresses, out)


if __name__ == "__main__":
    sys.exit(main())
