"""Pending Debian security fixes on each device, from the security suite's index this machine has.

The data: the `Packages` index of Debian's security suite (`<codename>-security`, label
Debian-Security) of each device's release, fetched by `apt-get update` from the security
archive that this machine's apt sources name, into lists of the scan's own (AptLists); the
index's Release date says how fresh it is. Nothing else is fetched and the devices need no
network. A package
installed on a device in an older version than the security suite has is a pending security
fix. The index names no CVEs; the package and both versions are what the listing gives.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from edgefaas.scans import remote

# ---- Debian version ordering (deb-version(7)), as dpkg --compare-versions orders them -------


def _order(char: str) -> int:
    if char == "~":
        return -1
    if char.isdigit() or not char:
        return 0
    if char.isalpha():
        return ord(char)
    return ord(char) + 256


def _compare_part(a: str, b: str) -> int:
    i = j = 0
    while i < len(a) or j < len(b):
        first_diff = 0
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ac = _order(a[i]) if i < len(a) else 0
            bc = _order(b[j]) if j < len(b) else 0
            if ac != bc:
                return ac - bc
            i += 1
            j += 1
        while i < len(a) and a[i] == "0":
            i += 1
        while j < len(b) and b[j] == "0":
            j += 1
        while i < len(a) and a[i].isdigit() and j < len(b) and b[j].isdigit():
            if not first_diff:
                first_diff = ord(a[i]) - ord(b[j])
            i += 1
            j += 1
        if i < len(a) and a[i].isdigit():
            return 1
        if j < len(b) and b[j].isdigit():
            return -1
        if first_diff:
            return first_diff
    return 0


def _split(version: str) -> tuple[int, str, str]:
    epoch, _, rest = version.partition(":") if ":" in version else ("0", "", version)
    upstream, _, revision = rest.rpartition("-") if "-" in rest else (rest, "", "")
    return int(epoch or 0), upstream, revision


def compare_versions(a: str, b: str) -> int:
    """<0, 0 or >0 as Debian version `a` sorts before, equal to or after `b`."""
    ea, ua, ra = _split(a.strip())
    eb, ub, rb = _split(b.strip())
    if ea != eb:
        return ea - eb
    return _compare_part(ua, ub) or _compare_part(ra, rb)


# ---- the security suite's index ----------------------------------------------------------


@dataclass(frozen=True)
class SecurityIndex:
    suite: str  # e.g. bookworm-security
    arch: str
    date: str  # the Release file's date: how fresh the data is
    versions: dict[str, str]  # package -> newest version in the suite


def parse_packages(text: str) -> dict[str, str]:
    """Package -> its newest version, from a Debian `Packages` index."""
    newest: dict[str, str] = {}
    for stanza in text.split("\n\n"):
        fields = dict(re.findall(r"^(Package|Version): (.+)$", stanza, flags=re.MULTILINE))
        name, version = fields.get("Package"), fields.get("Version")
        if name and version and (name not in newest or compare_versions(version, newest[name]) > 0):
            newest[name] = version
    return newest


def _apt(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise FileNotFoundError(f"{' '.join(argv[:3])}: {done.stderr.strip()[-300:]}")
    return done.stdout


def security_archive() -> str:
    """The URI of the Debian security archive that this machine's apt sources name."""
    listing = _apt(["apt-get", "indextargets", "--format", "$(REPO_URI)\t$(LABEL)", "Identifier: Packages"])
    for line in listing.splitlines():
        uri, _, label = line.partition("\t")
        if label.strip() == "Debian-Security":
            return uri.strip()
    raise FileNotFoundError(
        "this machine's apt sources name no Debian security suite (label Debian-Security): add "
        "'<codename>-security' to them and run apt-get update"
    )


