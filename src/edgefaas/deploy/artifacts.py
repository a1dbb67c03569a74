"""Artifacts inside a pyinfra deploy: find one for the current host, and install it there.

Shared by the task deploys (platform, parsec, k3s, edgefaas, triton) so that every one of
them resolves, checks and uploads upstream artifacts the same way, each for the device's
own architecture (read once per host from `uname -m`).
"""

from __future__ import annotations

from typing import Any

from pyinfra import host
from pyinfra.api.exceptions import DeployError
from pyinfra.facts.server import Arch
from pyinfra.operations import files, server

from edgefaas.deploy.artifact_source import ArtifactError, ArtifactSource, resolve
from edgefaas.deploy.facts import UnpackedArtifact
from edgefaas.lab.artifacts import UnsupportedArch, arch_of


def device_arch() -> str:
    """The host's architecture in Debian's naming; an unsupported one fails that host."""
    machine = host.get_fact(Arch) or ""
    try:
        return arch_of(machine)
    except UnsupportedArch as exc:
        raise DeployError(f"{host.name}: {exc}") from None


def artifact(name: str) -> ArtifactSource:
    """Artifact `name` for the host being deployed; a missing or corrupt one fails that host."""
    arch = device_arch()
    try:
        return resolve(host.data, name, arch)
    except ArtifactError as exc:
        raise DeployError(f"{host.name}: {exc}") from None


def require(*names: str) -> dict[str, ArtifactSource]:
    """Resolve every artifact a deploy file needs before its first operation, so a device
    whose architecture lacks one fails before anything is installed on it."""
    return {name: artifact(name) for name in names}


def unpack(archive: str, home: str, source: ArtifactSource, what: str, uploaded: Any, binary: str) -> Any:
    """Unpack the tar `archive` (gzip or not) on the host into `home`, when the upload changed or
    `home` holds another or an incomplete unpack (UnpackedArtifact: `binary` there, stamp last).

    Unpacked aside and swapped in, so a run cut short never leaves half a tree in use.
    """
    installed = host.get_fact(UnpackedArtifact, home=home, binary=binary)
    gzip = "z" if archive.endswith(".gz") else ""
    return server.shell(
        name=f"Unpack {what} into {home}",
        commands=[
            f"rm -rf {home}.new && mkdir -p {home}.new",
            f"tar -x{gzip}f {archive} -C {home}.new",
            f"echo {source.sha256} > {home}.new/{UnpackedArtifact.STAMP}",
            f"rm -rf {home} && mv {home}.new {home}",
        ],
        _if=lambda: uploaded.did_change() or installed != source.sha256,
    )


def install(source: ArtifactSource, dest: str, what: str, mode: str = "755") -> Any:
    """Upload from the artifact directory, or have the device download it, checksum verified."""
    if source.url:
        return files.download(
            name=f"Download {what}", src=source.url, dest=dest, sha256sum=source.sha256, mode=mode
        )
    return files.put(name=f"Install {what}", src=source.path, dest=dest, mode=mode)
