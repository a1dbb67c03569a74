"""What every build, the lab and the test harness need on the build machine, in one place.

`scripts/setup` installs exactly the Debian packages and Rust targets listed here (it runs
this module with the system's python3 before the project's virtualenv exists, so the
module uses the standard library only); `edgefaas lab build --check` verifies all of them
in seconds without building; each build checks its own before it starts. A prerequisite
a build needs but this table lacks is the bug this module exists to prevent: a warm
machine that hides a missing install step.

Two toolchains come with the machine rather than from Debian, whose bookworm packages are
too old for the pinned builds (Go 1.19, Rust 1.63): Go >= 1.21 (it fetches the pinned
toolchain through the module proxy) and Rust by rustup (parsec-service 1.5.0 needs 1.85).
The check names them with the command that installs them.

    python3 -m edgefaas.lab.builds.prerequisites --apt --arch all   # what setup installs
    python3 -m edgefaas.lab.builds.prerequisites --check --arch all # what is missing
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass

from edgefaas.lab.artifacts import ARCHES, UnsupportedArch, native_arch

# Where rustup and Go's tarball install, which a root shell's PATH often lacks.
TOOL_DIRS = (os.path.expanduser("~/.cargo/bin"), "/usr/local/go/bin")
GO_MINIMUM = (1, 21)
RUST_MINIMUM = (1, 85)


@dataclass(frozen=True)
class Prerequisite:
    kind: str  # "deb" (a Debian package, "name:arch" for a foreign one), "rust-target" or "tool"
    name: str
    why: str
    install: str  # the command (or what to do) that installs it

    def describe(self) -> str:
        return f"{self.name} ({self.why}): {self.install}"


def deb(name: str, why: str) -> Prerequisite:
    if ":" in name:
        arch = name.split(":", 1)[1]
        install = f"dpkg --add-architecture {arch} && apt-get update && apt-get install {name}"
    else:
        install = f"apt-get install {name}"
    return Prerequisite("deb", name, why, install)


def rust_target(triple: str, why: str) -> Prerequisite:
    return Prerequisite("rust-target", triple, why, f"rustup target add {triple}")


GO = Prerequisite(
    "tool",
    "go",
    "Go >= 1.21, which fetches the pinned Go toolchain through the module proxy",
    "install Go from its release tarball into /usr/local/go (Debian bookworm's golang-go is 1.19)",
)
CARGO = Prerequisite(
    "tool",
    "cargo",
    "Rust >= 1.85 for parsec-service 1.5.0",
    "install Rust with rustup (Debian bookworm's rustc is 1.63)",
)

# The cross toolchain every arm64 build on an amd64 machine uses (cgo, cc-rs, cmake).
_ARM64_CROSS = (
    deb("gcc-aarch64-linux-gnu", "C cross compiler for arm64"),
    deb("libc6-dev-arm64-cross", "arm64 C library headers for cross builds"),
)

# builder or harness part -> architecture ("*" for every one) -> what it needs.
TABLE: dict[str, dict[str, tuple[Prerequisite, ...]]] = {
    "lab": {
        "*": (
            deb("systemd-container", "systemd-nspawn boots the lab's devices"),
            deb("systemd", "systemd-id128 gives each device its machine-id"),
            deb("iptables", "the lab bridge's isolation rules"),
            deb("iproute2", "the lab bridge and addresses"),
            deb("openssh-client", "SSH into the devices"),
            deb("python3-venv", "the project's virtualenv"),
            deb("make", "make lab, make test"),
        ),
        "arm64": (deb("qemu-user-static", "runs arm64 devices and artifacts under emulation"),),
    },
    "rootfs": {"*": (deb("debootstrap", "Debian root filesystems"), deb("zstd", "packs the rootfs"))},
    "wheelhouse": {"*": ()},
    "parsec": {
        "*": (
            CARGO,
            deb("cmake", "builds Mbed TLS"),
            deb("clang", "bindgen's compiler"),
            deb("libclang-dev", "bindgen's libclang"),
            deb("llvm-dev", "bindgen"),
            deb("pkg-config", "finds C libraries"),
            deb("gcc", "C compiler"),
            deb("libc6-dev", "libc.a: the binaries are linked statically (crt-static)"),
        ),
        "arm64": (*_ARM64_CROSS, rust_target("aarch64-unknown-linux-gnu", "Rust's arm64 standard library")),
    },
    "pause-image": {
        "*": (deb("debootstrap", "fetches Debian's catatonit"),),
        "arm64": (deb("qemu-user-static", "checks the arm64 catatonit's pause mode (qemu-aarch64-static)"),),
    },
    "runtime-image": {
        "*": (deb("debootstrap", "the image's Debian base"), deb("zstd", "packs the base")),
        "arm64": (deb("qemu-user-static", "debootstrap's second stage and pip run arm64 code (binfmt)"),),
    },
    "python-bundle": {
        "*": (deb("debootstrap", "the runtime image's Debian base"), deb("zstd", "unpacks the base")),
        "arm64": (deb("qemu-user-static", "debootstrap's second stage runs arm64 code (binfmt)"),),
    },
    "k3s": {
        "*": (
            GO,
            deb("gcc", "cgo"),
            deb("pkg-config", "cgo finds libseccomp"),
            deb("libseccomp-dev", "k3s links libseccomp (seccomp build tag)"),
            deb("libc6-dev", "libc.a: k3s is linked statically"),
        ),
        "arm64": (*_ARM64_CROSS, deb("libseccomp-dev:arm64", "k3s for arm64 links arm64 libseccomp")),
    },
    "triton": {"*": ()},
    # Go cross-compiles the static binary for every architecture itself (CGO_ENABLED=0).
    "example-image": {"*": (GO,)},
    "metrics-server-image": {
        "*": (GO,),
        "arm64": (deb("qemu-user-static", "runs the arm64 metrics-server's --version"),),
    },
    "tests": {
        "*": (
            deb("default-jdk-headless", "the Jenkinsfile's tests (Groovy under Maven)"),
            deb("maven", "the Jenkinsfile's tests"),
            deb("chromium", "the console's browser tests"),
            deb("redis-server", "the config-db unit tests run a real Redis, as SONiC's database"),
            deb("frr", "unit tests check the lab's bgpcfgd stand-in output with FRR's own parser"),
            deb(
                "postgresql", "the storage unit tests run a real PostgreSQL (initdb, pg_ctl) for shared state"
            ),
            deb("nats-server", "the gateway's async queue tests run real NATS servers with JetStream"),
            deb("prometheus", "the monitoring unit tests scrape a real gateway; promtool checks templates"),
            deb(
                "prometheus-alertmanager",
                "the monitoring unit tests fire a real alert into the gateway (amtool checks the receiver)",
            ),
            deb("lynis", "the security scans carry its tree to every device (scripts/task scan)"),
            deb("faketime", "clock-skew unit tests run a real authentication agent with its clock moved"),
            deb("docker-registry", "image-function unit tests push to a real registry (distribution v2)"),
            deb("skopeo", "pushes image functions without Docker (unit tests, deploys/registry.py)"),
        )
    },
}
# What `edgefaas lab build` checks besides the builds it was given: the lab boots devices.
HARNESS = ("lab",)


def parse_arches(text: str) -> list[str]:
    """`amd64`, `arm64`, a comma list, `all`, or `native` -> architectures, in ARCHES order."""
    if text == "all":
        return list(ARCHES)
    words = [word.strip() for word in text.split(",") if word.strip()]
    wanted = {native_arch() if word == "native" else word for word in words}
    unknown = sorted(wanted - set(ARCHES))
    if unknown or not wanted:
        raise UnsupportedArch(
            f"unknown architecture {', '.join(unknown) or text!r}: choose amd64, arm64, all or native"
        )
    return [arch for arch in ARCHES if arch in wanted]


def needs(parts: Iterable[str], arches: Iterable[str]) -> list[Prerequisite]:
    """Everything `parts` (builders or harness parts) need for `arches`, without repeats."""
    found: dict[tuple[str, str], Prerequisite] = {}
    arches = list(arches)
    for part in parts:
        if part not in TABLE:
            raise KeyError(f"no prerequisites declared for {part!r}")
        for arch, items in TABLE[part].items():
            foreign = arch != "*" and arch != native_arch()
            if arch == "*" or (arch in arches and foreign):
                for item in items:
                    found.setdefault((item.kind, item.name), item)
    return list(found.values())


def everything() -> list[Prerequisite]:
    return needs(TABLE, ARCHES)


def apt_packages(parts: Iterable[str] | None = None, arches: Iterable[str] = ARCHES) -> list[str]:
    return [p.name for p in needs(TABLE if parts is None else parts, arches) if p.kind == "deb"]


def missing(parts: Iterable[str], arches: Iterable[str]) -> list[Prerequisite]:
    """The prerequisites of `parts` for `arches` (and of the lab itself) not installed here."""
    items = needs([*HARNESS, *parts], arches)
    installed = _installed_debs([p.name for p in items if p.kind == "deb"])
    targets = _rust_targets() if any(p.kind == "rust-target" for p in items) else set()
    absent = []
    for item in items:
        if item.kind == "deb":
            ok = item.name in installed
        elif item.kind == "rust-target":
            ok = item.name in targets
        else:
            ok = _tool_ok(item.name)
        if not ok:
            absent.append(item)
    return absent


def _installed_debs(names: list[str]) -> set[str]:
    if not names:
        return set()
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f=${binary:Package} ${Architecture} ${db:Status-Status}\n", *names],
        capture_output=True,
        text=True,
    )
    found = set()
    for line in proc.stdout.splitlines():
        package, arch, status = [*line.split(), "", "", ""][:3]
        if status != "installed":
            continue
        base = package.split(":", 1)[0]
        found.add(base)
        found.add(f"{base}:{arch}")
    # "name" without an architecture means the machine's own (or arch "all").
    own = _dpkg_arch()
    return {n for n in names if n in found and (":" in n or f"{n}:{own}" in found or f"{n}:all" in found)}


def _dpkg_arch() -> str:
    try:
        return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return native_arch()


def _which(tool: str) -> str | None:
    return shutil.which(tool) or shutil.which(tool, path=os.pathsep.join(TOOL_DIRS))


def _version(argv: list[str]) -> tuple[int, ...]:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ()
    match = re.search(r"(\d+)\.(\d+)", out)
    return tuple(int(x) for x in match.groups()) if match else ()


def _tool_ok(tool: str) -> bool:
    path = _which(tool)
    if path is None:
        return False
    if tool == "go":
        # GOTOOLCHAIN=local: the version of the go found, not of the toolchain it would fetch.
        return _version(["env", "GOTOOLCHAIN=local", path, "version"]) >= GO_MINIMUM
    if tool == "cargo":
        rustc = _which("rustc")
        return rustc is not None and _version([rustc, "--version"]) >= RUST_MINIMUM
    return True


def _rust_targets() -> set[str]:
    rustup = _which("rustup")
    if rustup is None:
        return set()
    proc = subprocess.run([rustup, "target", "list", "--installed"], capture_output=True, text=True)
    return set(proc.stdout.split())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="prerequisites", description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="all", help="amd64, arm64, a comma list, all (default) or native")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--apt", action="store_true", help="print the Debian packages, one per line")
    what.add_argument("--missing-apt", action="store_true", help="print the Debian packages not installed")
    what.add_argument("--rust-targets", action="store_true", help="print the Rust targets, one per line")
    what.add_argument("--check", action="store_true", help="print what is missing; exit 1 if anything is")
    args = parser.parse_args(argv)
    try:
        arches = parse_arches(args.arch)
    except UnsupportedArch as exc:
        parser.error(str(exc))
    if args.apt:
        print("\n".join(apt_packages(arches=arches)))
    elif args.missing_apt:
        wanted = apt_packages(arches=arches)
        installed = _installed_debs(wanted)
        print("\n".join(name for name in wanted if name not in installed))
    elif args.rust_targets:
        print("\n".join(p.name for p in needs(TABLE, arches) if p.kind == "rust-target"))
    else:
        absent = missing(TABLE, arches)
        for item in absent:
            print(f"missing: {item.describe()}", file=sys.stderr)
        return 1 if absent else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
