"""The example image function (functions/hello-image), built without Docker as an OCI image.

OpenFaaS users ship functions as container images; the blueprint shows that path with one
of its own: a static Go program (the standard library only, nothing downloaded) that follows
OpenFaaS's watchdog contract itself. It is compiled for every architecture the blueprint has
(``CGO_ENABLED=0`` cross builds run no foreign code) and written with tarfile and json as an
OCI image layout in a tar (skopeo's ``oci-archive:`` transport), layers gzipped: ``index.json`` names one
multi-architecture image index, tagged, which lists one image manifest per architecture. So
a single ``skopeo copy --all`` pushes an image that amd64 switches and arm64 boards alike
pull. Every blob's bytes depend only on the binary, so the same source gives the same digests,
the push keeps them (``--preserve-digests``) and a re-run pushes nothing new.

The artifact is the same file for every architecture (it holds them all); it is recorded
under each, so a deploy finds it by its own architecture like every other artifact.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgefaas.lab import artifacts
from edgefaas.lab.builds import prerequisites
from edgefaas.lab.builds.images import REPRODUCIBLE_CREATED, REPRODUCIBLE_MTIME, pack_layer
from edgefaas.lab.builds.steps import Log, elf_arch, is_static_elf, run
from edgefaas.lab.paths import cache_dir

SOURCE_DIR = Path(__file__).resolve().parents[4] / "functions" / "hello-image"
NAME = "hello-image"
REPOSITORY = "edgefaas/hello-image"  # its path in the site's registry
ENTRYPOINT = "/hello-image"
USER = "10001:10001"  # numeric: the image has no /etc/passwd, and runAsNonRoot needs a number
PORT = 8080
# Bumped whenever what follows changes the image, so caches rebuild.
LAYOUT_VERSION = "1"

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"


@dataclass(frozen=True)
class OciArchive:
    """What `write_oci_archive` wrote."""

    path: Path
    tag: str
    index_digest: str  # sha256:<hex> of the multi-architecture index: what a registry then serves
    manifests: Mapping[str, str]  # architecture -> sha256:<hex> of its image manifest


def _go_env(work: Path, arch: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([env.get("PATH", os.defpath), *prerequisites.TOOL_DIRS])
    env.update(
        GOCACHE=str(work / "go-build"),
        GOMODCACHE=str(work / "go-mod"),
        # The standard library only: the go found here builds it, no toolchain is downloaded.
        GOTOOLCHAIN="local",
        GOFLAGS="-buildvcs=false -mod=mod",
        CGO_ENABLED="0",
        GOOS="linux",
        GOARCH=arch,
        GOPROXY="off",
    )
    env.pop("GOWORK", None)
    return env


def go_version(work: Path) -> str:
    return run(
        ["go", "version"], "hello-image: go version", env=_go_env(work, artifacts.native_arch())
    ).strip()


def compile_binary(source: Path, out: Path, arch: str, work: Path) -> Path:
    """The function's static binary for ``arch``; RuntimeError when go cannot build it."""
    argv = ["go", "build", "-trimpath", "-ldflags", "-s -w -buildid=", "-o", str(out), "."]
    run(argv, f"hello-image: go build for {arch}", env=_go_env(work, arch), cwd=source)
    if not is_static_elf(out) or elf_arch(out) != arch:
        raise RuntimeError(f"hello-image: go built {out} that is not a static {arch} binary")
    return out


def _blob(tar: tarfile.TarFile, written: set[str], data: bytes | Path) -> tuple[str, int]:
    """Store one blob under blobs/sha256/ (once), returning its digest and size."""
    if isinstance(data, Path):
        digest, size = artifacts.sha256_file(data), data.stat().st_size
    else:
        digest, size = hashlib.sha256(data).hexdigest(), len(data)
    if digest not in written:
        written.add(digest)
        info = tarfile.TarInfo(f"blobs/sha256/{digest}")
        info.size, info.mode, info.mtime = size, 0o644, REPRODUCIBLE_MTIME
        if isinstance(data, Path):
            with open(data, "rb") as stream:
                tar.addfile(info, stream)
        else:
            tar.addfile(info, io.BytesIO(data))
    return f"sha256:{digest}", size


