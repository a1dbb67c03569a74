"""Which device userlands the blueprint can install onto, decided before anything changes.

What a device must have is small, because the blueprint carries the rest itself: k3s and
Parsec are static binaries, and the host services run from EdgeFaaS's own Python bundle with
its own C library (edgefaas.deploy.python_bundle). A device needs:

- a kernel K3S runs on: 4.9 or newer (the L4T kernel of JetPack 4, the oldest Jetson
  release still in the field);
- systemd 237 or newer (Ubuntu 18.04, JetPack 4), since every service is a systemd unit
  (older releases than the units' newest sandboxing options ignore those options).

Its own Python and glibc do not matter, except to the one program that cannot bring its own:
tritonserver as a systemd service needs the glibc its wheel was built for. Triton runs on an
older device as a K3S workload instead (`triton_service_refusal`).

A device below the floor gets one line naming it and what it lacks, and nothing is changed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

Version = tuple[int, int]

MIN_KERNEL: Version = (4, 9)
MIN_SYSTEMD = 237


@dataclass(frozen=True)
class Userland:
    """What a device runs, as the Userland fact reads it."""

    os_id: str
    version_id: str
    pretty: str = ""
    kernel: Version | None = None
    systemd: int | None = None
    glibc: Version | None = None

    def describe(self) -> str:
        name = self.pretty or f"{self.os_id} {self.version_id}".strip()
        kernel = _dotted(self.kernel) if self.kernel else "unknown"
        systemd = str(self.systemd) if self.systemd else "none"
        glibc = _dotted(self.glibc) if self.glibc else "unknown"
        return f"{name} (kernel {kernel}, systemd {systemd}, glibc {glibc})"


def parse_version(text: str | None) -> Version | None:
    match = re.search(r"(\d+)\.(\d+)", text or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def _parse_systemd(text: str | None) -> int | None:
    match = re.search(r"systemd (\d+)", text or "")
    return int(match.group(1)) if match else None


def _dotted(version: Version) -> str:
    return f"{version[0]}.{version[1]}"


def from_fact(fact: dict[str, str]) -> Userland:
    return Userland(
        os_id=fact.get("id", "unknown"),
        version_id=fact.get("version_id", ""),
        pretty=fact.get("pretty", ""),
        kernel=parse_version(fact.get("kernel")),
        systemd=_parse_systemd(fact.get("systemd")),
        glibc=parse_version(fact.get("glibc")),
    )


def problems(found: Userland) -> list[str]:
    """What `found` lacks of the blueprint's floor; empty when the device is supported."""
    missing = []
    if found.kernel is None or found.kernel < MIN_KERNEL:
        missing.append(f"a Linux kernel >= {_dotted(MIN_KERNEL)} (for K3S)")
    if found.systemd is None or found.systemd < MIN_SYSTEMD:
        missing.append(f"systemd >= {MIN_SYSTEMD} (every service is a systemd unit)")
    return missing


def refusal(device: str, found: Userland) -> str | None:
    """One line naming the device and what it lacks, or None when it is supported."""
    missing = problems(found)
    if not missing:
        return None
    return (
        f"{device}: {found.describe()} is older than this blueprint supports: it needs "
        + " and ".join(missing)
        + "; nothing was changed on it"
    )


def triton_service_refusal(device: str, found: Userland, version: str, glibc: Version) -> str | None:
    """Why tritonserver `version` cannot be a systemd service on `found`, or None if it can."""
    if found.glibc is not None and found.glibc >= glibc:
        return None
    return (
        f"{device}: {found.describe()} cannot run tritonserver {version} as a systemd service: "
        f"it needs glibc >= {_dotted(glibc)}; run it as a K3S workload there "
        "(host data triton_as_k3s_workload = True); nothing was changed on it"
    )
