"""What every Go build of the lab shares: the pinned toolchain, the go commands'
environment per target architecture, and the build stamps that let a cached binary be
reused only when it was built from the same pins.

Used by the k3s build (k3s, flannel's CNI plugin) and the metrics-server image.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from edgefaas.lab.artifacts import GNU_ARCH, native_arch
from edgefaas.lab.builds import prerequisites

GO_TOOLCHAIN = "go1.26.8"
GO_PARALLELISM = 2

# What `go build -v` prints per package compiled: progress counts these lines.
PACKAGE_LINE = re.compile(r"^[\w.\-~]+(/[\w.\-~+]+)*$")


def go_env(cache_dir: Path, arch: str = "amd64", cgo: bool = True) -> dict[str, str]:
    """Environment for every go command: caches under cache_dir, pinned toolchain, 2 jobs,
    and the target `arch` (with its C cross compiler when cgo is on and `arch` is foreign).

    GOPROXY and GOSUMDB are left as the machine has them: the proxy also mirrors the
    checksum database, which the go command then reaches through it. The Go build cache
    is shared by every architecture: its entries are keyed on GOARCH and CC already.
    """
    env = dict(os.environ)
    # Go's tarball installs into a directory a root shell's PATH often lacks; the
    # prerequisite check looks there too, so the build must as well.
    env["PATH"] = os.pathsep.join([env.get("PATH", os.defpath), *prerequisites.TOOL_DIRS])
    env.update(
        GOMODCACHE=str(cache_dir / "go" / "mod"),
        GOCACHE=str(cache_dir / "go" / "build"),
        GOTOOLCHAIN=GO_TOOLCHAIN,
        GOFLAGS=f"-p={GO_PARALLELISM} -buildvcs=false",
        CGO_ENABLED="1" if cgo else "0",
        GO111MODULE="on",
        GOOS="linux",
        GOARCH=arch,
    )
    env.pop("GOWORK", None)
    if cgo and arch != native_arch():
        env.update(_cross_cgo_env(arch))
    return env


def _cross_cgo_env(arch: str) -> dict[str, str]:
    """cgo through Debian's cross compiler, with pkg-config answering from the target's
    multiarch directory only, so libseccomp's flags are the arm64 library's and no host
    .pc file leaks in."""
    triplet = f"{GNU_ARCH[arch]}-linux-gnu"
    return {
        "CC": f"{triplet}-gcc",
        "PKG_CONFIG_LIBDIR": f"/usr/lib/{triplet}/pkgconfig:/usr/share/pkgconfig",
        "PKG_CONFIG_PATH": "",
    }


def is_cached(path: Path, key: Mapping[str, str]) -> bool:
    stamp = _stamp_path(path)
    try:
        recorded = json.loads(stamp.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return False
    return path.is_file() and recorded.get("key") == dict(key)


def publish(partial: Path, final: Path, key: Mapping[str, str]) -> None:
    """Move the finished file into place, then its stamp: a crash between leaves no stamp,
    so the next call rebuilds rather than trusting a file it cannot vouch for."""
    partial.chmod(0o755)
    stamp = _stamp_path(final)
    stamp.unlink(missing_ok=True)
    os.replace(partial, final)
    fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=".stamp-")
    with os.fdopen(fd, "w") as out:
        built_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        json.dump({"key": dict(key), "built_at": built_at}, out)
    os.chmod(tmp, 0o644)
    os.replace(tmp, stamp)


def _stamp_path(path: Path) -> Path:
    return path.with_name(f"{path.name}.build.json")


def installed_binary(gopath: Path, name: str, arch: str) -> Path:
    if arch == native_arch():
        return gopath / "bin" / name
    return gopath / "bin" / f"linux_{arch}" / name


def step_label(what: str, arch: str) -> str:
    """Step names carry the architecture, so a failure says which build it was."""
    return f"{what} ({arch})"
