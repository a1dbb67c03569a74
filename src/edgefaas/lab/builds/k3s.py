"""Build a real k3s binary (and flannel's CNI plugin) from the Go module proxy.

Nothing on PyPI, npm or Debian ships k3s, and the lab machine reaches no GitHub, so the
lab compiles k3s from its Go module. The module proxy reachable here is a sparse mirror:
it answers 403 "This module version is not available" for any k3s version it does not
hold, branch names and `@v/list` included. The newest k3s revision found that it serves
is commit 0dc63334, the k3s v1.25.4+k3s1 release (Kubernetes 1.25.4). Its `go.sum`
checks go through the proxy's sum.golang.org mirror, so no GOSUMDB/GONOSUMDB change is
needed.

One dependency of that revision lives on a module host the proxy refuses
(`inet.af/tcpproxy`); the same commit is served under its GitHub path, so the build
swaps it in with a `replace` whose checksums are pinned below.

k3s v1.25 writes a containerd config in the v2 format and expects containerd 1.6,
containerd-shim-runc-v2, runc and the standard CNI plugins on PATH: Debian 12's
`containerd`, `runc` and `containernetworking-plugins` packages provide them (the
`containerd` symlink to this binary is a stub in v1.25). Only the `flannel` CNI plugin is
missing from Debian's package; `build_flannel_cni` builds it.

The binary is static: it depends on no C library of the device (see K3S_BUILD_TAGS).

Builds for arm64 devices (Jetson boards, many SONiC switches) on an amd64 machine are cross
builds: k3s needs cgo (libseccomp, sqlite), so it is compiled with Debian's
aarch64-linux-gnu-gcc against the arm64 multiarch libseccomp-dev; flannel's plugin is pure
Go. The one foreign program run is the new k3s's `--version`, under qemu-user (never
through binfmt_misc, which would change how the whole machine runs arm64 files).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from edgefaas.lab import artifacts
from edgefaas.lab.artifacts import check_arch
from edgefaas.lab.builds import prerequisites
from edgefaas.lab.builds.gobuild import (
    GO_TOOLCHAIN,
    PACKAGE_LINE,
    go_env,
    installed_binary,
    is_cached,
    publish,
    step_label,
)
from edgefaas.lab.builds.steps import Log, foreign_command, is_static_elf, run, stream
from edgefaas.lab.paths import cache_dir

K3S_MODULE = "github.com/k3s-io/k3s"
K3S_PSEUDO_VERSION = "v1.25.5-0.20221115215439-0dc63334c0db"
K3S_COMMIT = "0dc63334c0db3e7b99244427615e091909fc486e"
K3S_VERSION = "v1.25.4+k3s1"
K3S_MODULE_SUM = "h1:62LPZgwik1d7yQ9xs0iOOIGEF6Ywbjyv4PqVyAaoMBo="

K3S_CRICTL_VERSION = "v1.25.0-k3s1"

# No `ctrd` tag (newer k3s need it): v1.25 does not link containerd in; with the tag the
# containerd 1.5 CRI code it pulls in does not compile against v1.25's CRI API.
# Linked statically (as upstream ships k3s), so one binary runs on any device's C library:
# JetPack 4's glibc 2.27 and JetPack 5's 2.31 as well as the build machine's 2.36. Hence
# Go's own resolver (`netgo`): a static glibc's getaddrinfo would load the device's NSS
# modules, which are built for another glibc.
K3S_BUILD_TAGS = (
    "netgo",
    "osusergo",
    "providerless",
    "urfave_cli_no_docs",
    "sqlite_omit_load_extension",
    "apparmor",
    "seccomp",
)

K3S_EXTRA_REPLACES: tuple[tuple[str, str], ...] = (
    ("inet.af/tcpproxy", "github.com/inetaf/tcpproxy@v0.0.0-20200125044825-b6bb9b5b8252"),
)
K3S_EXTRA_SUMS: tuple[str, ...] = (
    "github.com/inetaf/tcpproxy v0.0.0-20200125044825-b6bb9b5b8252 "
    "h1:jeqlfkFa5h+Ak/I33QpU4p01nFhw0G5IFm/Rsenne2Y=",
    "github.com/inetaf/tcpproxy v0.0.0-20200125044825-b6bb9b5b8252/go.mod "
    "h1:R6mExYS3O0XXjOZye3GtXfbuGF4hWQnF45CFWoj7O6g=",
)

FLANNEL_CNI_PACKAGE = "github.com/containernetworking/plugins/plugins/meta/flannel"
FLANNEL_CNI_VERSION = "v0.9.1"

VERSION_CHECK_TIMEOUT = 300.0


def build(log: Log = print, arch: str = "amd64") -> None:
    """Build (or reuse) k3s and flannel's CNI plugin for devices of `arch` and record them."""
    check_arch(arch)
    artifacts.record("k3s", K3S_VERSION, build_k3s(cache_dir(), log, arch), arch=arch)
    artifacts.record("flannel-cni", FLANNEL_CNI_VERSION, build_flannel_cni(cache_dir(), log, arch), arch=arch)


