"""Builds of the upstream components the deploys install, from package registries only.

Each builder is idempotent and cached under the lab cache keyed on versions; each records
what it built in the artifact manifest (`edgefaas lab artifacts`).
"""

from __future__ import annotations

from collections.abc import Callable

from edgefaas.lab.builds.steps import Log


def _rootfs(log: Log) -> None:
    from edgefaas.lab import rootfs

    rootfs.build_tarball(log)


def _wheelhouse(log: Log) -> None:
    from edgefaas.lab.builds import wheelhouse

    wheelhouse.build(log)


def _parsec(log: Log) -> None:
    from edgefaas.lab.builds import parsec

    parsec.build(log)


def _pause_image(log: Log) -> None:
    from edgefaas.lab.builds import images

    images.build_pause_image(log)


def _runtime_image(log: Log) -> None:
    from edgefaas.lab.builds import images

    images.build_runtime_image(log)


def _k3s(log: Log) -> None:
    from edgefaas.lab import artifacts
    from edgefaas.lab.builds import k3s
    from edgefaas.lab.paths import cache_dir

    artifacts.record("k3s", k3s.K3S_VERSION, k3s.build_k3s(cache_dir(), log))
    artifacts.record("flannel-cni", k3s.FLANNEL_CNI_VERSION, k3s.build_flannel_cni(cache_dir(), log))


def _triton(log: Log) -> None:
    from edgefaas.lab.builds import triton

    triton.build(log)


# In the order `edgefaas lab build` runs them when given no names.
BUILDERS: dict[str, Callable[[Log], None]] = {
    "rootfs": _rootfs,
    "wheelhouse": _wheelhouse,
    "parsec": _parsec,
    "pause-image": _pause_image,
    "runtime-image": _runtime_image,
    "k3s": _k3s,
    "triton": _triton,
}
