"""Where a deploy takes an upstream artifact from: an artifact directory, or a URL.

Edge labs are usually air-gapped, so the default is a directory on the machine running
pyinfra, described by the `manifest.json` that `edgefaas lab build` writes (name,
architecture, path, sha256). Every artifact is chosen for the device's own architecture.
Any artifact can instead come from a URL the devices can reach, by host data, for every
architecture at once or per architecture:

    artifacts = {"parsec-service": {"url": "http://mirror.lab/parsec", "sha256": "..."}}
    artifacts = {"k3s": {"arm64": {"url": "http://mirror.lab/k3s-arm64", "sha256": "..."},
                         "amd64": {"url": "http://mirror.lab/k3s", "sha256": "..."}}}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from edgefaas.lab.artifacts import ARCHES, manifest_key, parse_manifest, sha256_file


class ArtifactError(ValueError):
    pass


@dataclass(frozen=True)
class ArtifactSource:
    name: str
    sha256: str
    path: str | None = None
    url: str | None = None
    version: str = ""
    arch: str = "amd64"


def resolve(data: Any, name: str, arch: str) -> ArtifactSource:
    """Find artifact `name` built for `arch`, checking its checksum before anything is uploaded."""
    overrides = data.get("artifacts") or {}
    if name in overrides:
        return _override(overrides[name], name, arch)
    directory = Path(data.get("artifact_dir") or "")
    manifest = directory / "manifest.json"
    try:
        entries = parse_manifest(json.loads(manifest.read_text()))
    except FileNotFoundError:
        raise ArtifactError(
            f"no artifact manifest at {manifest}: run `edgefaas lab build` or set artifact_dir"
        ) from None
    entry = entries.get(manifest_key(name, arch))
    if entry is None:
        built = sorted(a.arch for a in entries.values() if a.name == name)
        have = f" (built for: {', '.join(built)})" if built else ""
        raise ArtifactError(
            f"no {arch} build of artifact {name!r} in {manifest}{have}: run "
            f"`edgefaas lab build --arch {arch}`, or set artifacts[{name!r}][{arch!r}] = "
            "{'url': ..., 'sha256': ...}"
        )
    path = Path(entry.path)
    if not path.is_absolute():
        path = directory / path
    if not path.exists():
        raise ArtifactError(f"artifact {name!r} ({arch}): {path} is listed in {manifest} but missing")
    stat = path.stat()
    actual = _checksum(str(path), stat.st_mtime_ns, stat.st_size)
    if actual != entry.sha256:
        raise ArtifactError(
            f"artifact {name!r} ({arch}): {path} has sha256 {actual}, the manifest says {entry.sha256}"
        )
    return ArtifactSource(name, entry.sha256, path=str(path), version=entry.version, arch=arch)


def _override(entry: Any, name: str, arch: str) -> ArtifactSource:
    if isinstance(entry, dict) and set(entry) & set(ARCHES):
        if arch not in entry:
            raise ArtifactError(
                f"artifacts[{name!r}] has no {arch!r} entry (it has {', '.join(sorted(entry))})"
            )
        entry, where = entry[arch], f"artifacts[{name!r}][{arch!r}]"
    else:
        where = f"artifacts[{name!r}]"
    if not isinstance(entry, dict) or not entry.get("url") or not entry.get("sha256"):
        raise ArtifactError(f"{where} needs both 'url' and 'sha256'")
    return ArtifactSource(
        name, entry["sha256"], url=entry["url"], version=entry.get("version", ""), arch=arch
    )


@lru_cache(maxsize=64)
def _checksum(path: str, mtime_ns: int, size: int) -> str:
    # Deploy code runs once per host: hash each file once per pyinfra run, not once per host.
    return sha256_file(Path(path))
