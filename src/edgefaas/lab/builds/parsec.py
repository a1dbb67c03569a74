"""The real Parsec service and parsec-tool, built with cargo from the crates registry.

Both are pinned; the cache key is the version, the feature set and the Rust toolchain,
so a warm machine reuses them and any change rebuilds. Cargo's own registry cache and a
target directory under the lab cache make rebuilds incremental.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from edgefaas.lab import artifacts
from edgefaas.lab.builds.steps import Log, run, stream
from edgefaas.lab.paths import artifact_dir, cache_dir

PARSEC_SERVICE_VERSION = "1.5.0"
# The default feature set already has the unix-peer-credentials authenticator.
PARSEC_SERVICE_FEATURES = ("mbed-crypto-provider", "direct-authenticator")
PARSEC_TOOL_VERSION = "0.7.0"  # newer parsec-tool does not build plainly from the crates registry

COMPILING = re.compile(r"^\s*(Compiling|Downloaded|Downloading)\b")


def _toolchain() -> str:
    if not shutil.which("cargo"):
        raise RuntimeError(
            "parsec: cargo is not installed (rustup's toolchain >= 1.85 is needed for parsec-service 1.5.0)"
        )
    return run(["rustc", "--version"], "parsec: rustc --version").strip()


def _install(crate: str, version: str, features: tuple[str, ...], binary: str, log: Log) -> Path:
    root = artifact_dir() / f"{crate}-{version}"
    target = root / "bin" / binary
    key = {"crate": crate, "version": version, "features": list(features), "rustc": _toolchain()}
    stamp = root / "build-info.json"
    if target.exists() and stamp.exists() and json.loads(stamp.read_text()) == key:
        return target
    log(f"{crate}: cargo install {version} (5-10 minutes on 2 cores)")
    argv = ["cargo", "install", crate, "--version", version, "--locked", "--force", "--root", str(root)]
    if features:
        argv += ["--features", ",".join(features)]
    argv += ["--target-dir", str(cache_dir() / "cargo-target" / crate)]
    stream(argv, crate, log, COMPILING, "crates", env=dict(os.environ))
    stamp.write_text(json.dumps(key, indent=2) + "\n")
    return target


def build(log: Log = print, arch: str = "amd64") -> list[artifacts.Artifact]:
    """Build (or reuse) parsec-service and parsec-tool for `arch` and record them in the manifest."""
    if arch != artifacts.native_arch():
        raise RuntimeError(f"parsec: no {arch} build yet (this machine builds {artifacts.native_arch()})")
    service = _install("parsec-service", PARSEC_SERVICE_VERSION, PARSEC_SERVICE_FEATURES, "parsec", log)
    tool = _install("parsec-tool", PARSEC_TOOL_VERSION, (), "parsec-tool", log)
    return [
        artifacts.record("parsec-service", PARSEC_SERVICE_VERSION, service, arch=arch),
        artifacts.record("parsec-tool", PARSEC_TOOL_VERSION, tool, arch=arch),
    ]
