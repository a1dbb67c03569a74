"""What a pyinfra run did, read from its `--json` output rather than from its printed table.

pyinfra -y --json INVENTORY deploys/site.py > run.json
python -m edgefaas.deploy.results run.json --unchanged   # exit 1 naming what changed
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class RunResults:
    host_operations: int
    # operation name -> hosts; operations that share a name (one per template in a loop) add up
    changed: dict[str, list[str]] = field(default_factory=dict)
    failed: dict[str, list[str]] = field(default_factory=dict)
    unchanged: int = 0

    @property
    def changed_nothing(self) -> bool:
        return not self.changed and not self.failed

    def describe(self) -> str:
        lines = [
            f"{self.host_operations} host-operations: {sum(map(len, self.changed.values()))} changed, "
            f"{sum(map(len, self.failed.values()))} failed, {self.unchanged} unchanged"
        ]
        lines += [f"  changed: {name} on {', '.join(hosts)}" for name, hosts in self.changed.items()]
        lines += [f"  failed: {name} on {', '.join(hosts)}" for name, hosts in self.failed.items()]
        return "\n".join(lines)


def parse(payload: dict[str, Any]) -> RunResults:
    """Results of an executed run (`pyinfra -y --json`); a dry run has none and is refused."""
    results = payload.get("results")
    if not isinstance(results, dict) or "operations" not in results:
        raise ValueError("no results in this pyinfra JSON: was it a --dry run, or not pyinfra --json output?")
    changed: dict[str, list[str]] = {}
    failed: dict[str, list[str]] = {}
    total = unchanged = 0
    for op in results["operations"]:
        total += op.get("hosts", 0)
        unchanged += len(op.get("no_change", []))
        if op.get("success"):
            changed.setdefault(op["name"], []).extend(op["success"])
        if op.get("error"):
            failed.setdefault(op["name"], []).extend(op["error"])
    return RunResults(host_operations=total, changed=changed, failed=failed, unchanged=unchanged)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m edgefaas.deploy.results", description=__doc__.split("\n")[0]
    )
    parser.add_argument("json_file", type=Path, help="what `pyinfra --json` printed on standard output")
    parser.add_argument("--unchanged", action="store_true", help="exit 1 unless nothing changed or failed")
    args = parser.parse_args(argv)
    try:
        results = parse(json.loads(args.json_file.read_text()))
    except (OSError, ValueError) as exc:
        print(f"{args.json_file}: {exc}", file=sys.stderr)
        return 2
    print(results.describe())
    return 1 if args.unchanged and not results.changed_nothing else 0


if __name__ == "__main__":
    sys.exit(main())
