"""Builds of the upstream components the deploys install, from package registries only.

Each builder is idempotent, cached under the lab cache keyed on versions and architecture,
and records what it built in the artifact manifest (`edgefaas lab artifacts`). A builder
takes the architecture of the devices it builds for (Debian's name: amd64, arm64); builds
for another architecture than the build machine's are cross builds that never need to run
foreign code, except where a module says otherwise.
"""

from __future__ import annotations

from collections.abc import Callable

from edgefaas.lab.builds.steps import Log

Builder = Callable[[Log, str], object]


def _rootfs(log: Log, arch: str) -> None:
    from edgefaas.lab import rootfs

    rootfs.build_tarball(log, arch=arch)


def _wheelhouse(log: Log, arch: str) -> None:
    from edgefaas.lab.builds import wheelhouse

    wheelhouse.build(log, arch=arch)


def _parsec(log: Log, arch: str) -> None:
    from edgefaas.lab.builds import parsec

    parsec.build(log, arch=arch)


def _pause_image(log: Log, arch: str) -> None:
    from edgefaas.lab.builds import images

    images.build_pause_image(log, arch=arch)


def _runtime_image(log: Log, arch: str) -> None:
    from edgefaas.lab.builds import images

    images.build_runtime_image(log, arch=arch)


def _python_bundle(log: Log, arch: str) -> None:
    from edgefaas.lab.builds import python_bundle

    python_bundle.build(log, arch=arch)


def _k3s(log: Log, arch: str) -> None:
    from edgefaas.lab.builds import k3s

    k3s.build(log, arch=arch)


def _triton(log: Log, arch: str) -> None:
    from edgefaas.lab.builds import triton

    triton.build(log, arch=arch)


def _example_image(log: Log, arch: str) -> None:
    from edgefaas.lab.builds import function_image

    function_image.build(log, arch=arch)


def _metrics_server_image(log: Log, arch: str) -> None:
    from edgefaas.lab.builds import metrics_server

    metrics_server.build(log, arch=arch)


# In the order `edgefaas lab build` runs them when given no names.
BUILDERS: dict[str, Builder] = {
    "rootfs": _rootfs,
    "wheelhouse": _wheelhouse,
    "parsec": _parsec,
    "pause-image": _pause_image,
    "runtime-image": _runtime_image,
    "python-bundle": _python_bundle,
    "k3s": _k3s,
    "triton": _triton,
    "example-image": _example_image,
    "metrics-server-image": _metrics_server_image,
}
