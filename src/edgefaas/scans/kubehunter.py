"""kube-hunter against the devices' addresses (`--remote`), its JSON report read back.

kube-hunter asks a third-party web service whether each address belongs to a cloud when a
hunter wants to know; the scans may talk only to the devices, so it runs through a small
launcher that answers "no cloud" itself (the lab and an edge site are nobody's cloud).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

SEVERITIES = ("high", "medium", "low")
# Imported before kube-hunter's own main, which reads its arguments from sys.argv at import.
LAUNCHER = """\
import sys
from kube_hunter.core.events import types
types.Event.get_cloud = lambda self: "NoCloud"
sys.argv = ["kube-hunter", *sys.argv[1:]]
from kube_hunter.__main__ import main
main()
"""
RUN_TIMEOUT_S = 300
# kube-hunter probes TLS services with verification off on purpose (it looks for what answers);
# requests lets a CA bundle named in the environment override that and then sees nothing.
_CA_BUNDLE_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


class KubeHunterError(RuntimeError):
    """kube-hunter did not run or its report could not be read; the message says why."""


@dataclass(frozen=True)
class Finding:
    vid: str
    name: str
    severity: str
    location: str
    category: str = ""
    description: str = ""
    evidence: str = ""

    def text(self) -> str:
        return f"{self.vid} {self.name} at {self.location}"


@dataclass
class Report:
    nodes: list[str] = field(default_factory=list)
    services: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    def by_severity(self) -> dict[str, int]:
        counts = Counter(f.severity for f in self.findings)
        return {severity: counts.get(severity, 0) for severity in (*SEVERITIES, *sorted(counts))}


def parse_report(text: str) -> Report:
    """kube-hunter's `--report json` output: nodes, services and vulnerabilities."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise KubeHunterError(f"kube-hunter's report is not JSON ({exc}): {text[:200]!r}") from None
    if not isinstance(data, dict) or "vulnerabilities" not in data:
        raise KubeHunterError(f"kube-hunter's report has no 'vulnerabilities': {text[:200]!r}")
    report = Report(
        nodes=[str(n.get("location", "")) for n in data.get("nodes", [])],
        services=[f"{s.get('service', '?')} at {s.get('location', '?')}" for s in data.get("services", [])],
    )
    for vuln in data["vulnerabilities"]:
        report.findings.append(
            Finding(
                vid=str(vuln.get("vid", "")),
                name=str(vuln.get("vulnerability", "")),
                severity=str(vuln.get("severity", "")).lower(),
                location=str(vuln.get("location", "")),
                category=str(vuln.get("category", "")),
                description=str(vuln.get("description", "")),
                evidence=str(vuln.get("evidence", "")),
            )
        )
    return report


@dataclass(frozen=True)
class HuntResult:
    report: Report | None
    error: str | None
    seconds: float


def hunt(python: Path, addresses: list[str], out_dir: Path, timeout: float = RUN_TIMEOUT_S) -> HuntResult:
    """Run kube-hunter (the venv's `python`) on `addresses`; kube-hunter.json in `out_dir`."""
    started = time.monotonic()
    argv = [str(python), "-c", LAUNCHER, "--remote", *addresses, "--report", "json", "--log", "warning"]
    env = {k: v for k, v in os.environ.items() if k not in _CA_BUNDLE_VARIABLES}
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return HuntResult(
            None, f"kube-hunter did not finish within {timeout:.0f} s", time.monotonic() - started
        )
    (out_dir / "kube-hunter.log").write_text(done.stderr)
    # The report is the last line of stdout; log lines may come before it.
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    if done.returncode != 0 or not lines:
        reason = (done.stderr.strip().splitlines() or [f"exit {done.returncode}, no output"])[-1]
        return HuntResult(None, f"kube-hunter failed: {reason}", time.monotonic() - started)
    (out_dir / "kube-hunter.json").write_text(lines[-1] + "\n")
    try:
        return HuntResult(parse_report(lines[-1]), None, time.monotonic() - started)
    except KubeHunterError as exc:
        return HuntResult(None, str(exc), time.monotonic() - started)
