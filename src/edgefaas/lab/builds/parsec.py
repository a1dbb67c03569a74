"""The real Parsec service and parsec-tool, built with cargo from the crates registry.

Both are linked statically (Rust's crt-static for the GNU target), so one binary runs on
any device's C library: JetPack 4's glibc 2.27 and JetPack 5's 2.31 as well as the build
machine's 2.36. Neither resolves host names (Parsec speaks over a Unix socket), which is what
a static glibc cannot do well.

Both are pinned; the cache key is the version, the feature set, the Rust toolchain and the
target, so a warm machine reuses them and any change rebuilds. Cargo's own registry cache and
a target directory under the lab cache make rebuilds incremental.

For arm64 on an amd64 machine, cargo cross-compiles with Rust's aarch64-unknown-linux-gnu
standard library and Debian's aarch64 cross gcc, which links the binaries and compiles Mbed
TLS (its cmake build, through the cc and cmake crates) and the sysroot bindgen reads headers
from. Nothing foreign runs during the build.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from edgefaas.lab import artifacts
from edgefaas.lab.builds import prerequisites
from edgefaas.lab.builds.steps import Log, elf_arch, is_static_elf, run, stream
from edgefaas.lab.paths import artifact_dir, cache_dir

PARSEC_SERVICE_VERSION = "1.5.0"
# The default feature set already has the unix-peer-credentials authenticator.
PARSEC_SERVICE_FEATURES = ("mbed-crypto-provider", "direct-authenticator")
PARSEC_TOOL_VERSION = "0.7.0"  # newer parsec-tool does not build plainly from the crates registry

COMPILING = re.compile(r"^\s*(Compiling|Downloaded|Downloading)\b")


def rust_target(arch: str) -> str:
    return f"{artifacts.GNU_ARCH[arch]}-unknown-linux-gnu"


def cross_env(arch: str) -> dict[str, str]:
    """What cargo, cc-rs, cmake and bindgen need to build for a foreign `arch` (empty if native)."""
    if arch == artifacts.native_arch():
        return {}
    gnu = artifacts.GNU_ARCH[arch]
    triple = rust_target(arch)
    under = triple.replace("-", "_")
    sysroot = f"/usr/{gnu}-linux-gnu"
    return {
        f"CARGO_TARGET_{under.upper()}_LINKER": f"{gnu}-linux-gnu-gcc",
        f"CC_{under}": f"{gnu}-linux-gnu-gcc",
        f"AR_{under}": f"{gnu}-linux-gnu-ar",
        f"BINDGEN_EXTRA_CLANG_ARGS_{under}": f"--sysroot={sysroot} -I{sysroot}/include",
        "PKG_CONFIG_ALLOW_CROSS": "1",
    }


def static_env(arch: str) -> dict[str, str]:
    """crt-static for the target only: build scripts and proc-macros stay dynamic host code."""
    under = rust_target(arch).replace("-", "_").upper()
    return {f"CARGO_TARGET_{under}_RUSTFLAGS": "-C target-feature=+crt-static"}


def _toolchain() -> str:
    return run(["rustc", "--version"], "parsec: rustc --version").strip()


def install_root(crate: str, version: str, arch: str) -> Path:
    """Where a crate's binaries land: the amd64 path predates architectures and stays."""
    suffix = "" if arch == "amd64" else f"-{arch}"
    return artifact_dir() / f"{crate}-{version}{suffix}"


def _install(crate: str, version: str, features: tuple[str, ...], binary: str, log: Log, arch: str) -> Path:
    root = install_root(crate, version, arch)
    target = root / "bin" / binary
    key = {"crate": crate, "version": version, "features": list(features), "rustc": _toolchain()}
    cross = arch != artifacts.native_arch()
    key["target"] = rust_target(arch)
    key["static"] = True
    stamp = root / "build-info.json"
    if target.exists() and stamp.exists() and json.loads(stamp.read_text()) == key:
        return target
    step = f"{crate} ({arch})"
    log(f"{step}: cargo install {version} (5-10 minutes on 2 cores)")
    argv = ["cargo", "install", crate, "--version", version, "--locked", "--force", "--root", str(root)]
    if features:
        argv += ["--features", ",".join(features)]
    target_dir = cache_dir() / "cargo-target" / (crate if not cross else f"{crate}-{arch}")
    argv += ["--target-dir", str(target_dir)]
    # An explicit target even when native: crt-static then reaches only the target's code.
    argv += ["--target", rust_target(arch)]
    stream(argv, step, log, COMPILING, "crates", env={**os.environ, **cross_env(arch), **static_env(arch)})
    built = elf_arch(target)
    if built != arch:
        raise RuntimeError(f"{step}: cargo built {target} for {built}, not {arch}")
    if not is_static_elf(target):
        raise RuntimeError(f"{step}: cargo linked {target} dynamically; devices' C libraries vary")
    stamp.write_text(json.dumps(key, indent=2) + "\n")
    return target


def build(log: Log = print, arch: str = "amd64") -> list[artifacts.Artifact]:
    """Build (or reuse) parsec-service and parsec-tool for `arch` and record them in the manifest."""
    absent = prerequisites.missing(["parsec"], [artifacts.check_arch(arch)])
    if absent:
        raise RuntimeError(
            f"parsec ({arch}): missing prerequisites:\n" + "\n".join(f"  {p.describe()}" for p in absent)
        )
    service = _install("parsec-service", PARSEC_SERVICE_VERSION, PARSEC_SERVICE_FEATURES, "parsec", log, arch)
    tool = _install("parsec-tool", PARSEC_TOOL_VERSION, (), "parsec-tool", log, arch)
    return [
        artifacts.record("parsec-service", PARSEC_SERVICE_VERSION, service, arch=arch),
        artifacts.record("parsec-tool", PARSEC_TOOL_VERSION, tool, arch=arch),
    ]