def _arch_suffix(arch: str) -> str:
    # amd64 builds came first and their paths predate architectures: keeping them as they
    # were keeps existing caches (and deploys pointed at them) valid.
    return "" if arch == "amd64" else f"-{arch}"


def k3s_binary_path(cache_dir: Path, arch: str = "amd64") -> Path:
    """Where `build_k3s` leaves the binary, so callers can look without building."""
    return cache_dir / "artifacts" / f"k3s-{K3S_VERSION}{_arch_suffix(arch)}" / "k3s"


def flannel_cni_path(cache_dir: Path, arch: str = "amd64") -> Path:
    """Where `build_flannel_cni` leaves the plugin, named as k3s expects it."""
    return cache_dir / "artifacts" / f"flannel-cni-{FLANNEL_CNI_VERSION}{_arch_suffix(arch)}" / "flannel"


def k3s_cache_key(arch: str = "amd64") -> dict[str, str]:
    """What a cached k3s binary must have been built from to be reused."""
    key = {
        "module": K3S_MODULE,
        "revision": K3S_PSEUDO_VERSION,
        "toolchain": GO_TOOLCHAIN,
        "tags": " ".join(K3S_BUILD_TAGS),
        "ldflags": _k3s_ldflags(),
        "replaces": " ".join(f"{old}={new}" for old, new in K3S_EXTRA_REPLACES),
    }
    return _with_arch(key, arch)


def flannel_cni_cache_key(arch: str = "amd64") -> dict[str, str]:
    key = {
        "package": FLANNEL_CNI_PACKAGE,
        "revision": FLANNEL_CNI_VERSION,
        "toolchain": GO_TOOLCHAIN,
    }
    return _with_arch(key, arch)


def _with_arch(key: dict[str, str], arch: str) -> dict[str, str]:
    # amd64 stamps were written before keys named an architecture; adding one to them
    # would throw away every warm amd64 build.
    return key if arch == "amd64" else {**key, "arch": arch}


