"""The EdgeFaaS Python package and its dependencies as wheels, for devices with no index.

Devices in an edge lab usually cannot reach a package index, so the deploys carry the
project's own wheel and its dependencies' wheels to them in one tarball and install
with `pip --no-index`. The dependencies are pure Python or have manylinux wheels for the
devices' CPython (Debian bookworm's 3.11), so one machine builds for any architecture.
"""

from __future__ import annotations

import hashlib
import sys
import tarfile
import tempfile
from pathlib import Path

from edgefaas.lab import artifacts
from edgefaas.lab.builds.steps import Log, run
from edgefaas.lab.paths import cache_dir

REPO = Path(__file__).resolve().parents[4]
DEVICE_PYTHON = "3.11"
# Extras the devices need besides the core client tools (click, PyYAML, protobuf).
DEVICE_EXTRAS: tuple[str, ...] = ("gateway", "vision", "nodeauth", "sonic")
# Debian bookworm's glibc is 2.36, so a wheel for any manylinux up to 2_36 runs on the devices.
# pip takes each --platform literally except manylinux2014, which it widens to 2010 and 1
# (tritonclient is manylinux1); tflite-runtime for aarch64 is manylinux_2_34.
DEVICE_GLIBC_MINOR = 36


def _platforms(arch: str) -> list[str]:
    tags = [f"manylinux2014_{arch}", *(f"manylinux_2_{m}_{arch}" for m in range(DEVICE_GLIBC_MINOR, 16, -1))]
    return [arg for tag in tags for arg in ("--platform", tag)]


def _source_key() -> str:
    digest = hashlib.sha256()
    files = [REPO / "pyproject.toml", *sorted((REPO / "src").rglob("*"))]
    for path in files:
        if path.is_file() and not any(p == "__pycache__" or p.endswith(".egg-info") for p in path.parts):
            digest.update(str(path.relative_to(REPO)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def build(log: Log = print, arch: str = "amd64") -> artifacts.Artifact:
    """Build (or reuse) the wheelhouse tarball for devices of `arch` (amd64, arm64)."""
    machine = artifacts.GNU_ARCH[artifacts.check_arch(arch)]
    if not (REPO / "pyproject.toml").exists():
        raise RuntimeError("wheelhouse: build it from a checkout of the project (pip install -e .)")
    key = _source_key()
    target = cache_dir() / "wheelhouse" / f"edgefaas-wheelhouse-{machine}-{key}.tar"
    if target.exists():
        return artifacts.record("edgefaas-wheelhouse", key, target, arch=arch)
    target.parent.mkdir(parents=True, exist_ok=True)
    log(f"wheelhouse: building the edgefaas wheel and fetching its dependencies for {arch}")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        wheels = Path(tmp) / "wheels"
        run([*pip, "wheel", "--no-deps", "-w", str(wheels), str(REPO)], "wheelhouse: build edgefaas wheel")
        project = next(wheels.glob("edgefaas-*.whl"))
        extras = f"[{','.join(DEVICE_EXTRAS)}]" if DEVICE_EXTRAS else ""
        target_python = ["--python-version", DEVICE_PYTHON, "--implementation", "cp"]
        platforms = _platforms(machine)
        run(
            [
                *pip,
                "download",
                "-d",
                str(wheels),
                "--only-binary=:all:",
                *target_python,
                *platforms,
                f"edgefaas{extras} @ {project.as_uri()}",
            ],
            "wheelhouse: download dependencies",
        )
        partial = Path(tmp) / "wheelhouse.tar"
        with tarfile.open(partial, "w") as tar:
            for wheel in sorted(wheels.glob("*.whl")):
                tar.add(wheel, arcname=wheel.name)
        for old in target.parent.glob(f"edgefaas-wheelhouse-{machine}-*.tar"):
            old.unlink()
        partial.replace(target)
    log(f"wheelhouse: {target.name}")
    return artifacts.record("edgefaas-wheelhouse", key, target, arch=arch)
