"""The Python bundle: EdgeFaaS's own interpreter for the services devices run on their hosts.

Real boards do not share one userland: a Jetson Nano on JetPack 4 has Ubuntu 18.04's
Python 3.6 and glibc 2.27, JetPack 5 has Python 3.8 and glibc 2.31, a SONiC switch Debian
bullseye or bookworm. The host services written in Python (the authentication agent and
server, the gateway, the function synchroniser, `edgefaas parsec`) therefore never use the
device's own Python. They run from this bundle: the runtime image's Debian bookworm tree
(Python 3.11 and the C library it was built with), started through the bundle's own
dynamic loader, so neither the device's Python nor its glibc matters
(`edgefaas.deploy.python_bundle` writes the launcher).

It is the very tree of the runtime image's base layer, packed as a gzip tar that any device
can unpack, so the pods and the hosts run the same interpreter, built once per architecture.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

from edgefaas.lab import artifacts
from edgefaas.lab.builds import images
from edgefaas.lab.builds.steps import Log

NAME = "python-bundle"
# The interpreter in the tree (Debian bookworm's), relative to the bundle's root.
PYTHON_VERSION = "3.11"
INTERPRETER = f"usr/bin/python{PYTHON_VERSION}"


def bundle_path(key: str, arch: str) -> Path:
    return images.images_dir() / f"{images.arch_prefix(NAME, arch)}{key}.tar.gz"


def build(log: Log = print, arch: str = "amd64") -> artifacts.Artifact:
    """Build (or reuse) the bundle for `arch` from the runtime image's cached Debian tree."""
    from edgefaas.lab import binfmt

    arch = artifacts.check_arch(arch)
    with binfmt.emulation(f"build:{os.getpid()}", arch, log):
        base = images.build_runtime_base(log, arch)
    key = images.base_key_for(arch)
    target = bundle_path(key, arch)
    if not target.exists():
        started = time.monotonic()
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{NAME}-") as tmp:
            partial = Path(tmp) / target.name
            # gzip, not zstd: every device can unpack it with the tar it already has. -n keeps
            # the bytes the same from build to build, so deploys see no change.
            with open(partial, "wb") as out:
                unpack = subprocess.Popen(["zstd", "-dcq", str(base)], stdout=subprocess.PIPE)
                pack = subprocess.run(["gzip", "-n", "-6"], stdin=unpack.stdout, stdout=out, check=False)
                unpack.stdout.close()
                if unpack.wait() != 0 or pack.returncode != 0:
                    raise RuntimeError(f"{NAME} ({arch}): repacking {base} failed")
            partial.replace(target)
        for old in images.stale(target.parent, NAME, arch, target, ".tar.gz"):
            old.unlink()
        size = target.stat().st_size >> 20
        log(f"{NAME} ({arch}): {target} ({size} MiB) in {time.monotonic() - started:.0f} s")
    return artifacts.record(NAME, key, target, arch=arch)