class AptLists:
    """Apt lists of their own (under build/) for the security suites of the devices' releases.

    A device may run another Debian release than this machine (the Jetson stand-in runs
    bullseye): its security suite comes from the same archive as this machine's, with apt's
    own download and signature checks, into a private lists folder so this machine's apt
    configuration stays as it is.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._refreshed: set[str] = set()

    def _options(self) -> list[str]:
        return [
            "-o",
            f"Dir::Etc::SourceList={self.root / 'sources.list'}",
            "-o",
            f"Dir::Etc::SourceParts={self.root / 'sources.list.d'}",
            "-o",
            f"Dir::State::Lists={self.root / 'lists'}",
            "-o",
            f"Dir::Cache={self.root / 'cache'}",
        ]

    def refresh(self, codename: str) -> str | None:
        """Fetch the index of `codename`-security; what went wrong, or None (lists kept then)."""
        if codename in self._refreshed:
            return None
        self._refreshed.add(codename)
        for sub in ("lists/partial", "sources.list.d", "cache"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        sources = self.root / "sources.list"
        known = set(sources.read_text().splitlines()) if sources.exists() else set()
        known.add(f"deb [arch=amd64,arm64] {security_archive()} {codename}-security main")
        sources.write_text("\n".join(sorted(known)) + "\n")
        done = subprocess.run(["apt-get", "update", "-q", *self._options()], capture_output=True, text=True)
        return None if done.returncode == 0 else done.stderr.strip()[-300:]

    def index(self, codename: str, arch: str) -> SecurityIndex:
        """The security suite's index for `codename` and `arch`, refreshed once per run."""
        suite = f"{codename}-security"
        problem = self.refresh(codename)
        listing = _apt(
            [
                "apt-get",
                "indextargets",
                *self._options(),
                "--format",
                "$(FILENAME)\t$(ARCHITECTURE)",
                "Identifier: Packages",
                f"Codename: {suite}",
            ]
        )
        files = [line.split("\t") for line in listing.splitlines() if line.strip()]
        files = [f for f in files if len(f) >= 2 and f[1] == arch and Path(f[0]).exists()]
        if not files:
            raise FileNotFoundError(
                f"no {suite} index for {arch}" + (f" (apt-get update: {problem})" if problem else "")
            )
        versions: dict[str, str] = {}
        for path, *_ in files:
            # apt-helper decompresses whatever compression apt stored the list with (lz4, xz).
            text = _apt(["/usr/lib/apt/apt-helper", "cat-file", path])
            for name, version in parse_packages(text).items():
                if name not in versions or compare_versions(version, versions[name]) > 0:
                    versions[name] = version
        return SecurityIndex(suite, arch, _release_date(Path(files[0][0])), versions)


def _release_date(packages_file: Path) -> str:
    # <prefix>_dists_<suite>_main_binary-<arch>_Packages.lz4 -> <prefix>_dists_<suite>_InRelease
    prefix = packages_file.name.split("_main_")[0]
    for name in (f"{prefix}_InRelease", f"{prefix}_Release"):
        release = packages_file.with_name(name)
        if release.exists():
            found = re.search(r"^Date: (.+)$", release.read_text(errors="replace"), flags=re.MULTILINE)
            if found:
                return found.group(1).strip()
    return "unknown"


# ---- a device's packages against it --------------------------------------------------------


@dataclass(frozen=True)
class Pending:
    package: str
    installed: str
    fixed: str  # the security suite's version
    by_blueprint: bool  # installed by the blueprint's deploys (platform_packages)


@dataclass
class Listing:
    device: str
    codename: str = ""
    arch: str = ""
    installed: int = 0
    pending: list[Pending] = field(default_factory=list)
    index_date: str = ""
    error: str | None = None


DEVICE_QUERY = (
    '. /etc/os-release; echo "$VERSION_CODENAME"; dpkg --print-architecture; '
    "dpkg-query -W -f '${db:Status-Abbrev}\\t${Package}\\t${Version}\\t${Architecture}\\n'"
)


def pending_fixes(
    installed: Iterable[tuple[str, str]], index: SecurityIndex, blueprint: Iterable[str] = ()
) -> list[Pending]:
    """Installed (package, version) pairs that the security suite has a newer version of."""
    ours = set(blueprint)
    found = []
    for package, version in installed:
        fixed = index.versions.get(package)
        if fixed and compare_versions(version, fixed) < 0:
            found.append(Pending(package, version, fixed, package in ours))
    return sorted(found, key=lambda p: (not p.by_blueprint, p.package))


def parse_device_query(text: str) -> tuple[str, str, list[tuple[str, str]]]:
    """(codename, dpkg architecture, installed (package, version)) from DEVICE_QUERY's output."""
    lines = text.splitlines()
    if len(lines) < 2:
        raise ValueError(f"unexpected answer to the package query: {text[:200]!r}")
    packages = []
    for line in lines[2:]:
        parts = line.split("\t")
        if len(parts) >= 3 and parts[0].startswith("ii"):
            packages.append((parts[1], parts[2]))
    return lines[0].strip(), lines[1].strip(), packages


def list_device(
    host: remote.Host, lists: AptLists, indexes: dict[tuple[str, str], SecurityIndex | Exception]
) -> Listing:
    """One device's pending security fixes; `indexes` caches the index per (codename, arch)."""
    listing = Listing(device=host.name)
    try:
        done = remote.run(host, f"sh -c {shlex.quote(DEVICE_QUERY)}", timeout=60)
        if done.returncode != 0:
            raise ValueError(done.stderr.decode(errors="replace").strip()[-300:])
        listing.codename, listing.arch, packages = parse_device_query(done.stdout.decode(errors="replace"))
    except (remote.RemoteError, ValueError) as exc:
        listing.error = f"{host.name}: could not list its packages: {exc}"
        return listing
    listing.installed = len(packages)
    key = (listing.codename, listing.arch)
    if key not in indexes:
        try:
            indexes[key] = lists.index(*key)
        except FileNotFoundError as exc:
            indexes[key] = exc
    index = indexes[key]
    if isinstance(index, Exception):
        listing.error = str(index)
        return listing
    listing.index_date = index.date
    listing.pending = pending_fixes(packages, index, host.data.get("platform_packages") or ())
    return listing
