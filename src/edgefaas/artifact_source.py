"""Where a deploy takes an upstream artifact from: an artifact directory, or a URL.

Edge labs are usually air-gapped, so the default is a directory on the machine running
pyinfra, described by the `manifest.json` that `edgefaas lab build` writes (name, path,
sha256). Any artifact can instead come from a URL the devices can reach, by host data:

    artifacts = {"parsec-service": {"url": "http://mirror.lab/parsec", "sha256": "..."}}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from edgefaas.lab.artifacts import sha256_file


class ArtifactError(ValueError):
    pass


@dataclass(frozen=True)
class ArtifactSource:
    name: str
    sha256: str
    path: str | None = None
    url: str | None = None
    version: str = ""


def resolve(data: Any, name: str) -> ArtifactSource:
    """Find artifact `name` for a host, checking its checksum before anything is uploaded."""
    overrides = data.get("artifacts") or {}
    if name in overrides:
        entry = overrides[name]
        if not entry.get("url") or not entry.get("sha256"):
            raise ArtifactError(f"artifacts[{name!r}] needs both 'url' and 'sha256'")
        return ArtifactSource(name, entry["sha256"], url=entry["url"], version=entry.get("version", ""))
    directory = Path(data.get("artifact_dir") or "")
    manifest = directory / "manifest.json"
    try:
        entries = json.loads(manifest.read_text())
    except FileNotFoundError:
        raise ArtifactError(
            f"no artifact manifest at {manifest}: run `edgefaas lab build` or set artifact_dir"
        ) from None
    if name not in entries:
        raise ArtifactError(
            f"artifact {name!r} is not in {manifest}: run `edgefaas lab build`, "
            f"or set artifacts[{name!r}] = {{'url': ..., 'sha256': ...}}"
        )
    entry = entries[name]
    path = Path(entry["path"])
    if not path.is_absolute():
        path = directory / path
    if not path.exists():
        raise ArtifactError(f"artifact {name!r}: {path} is listed in {manifest} but missing")
    stat = path.stat()
    actual = _checksum(str(path), stat.st_mtime_ns, stat.st_size)
    if actual != entry["sha256"]:
        raise ArtifactError(
            f"artifact {name!r}: {path} has sha256 {actual}, the manifest says {entry['sha256']}"
        )
    return ArtifactSource(name, entry["sha256"], path=str(path), version=entry.get("version", ""))


@lru_cache(maxsize=64)
def _checksum(path: str, mtime_ns: int, size: int) -> str:
    # Deploy code runs once per host: hash each file once per pyinfra run, not once per host.
    return sha256_file(Path(path))
