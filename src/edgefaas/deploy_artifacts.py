"""Artifacts inside a pyinfra deploy: find one for the current host, and install it there.

Shared by the task deploys (platform, parsec, k3s, edgefaas) so that every one of them
resolves, checks and uploads upstream artifacts the same way.
"""

from __future__ import annotations

from typing import Any

from pyinfra import host
from pyinfra.api.exceptions import DeployError
from pyinfra.operations import files

from edgefaas.artifact_source import ArtifactError, ArtifactSource, resolve


def artifact(name: str) -> ArtifactSource:
    """Artifact `name` for the host being deployed; a missing or corrupt one fails that host."""
    try:
        return resolve(host.data, name)
    except ArtifactError as exc:
        raise DeployError(f"{host.name}: {exc}") from None


def install(source: ArtifactSource, dest: str, what: str, mode: str = "755") -> Any:
    """Upload from the artifact directory, or have the device download it, checksum verified."""
    if source.url:
        return files.download(
            name=f"Download {what}", src=source.url, dest=dest, sha256sum=source.sha256, mode=mode
        )
    return files.put(name=f"Install {what}", src=source.path, dest=dest, mode=mode)