def build_k3s(cache_dir: Path, log: Log = print, arch: str = "amd64") -> Path:
    """Build k3s's multi-call binary (server, agent, kubectl, crictl, ctr) once and cache it.

    This is k3s's inner binary, without upstream's self-extracting wrapper: `k3s server`
    and `k3s agent` work as is, while kubectl, crictl and ctr answer only through symlinks
    of those names (the `k3s kubectl` form is the wrapper's).

    A cold build takes about 15 minutes on two cores and 2 GB of RAM at link time, so the
    result is kept under `cache_dir` with a stamp of the revision and toolchain that made
    it; a later call with the same pins returns it at once. Progress goes through `log`
    while compiling. Raises RuntimeError naming the step that failed.

    For another `arch` than the machine's this is a cgo cross build (see the module's
    docstring); the result lives beside the native one under an arch-suffixed name.
    """
    binary = k3s_binary_path(cache_dir, arch)
    key = k3s_cache_key(arch)
    label = step_label("k3s", arch)
    if is_cached(binary, key):
        log(f"{label} {K3S_VERSION}: cached at {binary}")
        return binary

    require_prerequisites(arch)
    env = go_env(cache_dir, arch, cgo=True)

    log(f"{label} {K3S_VERSION}: downloading {K3S_MODULE}@{K3S_PSEUDO_VERSION}")
    module_dir = _download_module(K3S_MODULE, K3S_PSEUDO_VERSION, K3S_MODULE_SUM, env)

    # One tree per architecture: builds for two architectures may run at once.
    work = cache_dir / "go" / "src" / f"k3s-{K3S_PSEUDO_VERSION}{_arch_suffix(arch)}"
    _fresh_copy(module_dir, work)
    _prepare_k3s_tree(work, env)

    binary.parent.mkdir(parents=True, exist_ok=True)
    log(f"{label} {K3S_VERSION}: compiling with {GO_TOOLCHAIN} (about 15-20 min on 2 cores)")
    with tempfile.TemporaryDirectory(dir=binary.parent, prefix=".build-") as out:
        partial = Path(out) / binary.name
        argv = [*k3s_build_argv(), "-o", str(partial), "./cmd/server"]
        stream(argv, f"{label} go build", log, PACKAGE_LINE, "packages", env=env, cwd=work)
        _check_version(partial, K3S_VERSION, f"{label} --version", log, arch)
        if not is_static_elf(partial):
            raise RuntimeError(f"{label}: go build linked a dynamic binary; devices' C libraries vary")
        publish(partial, binary, key)
    shutil.rmtree(work, ignore_errors=True)
    log(f"{label} {K3S_VERSION}: built {binary}")
    return binary


def k3s_build_argv() -> list[str]:
    """`go build` of k3s, less its output and package (the target comes from the environment)."""
    return ["go", "build", "-v", "-tags", " ".join(K3S_BUILD_TAGS), "-ldflags", _k3s_ldflags()]


def require_prerequisites(arch: str) -> None:
    """Raise RuntimeError naming each missing prerequisite of a k3s build for `arch` and the
    command that installs it, before minutes are spent downloading and compiling."""
    absent = prerequisites.missing(["k3s"], [arch])
    if absent:
        lines = "\n".join(f"  missing: {item.describe()}" for item in absent)
        count = f"{len(absent)} prerequisite(s) missing (scripts/setup installs them all)"
        raise RuntimeError(f"k3s for {arch}: {count}:\n{lines}")


def build_flannel_cni(cache_dir: Path, log: Log = print, arch: str = "amd64") -> Path:
    """Build the `flannel` CNI plugin that k3s's flannel backend delegates pod networking to.

    flannel-io/cni-plugin is not served by the module proxy here, and Debian's
    containernetworking-plugins leaves flannel out. containernetworking/plugins v0.9.1 still
    carries the same plugin (it moved to flannel-io later), has no replace directives, and
    is served, so `go install` builds it. It only writes a bridge/host-local config from
    /run/flannel/subnet.env and execs those plugins, so it must sit beside them (e.g. in
    /usr/lib/cni or k3s's data-dir bin).

    This plugin speaks CNI up to 0.4.0 and refuses the "1.0.0" conflist k3s v1.25 writes
    ("incompatible CNI versions"): start k3s with `--flannel-cni-conf` naming the same
    conflist (flannel, then portmap) with "cniVersion": "0.4.0".
    """
    target = flannel_cni_path(cache_dir, arch)
    key = flannel_cni_cache_key(arch)
    label = step_label("flannel CNI", arch)
    if is_cached(target, key):
        log(f"{label} {FLANNEL_CNI_VERSION}: cached at {target}")
        return target

    require_prerequisites(arch)
    env = go_env(cache_dir, arch, cgo=False)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".gopath-") as gopath:
        # `go install` refuses GOBIN for cross-compiled binaries; with GOPATH alone it
        # installs native ones in bin/ and others in bin/<goos>_<goarch>/.
        env = {**env, "GOPATH": gopath}
        env.pop("GOBIN", None)
        log(f"{label} {FLANNEL_CNI_VERSION}: go install {FLANNEL_CNI_PACKAGE}")
        argv = flannel_cni_install_argv()
        stream(argv, f"{label} go install", log, PACKAGE_LINE, "packages", env=env, cwd=Path(gopath))
        built = installed_binary(Path(gopath), "flannel", arch)
        if not built.is_file():
            raise RuntimeError(f"{label} go install: no binary at {built}")
        publish(built, target, key)
    log(f"{label} {FLANNEL_CNI_VERSION}: built {target}")
    return target