def _gzip(layer: Path) -> Path:
    """The layer gzipped with no name and no time in its header: the same tar, the same bytes.
    Compressed by the build, so a registry push (which would compress it otherwise, changing
    every digest) stores exactly what was built."""
    out = layer.with_suffix(".tar.gz")
    with (
        open(layer, "rb") as source,
        open(out, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as packed,
    ):
        while chunk := source.read(1 << 20):
            packed.write(chunk)
    return out


def _json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _descriptor(media: str, digest: str, size: int, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media, "digest": digest, "size": size, **extra}


def write_oci_archive(
    out: Path, tag: str, binaries: Mapping[str, Path], entrypoint: str = ENTRYPOINT
) -> OciArchive:
    """An OCI image layout tar holding one image per architecture of ``binaries`` (arch -> static
    binary), under one index tagged ``tag``. Each image is the binary at ``entrypoint`` and an
    empty /tmp (OpenFaaS's classic watchdog writes its lock file there when run outside a pod)."""
    if not binaries:
        raise ValueError("an image needs at least one architecture")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".oci-") as tmp:
        partial = Path(tmp) / "image.tar"
        written: set[str] = set()
        manifests: dict[str, str] = {}
        entries = []
        with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
            for arch in sorted(binaries):
                root = Path(tmp) / f"root-{arch}"
                (root / "tmp").mkdir(parents=True)
                (root / "tmp").chmod(0o1777)
                target = root / entrypoint.lstrip("/")
                target.write_bytes(binaries[arch].read_bytes())
                target.chmod(0o755)
                layer = Path(tmp) / f"layer-{arch}.tar"
                pack_layer(root, layer, REPRODUCIBLE_MTIME)
                diff_id = f"sha256:{artifacts.sha256_file(layer)}"
                layer_digest, layer_size = _blob(tar, written, _gzip(layer))
                config = {
                    "architecture": arch,
                    "os": "linux",
                    "created": REPRODUCIBLE_CREATED,
                    "config": {
                        "Entrypoint": [entrypoint],
                        "User": USER,
                        "WorkingDir": "/",
                        "ExposedPorts": {f"{PORT}/tcp": {}},
                        "Env": ["PATH=/usr/local/bin:/usr/bin:/bin", f"port={PORT}"],
                        "Labels": {"org.opencontainers.image.title": NAME},
                    },
                    "rootfs": {"type": "layers", "diff_ids": [diff_id]},
                    "history": [
                        {"created": REPRODUCIBLE_CREATED, "created_by": f"{NAME} (go build, static)"}
                    ],
                }
                config_digest, config_size = _blob(tar, written, _json(config))
                manifest = {
                    "schemaVersion": 2,
                    "mediaType": MEDIA_MANIFEST,
                    "config": _descriptor(MEDIA_CONFIG, config_digest, config_size),
                    "layers": [_descriptor(MEDIA_LAYER, layer_digest, layer_size)],
                }
                digest, size = _blob(tar, written, _json(manifest))
                manifests[arch] = digest
                entries.append(
                    _descriptor(MEDIA_MANIFEST, digest, size, platform={"architecture": arch, "os": "linux"})
                )
            index = {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": entries}
            index_digest, index_size = _blob(tar, written, _json(index))
            top = {
                "schemaVersion": 2,
                "mediaType": MEDIA_INDEX,
                "manifests": [
                    _descriptor(MEDIA_INDEX, index_digest, index_size, annotations={REF_NAME: tag})
                ],
            }
            for name, data in (
                ("oci-layout", _json({"imageLayoutVersion": "1.0.0"})),
                ("index.json", _json(top)),
            ):
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(data), 0o644, REPRODUCIBLE_MTIME
                tar.addfile(info, io.BytesIO(data))
        partial.replace(out)
    return OciArchive(path=out, tag=tag, index_digest=index_digest, manifests=manifests)


def cache_key(go: str, arches: Iterable[str], source: Path = SOURCE_DIR) -> str:
    digest = hashlib.sha256()
    for part in (LAYOUT_VERSION, go, ENTRYPOINT, USER, *sorted(arches)):
        digest.update(part.encode() + b"\n")
    for path in sorted(source.iterdir()):
        if path.is_file():
            digest.update(path.name.encode() + b"\n" + path.read_bytes())
    return digest.hexdigest()[:16]


def build_archive(
    directory: Path, arches: Iterable[str] = artifacts.ARCHES, source: Path = SOURCE_DIR, log: Log = print
) -> OciArchive:
    """Build (or reuse) the example image for ``arches`` into ``directory``; its tag is the cache key."""
    arches = sorted(set(arches))
    work = directory / "work"
    work.mkdir(parents=True, exist_ok=True)
    key = cache_key(go_version(work), arches, source)
    out = directory / f"{NAME}-{key}.tar"
    info_file = out.with_suffix(".json")
    if out.exists() and info_file.exists():
        info = json.loads(info_file.read_text())
        return OciArchive(out, info["tag"], info["index_digest"], info["manifests"])
    started = time.monotonic()
    binaries = {arch: compile_binary(source, work / f"{NAME}-{arch}", arch, work) for arch in arches}
    archive = write_oci_archive(out, key, binaries)
    info_file.write_text(
        json.dumps(
            {"tag": archive.tag, "index_digest": archive.index_digest, "manifests": dict(archive.manifests)},
            indent=2,
        )
        + "\n"
    )
    log(f"hello-image: {out} ({', '.join(arches)}) in {time.monotonic() - started:.1f} s")
    return archive


def build(log: Log = print, arch: str = "amd64") -> artifacts.Artifact:
    """The lab's builder: one archive for every architecture, recorded under ``arch``."""
    artifacts.check_arch(arch)
    archive = build_archive(cache_dir() / "images", artifacts.ARCHES, log=log)
    return artifacts.record("example-image", archive.tag, archive.path, arch=arch)
