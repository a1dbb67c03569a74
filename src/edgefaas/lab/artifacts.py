"""Built upstream artifacts and their checksums.

Deploys take upstream components from an artifact directory (or a URL) and verify a
sha256, because the edge labs this blueprint targets are usually air-gapped. The lab
builds those artifacts from package registries and records them in one manifest, which
`edgefaas lab artifacts` prints and deploys read.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from edgefaas.lab.paths import artifact_dir


@dataclass(frozen=True)
class Artifact:
    name: str
    version: str
    path: str
    sha256: str


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_path() -> Path:
    return artifact_dir() / "manifest.json"


def load_manifest() -> dict[str, Artifact]:
    try:
        data = json.loads(manifest_path().read_text())
    except FileNotFoundError:
        return {}
    return {name: Artifact(**entry) for name, entry in data.items()}


def record(name: str, version: str, path: Path) -> Artifact:
    """Checksum a built file and add it to the manifest (replacing an older entry)."""
    artifact = Artifact(name=name, version=version, path=str(path), sha256=sha256_file(path))
    entries = load_manifest()
    entries[name] = artifact
    target = manifest_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".manifest-")
    with os.fdopen(fd, "w") as out:
        json.dump({k: asdict(v) for k, v in sorted(entries.items())}, out, indent=2)
        out.write("\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, target)
    return artifact


def present() -> list[Artifact]:
    """Artifacts in the manifest whose file still exists."""
    return [a for a in load_manifest().values() if Path(a.path).exists()]
