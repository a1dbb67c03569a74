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


# In the order `edgefaas lab build` runs them when given no names.
BUILDERS: dict[str, Callable[[Log], None]] = {
    "rootfs": _rootfs,
    "wheelhouse": _wheelhouse,
    "parsec": _parsec,
}
