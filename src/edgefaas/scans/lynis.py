"""Lynis on a device without installing it there: Debian's `lynis` tree, carried over SSH.

The tree of this machine's `lynis` package (the script, include/, db/, plugins/ and its
default profile) travels as a tar archive on the SSH session's stdin into a temporary
directory on the device; Lynis runs from there (`--usecwd`) with its report and log inside
that directory, both come back as a tar archive on stdout, and the directory is removed
whatever happened, so the device keeps nothing of the scan.
"""

from __future__ import annotations

import io
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from edgefaas.scans import remote

# Where Debian's lynis package puts its pieces (scripts/setup installs it on this machine).
LYNIS_SCRIPT = Path("/usr/sbin/lynis")
LYNIS_SHARE = Path("/usr/share/lynis")  # include/ and db/
LYNIS_ETC = Path("/etc/lynis")  # default.prf and plugins/

# Read after default.prf: the scan must not change the device or talk to the Internet.
# refresh-repositories=no: Lynis would otherwise run `apt-get update` on the device.
# skip-upgrade-test=yes: no DNS query for Lynis's latest version.
CUSTOM_PROFILE = """\
# The blueprint's settings for a scan from a temporary directory (edgefaas.scans.lynis).
refresh-repositories=no
skip-upgrade-test=yes
"""

# Runs as root on the device; stdin carries the tree, stdout brings back the results. Lynis is
# a shell script, run through sh so that a /tmp mounted noexec does not stop it.
REMOTE_SCRIPT = r"""
d=$(mktemp -d /tmp/edgefaas-lynis.XXXXXX) || exit 90
trap 'cd /; rm -rf "$d"' EXIT HUP INT TERM
tar -x -o -C "$d" -f - || exit 91
cd "$d/lynis" || exit 92
status=0
sh ./lynis audit system --quick --no-colors --usecwd --plugin-dir "$d/lynis/plugins" \
    --report-file "$d/report.dat" --log-file "$d/lynis.log" >"$d/output.txt" 2>&1 || status=$?
echo "$status" >"$d/status"
cd "$d" && tar -c -f - $(for f in report.dat lynis.log output.txt status; do [ -f "$f" ] && echo "$f"; done)
"""
SCAN_TIMEOUT_S = 600


class LynisError(RuntimeError):
    """Lynis could not run or report on a device; the message says why."""


@dataclass(frozen=True)
class Finding:
    test_id: str
    message: str
    details: str = ""
    solution: str = ""

    def text(self) -> str:
        extra = f" ({self.details})" if self.details and self.details != "-" else ""
        return f"{self.test_id}: {self.message}{extra}"


@dataclass
class Report:
    device: str
    hardening_index: int | None
    warnings: list[Finding] = field(default_factory=list)
    suggestions: list[Finding] = field(default_factory=list)
    tests_executed: int = 0
    lynis_version: str = ""
    os: str = ""


def _finding(value: str) -> Finding:
    # warning[]=ID|message|details|solution|  (trailing fields may be absent)
    parts = [*value.split("|"), "", "", ""]
    return Finding(parts[0].strip(), parts[1].strip(), parts[2].strip(), parts[3].strip())


def parse_report(text: str, device: str) -> Report:
    """Read a Lynis report file (key=value lines; `key[]=` repeats a list)."""
    report = Report(device=device, hardening_index=None)
    for line in text.splitlines():
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        if key == "warning[]":
            report.warnings.append(_finding(value))
        elif key == "suggestion[]":
            report.suggestions.append(_finding(value))
        elif key == "hardening_index":
            report.hardening_index = int(value) if value.strip().isdigit() else None
        elif key == "tests_executed":
            report.tests_executed = len([t for t in value.split("|") if t])
        elif key == "lynis_version":
            report.lynis_version = value
        elif key == "os_fullname":
            report.os = value
    if report.hardening_index is None:
        raise LynisError(f"{device}: the Lynis report has no hardening index (an interrupted scan?)")
    return report


def tree_archive(profile: str = CUSTOM_PROFILE) -> bytes:
    """This machine's Lynis (Debian package) as a tar archive of one folder `lynis/`."""
    missing = [
        p for p in (LYNIS_SCRIPT, LYNIS_SHARE / "include", LYNIS_ETC / "default.prf") if not p.exists()
    ]
    if missing:
        raise LynisError(
            f"Lynis is not installed here ({', '.join(map(str, missing))} missing): apt-get install lynis"
        )
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:

        def add(path: Path, name: str) -> None:
            tar.add(str(path), arcname=f"lynis/{name}", filter=_owned_by_root)

        add(LYNIS_SCRIPT, "lynis")
        add(LYNIS_SHARE / "include", "include")
        add(LYNIS_SHARE / "db", "db")
        add(LYNIS_ETC / "plugins", "plugins")
        add(LYNIS_ETC / "default.prf", "default.prf")
        data = profile.encode()
        info = tarfile.TarInfo("lynis/custom.prf")
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _owned_by_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
    # Lynis refuses include files owned by another user than the one running it (root).
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mode &= 0o755
    return info


@dataclass(frozen=True)
class ScanResult:
    device: str
    report: Report | None
    error: str | None
    seconds: float


def scan(host: remote.Host, archive: bytes, out_dir: Path, timeout: float = SCAN_TIMEOUT_S) -> ScanResult:
    """Run Lynis on `host`; write lynis-<device>.dat/.log/.txt into `out_dir`; never raises."""
    started = time.monotonic()
    try:
        done = remote.run(host, remote.as_root(host, REMOTE_SCRIPT), stdin=archive, timeout=timeout)
        files = _untar(done.stdout)
        if "status" not in files:
            stderr = done.stderr.decode(errors="replace").strip()
            raise LynisError(
                f"{host.name}: the scan did not finish (exit {done.returncode}): {stderr[-300:]}"
            )
        for name, suffix in (("report.dat", "dat"), ("lynis.log", "log"), ("output.txt", "txt")):
            if name in files:
                (out_dir / f"lynis-{host.name}.{suffix}").write_bytes(files[name])
        status = files["status"].decode().strip()
        if "report.dat" not in files:
            raise LynisError(
                f"{host.name}: Lynis exited {status} without a report; see lynis-{host.name}.txt"
            )
        report = parse_report(files["report.dat"].decode(errors="replace"), host.name)
        return ScanResult(host.name, report, None, time.monotonic() - started)
    except (remote.RemoteError, LynisError, tarfile.TarError) as exc:
        return ScanResult(host.name, None, str(exc), time.monotonic() - started)


def _untar(data: bytes) -> dict[str, bytes]:
    if not data:
        return {}
    files: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        for member in tar.getmembers():
            extracted = tar.extractfile(member) if member.isfile() else None
            if extracted is not None:
                files[Path(member.name).name] = extracted.read()
    return files