def flannel_cni_install_argv() -> list[str]:
    return ["go", "install", "-v", "-ldflags", "-s -w", f"{FLANNEL_CNI_PACKAGE}@{FLANNEL_CNI_VERSION}"]


def _k3s_ldflags() -> str:
    """Version stamps as upstream's scripts/build sets them, so `k3s --version` and
    `kubectl version` report the release rather than "dev"."""
    return " ".join(
        (
            "-s -w",
            f"-X {K3S_MODULE}/pkg/version.Version={K3S_VERSION}",
            f"-X {K3S_MODULE}/pkg/version.GitCommit={K3S_COMMIT[:8]}",
            f"-X k8s.io/component-base/version.gitVersion={K3S_VERSION}",
            f"-X k8s.io/component-base/version.gitCommit={K3S_COMMIT}",
            "-X k8s.io/component-base/version.gitTreeState=clean",
            f"-X k8s.io/client-go/pkg/version.gitVersion={K3S_VERSION}",
            f"-X k8s.io/client-go/pkg/version.gitCommit={K3S_COMMIT}",
            f"-X github.com/kubernetes-sigs/cri-tools/pkg/version.Version={K3S_CRICTL_VERSION}",
            "-extldflags '-static'",
        )
    )


def _download_module(module: str, version: str, expected_sum: str, env: Mapping[str, str]) -> Path:
    step = f"go mod download {module}@{version}"
    output = run(["go", "mod", "download", "-json", f"{module}@{version}"], step, env)
    try:
        info = json.loads(output)
    except json.JSONDecodeError as exc:
        raise RuntimeError(f"{step}: unreadable answer: {output[-500:]}") from exc
    if info.get("Error"):
        raise RuntimeError(f"{step}: {info['Error']}")
    if info.get("Sum") != expected_sum:
        raise RuntimeError(f"{step}: checksum {info.get('Sum')} is not the pinned {expected_sum}")
    return Path(info["Dir"])


def _fresh_copy(source: Path, work: Path) -> None:
    """Copy a read-only module cache directory to a writable tree the build may edit."""
    shutil.rmtree(work, ignore_errors=True)
    work.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, work, copy_function=shutil.copyfile)
    for root, dirs, files in os.walk(work):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o755)
        for name in files:
            os.chmod(os.path.join(root, name), 0o644)


def _prepare_k3s_tree(work: Path, env: Mapping[str, str]) -> None:
    """Make the module tree buildable outside k3s's own scripts.

    k3s releases from v1.26 on embed manifests from pkg/deploy/embed, which their scripts
    fill from manifests/; older ones, like the pinned v1.25, carry generated bindata.
    """
    if not (work / "pkg" / "deploy" / "zz_generated_bindata.go").exists():
        embed = work / "pkg" / "deploy" / "embed"
        embed.mkdir(parents=True, exist_ok=True)
        shutil.copytree(work / "manifests", embed, dirs_exist_ok=True)
    for old, new in K3S_EXTRA_REPLACES:
        run(["go", "mod", "edit", f"-replace={old}={new}"], "k3s go.mod edit", env, cwd=work)
    with open(work / "go.sum", "a") as sums:
        sums.write("".join(f"{line}\n" for line in K3S_EXTRA_SUMS))


def _check_version(binary: Path, version: str, step: str, log: Log, arch: str = "amd64") -> None:
    argv, env = foreign_command([str(binary), "--version"], arch)
    # Seconds natively and under emulation; a bound turns an emulator that hangs into an
    # error instead of a build that never ends.
    output = run(argv, step, env, timeout=VERSION_CHECK_TIMEOUT)
    if version not in output:
        raise RuntimeError(f"{step}: expected {version}, got {output.strip()!r}")
    log(f"{step}: {output.strip().splitlines()[0]}")
