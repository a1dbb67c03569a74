"""Which device userlands the blueprint can install onto, decided before anything changes.

The device-side Python package is installed from a wheelhouse: its binary wheels fix the
Python version (their `cp3XY` tag) and the oldest glibc (their `manylinux_2_N` tags) a
device needs. A device older than that, such as a Jetson Nano on JetPack 4.6 (Ubuntu 18.04,
glibc 2.27, Python 3.6), would otherwise fail halfway through `pip install`; the platform
deploy refuses it up front with one line naming the device and what it lacks.
"""

from __future__ import annotations

import re
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass

from packaging.utils import InvalidWheelFilename, parse_wheel_filename

_MANYLINUX = re.compile(r"^manylinux_(\d+)_(\d+)_")
# The PEP 600 names of the legacy manylinux tags.
_LEGACY = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
_CPYTHON = re.compile(r"^cp3(\d+)$")

Version = tuple[int, int]


@dataclass(frozen=True)
class Userland:
    """What a device runs, as the Userland fact reads it."""

    os_id: str
    version_id: str
    pretty: str = ""
    glibc: Version | None = None
    python: Version | None = None

    def describe(self) -> str:
        name = self.pretty or f"{self.os_id} {self.version_id}".strip()
        glibc = _dotted(self.glibc) if self.glibc else "unknown"
        python = _dotted(self.python) if self.python else "none"
        return f"{name} (glibc {glibc}, Python {python})"


@dataclass(frozen=True)
class Requirement:
    """What the wheelhouse needs of a device, with the wheels that set each bound."""

    python: Version | None
    glibc: Version
    python_from: str = ""
    glibc_from: str = ""


def parse_version(text: str | None) -> Version | None:
    match = re.search(r"(\d+)\.(\d+)", text or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def _dotted(version: Version) -> str:
    return f"{version[0]}.{version[1]}"


def _glibc_of(platform: str) -> Version | None:
    if not platform.startswith("manylinux"):
        return None
    for legacy, version in _LEGACY.items():
        if platform.startswith(legacy + "_"):
            return version
    match = _MANYLINUX.match(platform)
    return (int(match.group(1)), int(match.group(2))) if match else None


def wheelhouse_requirement(wheel_names: Iterable[str]) -> Requirement:
    """The Python version and oldest glibc that every wheel named can be installed on.

    A wheel with several platform tags installs where any one holds, so it needs the
    oldest glibc among its tags; the wheelhouse needs the newest of those minima.
    """
    python: Version | None = None
    python_from = ""
    glibc: Version = (2, 0)
    glibc_from = ""
    for name in wheel_names:
        try:
            _, _, _, tags = parse_wheel_filename(name)
        except InvalidWheelFilename:
            continue
        needs = [g for g in (_glibc_of(tag.platform) for tag in tags) if g is not None]
        if needs and len(needs) == len(tags) and min(needs) > glibc:
            glibc, glibc_from = min(needs), name
        for tag in tags:
            match = _CPYTHON.match(tag.interpreter)
            if match and tag.abi != "abi3":
                found = (3, int(match.group(1)))
                if python is None or found > python:
                    python, python_from = found, name
    return Requirement(python=python, glibc=glibc, python_from=python_from, glibc_from=glibc_from)


def problems(found: Userland, need: Requirement) -> list[str]:
    """What `found` lacks for `need`; empty when the device is supported."""
    missing = []
    if need.python is not None and found.python != need.python:
        wheel = need.python_from.split("-")[0]
        missing.append(f"Python {_dotted(need.python)} (the wheelhouse's {wheel} wheel is built for it)")
    if found.glibc is None or found.glibc < need.glibc:
        wheel = need.glibc_from.split("-")[0]
        missing.append(f"glibc >= {_dotted(need.glibc)} (for the wheelhouse's {wheel} wheel)")
    return missing


def from_fact(fact: dict[str, str]) -> Userland:
    return Userland(
        os_id=fact.get("id", "unknown"),
        version_id=fact.get("version_id", ""),
        pretty=fact.get("pretty", ""),
        glibc=parse_version(fact.get("glibc")),
        python=parse_version(fact.get("python")),
    )


def wheel_names(wheelhouse_tar: str) -> list[str]:
    with tarfile.open(wheelhouse_tar) as tar:
        return [name for name in tar.getnames() if name.endswith(".whl")]


def refusal(device: str, found: Userland, need: Requirement) -> str | None:
    """One line naming the device and what it lacks, or None when it is supported."""
    missing = problems(found, need)
    if not missing:
        return None
    return (
        f"{device}: {found.describe()} is older than this blueprint supports: it needs "
        + " and ".join(missing)
        + "; nothing was changed on it"
    )
