"""Built upstream artifacts and their checksums.

Deploys take upstream components from an artifact directory (or a URL) and verify a
sha256, because the edge labs this blueprint targets are usually air-gapped. The lab
builds those artifacts from package registries and records them in one manifest, which
`edgefaas lab artifacts` prints and deploys read.

Every artifact is built per architecture (Debian's names: amd64, arm64), because the
blueprint's boards and many of its switches are arm64 while others are x86_64. The
manifest keys an entry by `name/arch`; a deploy picks the entry of the device's own
architecture.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from edgefaas.lab.paths import artifact_dir

# Debian's (and Go's, and OCI's) names for the architectures the blueprint's devices have.
ARCHES = ("amd64", "arm64")
_MACHINE_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
# The GNU names (uname -m, toolchain triplets) of the same architectures.
GNU_ARCH = {"amd64": "x86_64", "arm64": "aarch64"}


class UnsupportedArch(ValueError):
    """An architecture no artifact is built for."""


def arch_of(machine: str) -> str:
    """Debian's name for `uname -m`'s `machine` (x86_64 -> amd64, aarch64 -> arm64)."""
    try:
        return _MACHINE_ARCH[machine.strip()]
    except KeyError:
        raise UnsupportedArch(
            f"architecture {machine.strip() or '(empty)'!r} is not supported (supported: {', '.join(ARCHES)})"
        ) from None


def native_arch() -> str:
    """The architecture of the machine running this code."""
    return arch_of(platform.machine())


def check_arch(arch: str) -> str:
    if arch not in ARCHES:
        raise UnsupportedArch(f"architecture {arch!r} is not supported (supported: {', '.join(ARCHES)})")
    return arch


@dataclass(frozen=True)
class Artifact:
    name: str
    version: str
    path: str
    sha256: str
    arch: str = "amd64"
    # Wall time of the build that made this file (None: recorded before builds were timed).
    build_seconds: float | None = None

    @property
    def key(self) -> str:
        return manifest_key(self.name, self.arch)

    @property
    def size(self) -> int:
        try:
            return Path(self.path).stat().st_size
        except OSError:
            return 0


def manifest_key(name: str, arch: str) -> str:
    return f"{name}/{arch}"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_path() -> Path:
    return artifact_dir() / "manifest.json"


def parse_manifest(data: dict[str, dict[str, str]]) -> dict[str, Artifact]:
    """Manifest entries by `name/arch`; an entry written before artifacts had an
    architecture (no `arch` field, keyed by name) is the amd64 build it always was."""
    entries = {}
    for entry in data.values():
        artifact = Artifact(**{"arch": "amd64", **entry})
        entries[artifact.key] = artifact
    return entries


def load_manifest() -> dict[str, Artifact]:
    try:
        data = json.loads(manifest_path().read_text())
    except FileNotFoundError:
        return {}
    return parse_manifest(data)


def lookup(name: str, arch: str | None = None) -> Artifact | None:
    """The manifest's entry for `name` built for `arch` (default: this machine's)."""
    return load_manifest().get(manifest_key(name, arch or native_arch()))


_build_started: float | None = None


@contextmanager
def timed_build() -> Iterator[None]:
    """Files recorded as new inside this block get the time since it began as their build time."""
    global _build_started
    _build_started = time.monotonic()
    try:
        yield
    finally:
        _build_started = None


def record(name: str, version: str, path: Path, arch: str | None = None) -> Artifact:
    """Checksum a built file and add it to the manifest (replacing an older entry of the
    same name and architecture); `arch` defaults to this machine's. Re-recording the same
    file keeps the time its build took."""
    artifact = Artifact(
        name=name,
        version=version,
        path=str(path),
        sha256=sha256_file(path),
        arch=check_arch(arch or native_arch()),
    )
    took = None if _build_started is None else round(time.monotonic() - _build_started, 1)

    def update(entries: dict[str, Artifact]) -> None:
        old = entries.get(artifact.key)
        same = old is not None and old.sha256 == artifact.sha256
        entries[artifact.key] = replace(artifact, build_seconds=old.build_seconds if same else took)

    return _update(update)[artifact.key]


def _update(change: Callable[[dict[str, Artifact]], None]) -> dict[str, Artifact]:
    target = manifest_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    # Builds for several architectures may record at once: read-modify-write under a lock.
    with open(target.with_name(".manifest.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        entries = load_manifest()
        change(entries)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".manifest-")
        with os.fdopen(fd, "w") as out:
            json.dump({k: asdict(v) for k, v in sorted(entries.items())}, out, indent=2)
            out.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    return entries


def present() -> list[Artifact]:
    """Artifacts in the manifest whose file still exists."""
    return [a for a in load_manifest().values() if Path(a.path).exists()]
