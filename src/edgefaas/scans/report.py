"""The scans' verdicts: a summary for people and a JUnit XML report for Jenkins and CI.

Every Lynis warning, kube-hunter finding and device listing becomes a test case, so Jenkins
shows each one; only findings that concern the blueprint and are not accepted fail
(edgefaas.scans.accepted says which), and a scan that could not run is an error.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from edgefaas.scans import accepted, debsecurity, kubehunter, lynis

GATED_SEVERITIES = ("high", "medium")


@dataclass
class Case:
    suite: str
    name: str
    outcome: str = "passed"  # passed, failure, error, skipped
    message: str = ""
    output: str = ""


@dataclass
class Scans:
    lynis: list[lynis.ScanResult] = field(default_factory=list)
    hunt: kubehunter.HuntResult | None = None
    debian: list[debsecurity.Listing] = field(default_factory=list)
    seconds: float = 0.0
    addresses: list[str] = field(default_factory=list)  # every device kube-hunter should find
    profiles: dict[str, str] = field(default_factory=dict)  # device -> its profile (sonic, jetson)


def lynis_cases(results: list[lynis.ScanResult], table=accepted.ACCEPTED) -> list[Case]:
    cases = []
    for result in results:
        if result.report is None:
            cases.append(Case("lynis", f"{result.device}: Lynis audit", "error", result.error or "no report"))
            continue
        report = result.report
        cases.append(
            Case(
                "lynis",
                f"{result.device}: Lynis audit",
                output=f"hardening index {report.hardening_index}, {report.tests_executed} tests, "
                f"{len(report.warnings)} warnings, {len(report.suggestions)} suggestions",
            )
        )
        for warning in report.warnings:
            text = f"{warning.message} {warning.details} {warning.solution}"
            case = Case("lynis", f"{result.device}: {warning.text()}")
            names = accepted.blueprint_names_in(text)
            entry = accepted.justification("lynis", warning.test_id, text, table)
            if not names:
                case.outcome = "skipped"
                case.message = "the device's base system, not a service of the blueprint"
            elif entry:
                case.output = f"accepted: {entry.reason}"
            else:
                case.outcome = "failure"
                case.message = (
                    f"Lynis warns about the blueprint's {', '.join(names)}: fix it in the deploys, or "
                    "give the reason it stays in edgefaas.scans.accepted.ACCEPTED"
                )
            cases.append(case)
    return cases


def hunt_cases(
    hunt: kubehunter.HuntResult | None, table=accepted.ACCEPTED, addresses: list[str] = ()
) -> list[Case]:
    """A case per finding, and an error for each device where kube-hunter found no node at all
    (every device of the inventory runs a kubelet, so nothing found means it was not looked at)."""
    if hunt is None:
        return []
    if hunt.report is None:
        return [Case("kube-hunter", "kube-hunter hunt", "error", hunt.error or "no report")]
    report = hunt.report
    cases = [
        Case(
            "kube-hunter",
            "kube-hunter hunt",
            output=f"nodes: {', '.join(report.nodes) or 'none'}\nservices:\n  "
            + "\n  ".join(report.services),
        )
    ]
    for address in addresses:
        if address not in report.nodes:
            cases.append(
                Case(
                    "kube-hunter",
                    f"kube-hunter reached {address}",
                    "error",
                    f"kube-hunter found no Kubernetes service at {address}: the device was down or "
                    "did not answer its probes in time, so it was not scanned",
                )
            )
    for finding in report.findings:
        case = Case("kube-hunter", f"{finding.severity}: {finding.text()}", output=finding.description)
        if finding.severity in GATED_SEVERITIES:
            entry = accepted.justification("kube-hunter", finding.vid, finding.location, table)
            if entry:
                case.output = f"accepted: {entry.reason}\n{finding.description}"
            else:
                case.outcome = "failure"
                case.message = (
                    f"a {finding.severity} finding with no declared reason: fix it or explain it in "
                    f"edgefaas.scans.accepted.ACCEPTED (evidence: {finding.evidence[:300]})"
                )
        cases.append(case)
    return cases


def debian_cases(listings: list[debsecurity.Listing]) -> list[Case]:
    cases = []
    for listing in listings:
        name = f"{listing.device}: pending Debian security fixes"
        if listing.error:
            cases.append(Case("debian-security", name, "error", listing.error))
            continue
        ours = [p for p in listing.pending if p.by_blueprint]
        lines = [
            f"{p.package} {p.installed} -> {p.fixed}"
            + ("  (installed by the blueprint)" if p.by_blueprint else "")
            for p in listing.pending
        ]
        cases.append(
            Case(
                "debian-security",
                name,
                output=f"{listing.codename}-security index of {listing.index_date}: "
                f"{len(listing.pending)} of {listing.installed} packages have a security fix pending "
                f"({len(ours)} installed by the blueprint)\n" + "\n".join(lines),
            )
        )
    return cases


def all_cases(scans: Scans) -> list[Case]:
    return [
        *lynis_cases(scans.lynis),
        *hunt_cases(scans.hunt, addresses=scans.addresses),
        *debian_cases(scans.debian),
    ]


def junit_xml(cases: list[Case], seconds: float = 0.0) -> bytes:
    root = ET.Element("testsuites", name="security scans", time=f"{seconds:.1f}")
    for suite_name in dict.fromkeys(c.suite for c in cases):
        members = [c for c in cases if c.suite == suite_name]
        suite = ET.SubElement(
            root,
            "testsuite",
            name=suite_name,
            tests=str(len(members)),
            failures=str(sum(c.outcome == "failure" for c in members)),
            errors=str(sum(c.outcome == "error" for c in members)),
            skipped=str(sum(c.outcome == "skipped" for c in members)),
        )
        for case in members:
            element = ET.SubElement(suite, "testcase", classname=f"scans.{suite_name}", name=case.name)
            if case.outcome != "passed":
                ET.SubElement(element, case.outcome, message=case.message).text = case.message
            if case.output:
                ET.SubElement(element, "system-out").text = case.output
    for key in ("tests", "failures", "errors", "skipped"):
        root.set(key, str(sum(int(s.get(key, 0)) for s in root)))
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def summary(scans: Scans, cases: list[Case]) -> dict:
    """The figures: hardening index per device, findings by severity, pending fixes, time."""
    devices = {}
    for result in scans.lynis:
        report = result.report
        devices[result.device] = {
            "hardening_index": report.hardening_index if report else None,
            "warnings": [w.text() for w in report.warnings] if report else [],
            "suggestions": len(report.suggestions) if report else None,
            "lynis_seconds": round(result.seconds, 1),
            "error": result.error,
        }
    for listing in scans.debian:
        entry = devices.setdefault(listing.device, {})
        entry["pending_security_fixes"] = None if listing.error else len(listing.pending)
        entry["pending_in_blueprint_packages"] = (
            None if listing.error else sorted(p.package for p in listing.pending if p.by_blueprint)
        )
        if listing.error:
            entry["debian_error"] = listing.error
    by_profile: dict[str, list[int]] = {}
    for result in scans.lynis:
        if result.report and result.report.hardening_index is not None:
            profile = scans.profiles.get(result.device, "other")
            by_profile.setdefault(profile, []).append(result.report.hardening_index)
    hunt = scans.hunt
    return {
        "devices": devices,
        # The lowest index of each profile's devices: what a device of that profile can be.
        "hardening_index_by_profile": {p: min(values) for p, values in sorted(by_profile.items())},
        "kube_hunter": {
            "by_severity": hunt.report.by_severity() if hunt and hunt.report else None,
            "findings": [f.text() + f" [{f.severity}]" for f in hunt.report.findings]
            if hunt and hunt.report
            else [],
            "error": hunt.error if hunt else "not run",
        },
        "failed": [c.name for c in cases if c.outcome in ("failure", "error")],
        "seconds": round(scans.seconds, 1),
    }


def summary_text(figures: dict) -> str:
    lines = ["Security scans", "", "Lynis (hardening index 0-100; warnings; suggestions):"]
    for device, entry in figures["devices"].items():
        if entry.get("error"):
            lines.append(f"  {device}: not scanned: {entry['error']}")
        elif "hardening_index" in entry:
            lines.append(
                f"  {device}: index {entry['hardening_index']}, {len(entry['warnings'])} warnings, "
                f"{entry['suggestions']} suggestions ({entry['lynis_seconds']} s)"
            )
            lines += [f"      warning {w}" for w in entry["warnings"]]
    if figures["hardening_index_by_profile"]:
        lines.append(
            "  lowest index per profile: "
            + ", ".join(f"{p} {i}" for p, i in figures["hardening_index_by_profile"].items())
        )
    hunt = figures["kube_hunter"]
    lines += ["", "kube-hunter findings by severity:"]
    if hunt["by_severity"] is None:
        lines.append(f"  not run: {hunt['error']}")
    else:
        lines.append("  " + ", ".join(f"{k} {v}" for k, v in hunt["by_severity"].items()))
        lines += [f"  {f}" for f in hunt["findings"]]
    lines += ["", "Pending Debian security fixes (installed version older than the security suite's):"]
    for device, entry in figures["devices"].items():
        if entry.get("debian_error"):
            lines.append(f"  {device}: not listed: {entry['debian_error']}")
        elif entry.get("pending_security_fixes") is not None:
            ours = entry["pending_in_blueprint_packages"]
            lines.append(
                f"  {device}: {entry['pending_security_fixes']} packages"
                + (f", of the blueprint's: {', '.join(ours)}" if ours else "")
            )
    lines += ["", f"took {figures['seconds']} s"]
    if figures["failed"]:
        lines += ["", "FAILED:", *[f"  {name}" for name in figures["failed"]]]
    return "\n".join(lines) + "\n"


def write(scans: Scans, out_dir: Path, junit: Path) -> dict:
    cases = all_cases(scans)
    junit.write_bytes(junit_xml(cases, scans.seconds))
    figures = summary(scans, cases)
    (out_dir / "summary.json").write_text(json.dumps(figures, indent=2) + "\n")
    (out_dir / "summary.txt").write_text(summary_text(figures))
    return figures
