"""K3S's metrics-server (`kubectl top`, the resource metrics API), built from its Go module.

K3S v1.25.4 packages metrics-server as a manifest that runs
`rancher/mirrored-metrics-server:v0.6.1`, an image no registry reachable from the lab (or an
air-gapped edge site) serves. This builds the same release, sigs.k8s.io/metrics-server v0.6.1,
compiled as upstream's Makefile does (static, `CGO_ENABLED=0`, its version stamped), into an
image shaped like upstream's (the binary at /metrics-server, user 65534), as a docker-archive
the K3S server imports from agent/images. deploys/k3s.py runs it with its own manifest
(templates/k3s/metrics-server.yaml.j2) in place of K3S's packaged one, which stays disabled.

One image per device architecture, both cross builds that run no foreign code except the
binary's `--version`, under qemu-user for arm64 (as the k3s build does).
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from pathlib import Path

from edgefaas.lab import artifacts
from edgefaas.lab.builds import images, prerequisites
from edgefaas.lab.builds.gobuild import (
    GO_TOOLCHAIN,
    PACKAGE_LINE,
    go_env,
    installed_binary,
    is_cached,
    publish,
    step_label,
)
from edgefaas.lab.builds.steps import Log, elf_arch, foreign_command, is_static_elf, run, stream
from edgefaas.lab.paths import cache_dir

NAME = "metrics-server-image"
MODULE = "sigs.k8s.io/metrics-server"
PACKAGE = f"{MODULE}/cmd/metrics-server"
VERSION = "v0.6.1"
# Under the blueprint's own name: it is built here, not the image K3S's manifest pulls.
IMAGE = f"docker.io/edgefaas/metrics-server:{VERSION}"
ENTRYPOINT = "/metrics-server"
USER = "65534"  # upstream's Dockerfile; K3S's manifest runs it as 1000 anyway
# Upstream's Makefile stamps the version where `metrics-server --version` reads it.
LDFLAGS = f"-s -w -X k8s.io/client-go/pkg/version.gitVersion={VERSION}"
# Bumped whenever the image's shape below changes, so caches rebuild.
LAYOUT_VERSION = "1"
VERSION_CHECK_TIMEOUT = 120.0


def binary_path(arch: str) -> Path:
    return cache_dir() / "artifacts" / f"metrics-server-{VERSION}-{arch}" / "metrics-server"


def binary_key(arch: str) -> dict[str, str]:
    """What a cached binary must have been built from to be reused."""
    return {
        "package": PACKAGE,
        "revision": VERSION,
        "toolchain": GO_TOOLCHAIN,
        "ldflags": LDFLAGS,
        "arch": arch,
    }


def install_argv() -> list[str]:
    return ["go", "install", "-v", "-trimpath", "-ldflags", LDFLAGS, f"{PACKAGE}@{VERSION}"]


def build_binary(log: Log = print, arch: str = "amd64") -> Path:
    """Compile (or reuse) metrics-server for `arch`: a static binary that says its version."""
    target = binary_path(arch)
    key = binary_key(arch)
    label = step_label("metrics-server", arch)
    if is_cached(target, key):
        return target
    absent = prerequisites.missing(["metrics-server-image"], [arch])
    if absent:
        lines = "\n".join(f"  missing: {item.describe()}" for item in absent)
        raise RuntimeError(f"{label}: prerequisites missing (scripts/setup installs them):\n{lines}")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".gopath-") as gopath:
        # `go install` refuses GOBIN for cross builds; GOPATH alone puts them in bin/<os>_<arch>/.
        env = {**go_env(cache_dir(), arch, cgo=False), "GOPATH": gopath}
        env.pop("GOBIN", None)
        log(f"{label} {VERSION}: go install {PACKAGE} (about 5 min on 2 cores when cold)")
        step = f"{label} go install"
        stream(install_argv(), step, log, PACKAGE_LINE, "packages", env=env, cwd=Path(gopath))
        built = installed_binary(Path(gopath), "metrics-server", arch)
        if not built.is_file():
            raise RuntimeError(f"{label} go install: no binary at {built}")
        if not is_static_elf(built) or elf_arch(built) != arch:
            raise RuntimeError(f"{label}: go install made {built}, not a static {arch} binary")
        argv, run_env = foreign_command([str(built), "--version"], arch)
        said = run(argv, f"{label} --version", run_env, timeout=VERSION_CHECK_TIMEOUT).strip()
        if said != VERSION:
            raise RuntimeError(f"{label} --version: expected {VERSION}, got {said!r}")
        publish(built, target, key)
    return target


def image_key(binary: Path, arch: str) -> str:
    text = "\n".join([IMAGE, artifacts.sha256_file(binary), ENTRYPOINT, USER, LAYOUT_VERSION, arch])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def build(log: Log = print, arch: str = "amd64") -> artifacts.Artifact:
    """The lab's builder: the image for devices of `arch`, as a docker-archive K3S imports."""
    artifacts.check_arch(arch)
    binary = build_binary(log, arch)
    kind = f"metrics-server-{VERSION}"
    directory = images.images_dir()
    target = directory / f"{images.arch_prefix(kind, arch)}{image_key(binary, arch)}.tar"
    if not (target.exists() and target.with_suffix(".json").exists()):
        started = time.monotonic()
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=directory, prefix=".metrics-server-") as tmp:
            layer = Path(tmp) / "layer"
            # /tmp: the manifest mounts an emptyDir there (serving certificates) on a read-only root.
            (layer / "tmp").mkdir(parents=True)
            (layer / "tmp").chmod(0o1777)
            (layer / ENTRYPOINT.lstrip("/")).write_bytes(binary.read_bytes())
            (layer / ENTRYPOINT.lstrip("/")).chmod(0o755)
            config = {
                "architecture": arch,
                "created": images.REPRODUCIBLE_CREATED,
                "config": {
                    "Entrypoint": [ENTRYPOINT],
                    "User": USER,
                    "WorkingDir": "/",
                    "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                },
                "history": [{"created": images.REPRODUCIBLE_CREATED, "created_by": f"{PACKAGE}@{VERSION}"}],
            }
            image = images.write_docker_archive(target, IMAGE, layer, config, mtime=images.REPRODUCIBLE_MTIME)
        images.write_info(image, {"module": MODULE, "version": VERSION})
        for old in images.stale(directory, kind, arch, target, ".tar"):
            old.unlink()
            old.with_suffix(".json").unlink(missing_ok=True)
        log(f"metrics-server ({arch}): {target} ({image.size} bytes) in {time.monotonic() - started:.1f} s")
    return artifacts.record(NAME, VERSION, target, arch=arch)
