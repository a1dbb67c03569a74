"""Helpers for the arm64 tests: images unpacked into trees that arm64 programs run in."""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

CHROOT_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
}


def image_config(path: Path) -> tuple[dict, list[str]]:
    """A docker-archive's image config and its layer members, bottom first."""
    with tarfile.open(path) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))[0]
        return json.load(tar.extractfile(manifest["Config"])), manifest["Layers"]


def unpack_image(path: Path, root: Path) -> None:
    _, names = image_config(path)
    with tarfile.open(path) as tar:
        for name in names:
            with tarfile.open(fileobj=tar.extractfile(name)) as layer:
                layer.extractall(root, filter="fully_trusted", numeric_owner=True)


def chroot(root: Path, *argv: str, timeout: float = 900):
    return subprocess.run(
        ["chroot", str(root), *argv], env=CHROOT_ENV, capture_output=True, text=True, timeout=timeout
    )


def stop(proc: subprocess.Popen) -> None:
    """End a server the test started (its own child, by its handle), waiting for it."""
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
