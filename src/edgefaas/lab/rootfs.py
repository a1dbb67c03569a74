"""The Debian bookworm root filesystem every lab device boots from.

SONiC's host OS is Debian, so a bookworm rootfs is an honest stand-in for a SONiC
switch's host; the Jetson stand-in is the same rootfs with a Jetson profile laid on top.
It is built once with debootstrap, packed as a .tar.zst keyed on everything that
shapes it, and unpacked once per key as the read-only lower layer of every device.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from edgefaas.lab import artifacts
from edgefaas.lab.paths import cache_dir, state_root

SUITE = "bookworm"
# Bumped whenever the customisation below changes, so caches rebuild.
LAYOUT_VERSION = "3"

# What a device needs before any deploy runs (SSH, Python for pyinfra/testinfra, systemd),
# plus what the task deploys use, because lab devices have no route out to fetch packages.
PACKAGES = (
    "openssh-server",
    "python3",
    "python3-venv",
    "python3-pip",
    "python3-numpy",
    "libpython3.11",
    "systemd",
    "systemd-sysv",
    "dbus",
    "iproute2",
    "iputils-ping",
    "sudo",
    "curl",
    "ca-certificates",
    "iptables",
    "kmod",
    "procps",
    "less",
    "conntrack",
    "ipset",
    "socat",
    "netcat-openbsd",
    "jq",
    "runc",
    "containerd",
    "containernetworking-plugins",
    "tzdata",
    "libseccomp2",
    "sqlite3",
)

Log = Callable[[str], None]


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (EDGEFAAS_DEBIAN_MIRROR overrides it).

    Labs are often built behind a site mirror or proxy: take what apt already trusts.
    """
    override = os.environ.get("EDGEFAAS_DEBIAN_MIRROR")
    if override:
        return override.rstrip("/")
    sources = [*sorted(Path("/etc/apt/sources.list.d").glob("*.sources")), Path("/etc/apt/sources.list")]
    for path in sources:
        try:
            text = path.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            words = line.split()
            if line.startswith("URIs:"):
                candidates = words[1:]
            elif words[:1] == ["deb"]:
                candidates = [w for w in words[1:] if "://" in w][:1]
            else:
                continue
            for uri in candidates:
                if uri.rstrip("/").endswith("/debian"):
                    return uri.rstrip("/")
    raise RuntimeError("rootfs: no Debian mirror in apt's sources; set EDGEFAAS_DEBIAN_MIRROR")


def cache_key() -> str:
    text = "\n".join([SUITE, debian_mirror(), LAYOUT_VERSION, *sorted(PACKAGES)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def tarball_path() -> Path:
    return cache_dir() / "rootfs" / f"{SUITE}-{cache_key()}.tar.zst"


def _run(cmd: list[str], step: str, log: Log) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise RuntimeError(f"rootfs: {step} failed (exit {proc.returncode}):\n{tail}")


def _customise(root: Path, log: Log) -> None:
    """Make the plain debootstrap tree boot as a lab device."""
    # Each device gets a fresh machine-id and host keys at creation.
    (root / "etc/machine-id").write_text("")
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    chroot = ["chroot", str(root)]
    _run([*chroot, "systemctl", "enable", "systemd-networkd", "ssh"], "enable networkd and ssh", log)
    # Debian's containerd is installed only for its runc shim; K3S brings its own containerd,
    # and on a real SONiC switch the Docker daemon's containerd belongs to SONiC.
    _run([*chroot, "systemctl", "mask", "containerd.service"], "mask Debian's containerd", log)
    for unit in ("apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer", "fstrim.timer"):
        _run([*chroot, "systemctl", "mask", unit], f"mask {unit}", log)
    journald = root / "etc/systemd/journald.conf.d"
    journald.mkdir(parents=True, exist_ok=True)
    (journald / "lab.conf").write_text("[Journal]\nStorage=volatile\nRuntimeMaxUse=32M\n")
    # SONiC's and JetPack's default login is an `admin`-style sudoer, not root: deploys use sudo.
    _run([*chroot, "useradd", "-m", "-s", "/bin/bash", "-G", "sudo", "admin"], "create admin user", log)
    (root / "etc/sudoers.d/admin").write_text("admin ALL=(ALL) NOPASSWD: ALL\n")
    (root / "etc/sudoers.d/admin").chmod(0o440)
    sshd = root / "etc/ssh/sshd_config.d"
    sshd.mkdir(parents=True, exist_ok=True)
    # UseDNS/GSSAPI lookups would hang on the lab's deliberately dead resolver.
    (sshd / "lab.conf").write_text(
        "PasswordAuthentication no\nPermitRootLogin prohibit-password\nUseDNS no\n"
        "GSSAPIAuthentication no\nMaxStartups 100:30:200\nMaxSessions 50\n"
    )
    shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
    (root / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
    shutil.rmtree(root / "var/lib/apt/lists", ignore_errors=True)
    (root / "var/lib/apt/lists/partial").mkdir(parents=True, exist_ok=True)


def build_tarball(log: Log = print, force: bool = False, arch: str | None = None) -> Path:
    """Return the cached rootfs tarball, running debootstrap (~1.5 min) if it is missing."""
    if arch not in (None, artifacts.native_arch()):
        raise RuntimeError(
            f"rootfs: no {arch} lab rootfs yet (this machine boots {artifacts.native_arch()} devices)"
        )
    target = tarball_path()
    if target.exists() and not force:
        listed = artifacts.lookup("debian-rootfs")
        if listed is None or listed.path != str(target):
            artifacts.record("debian-rootfs", f"{SUITE}-{cache_key()}", target)
        return target
    if not shutil.which("debootstrap"):
        raise RuntimeError("rootfs: debootstrap is not installed (apt-get install debootstrap)")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".build-") as tmp:
        root = Path(tmp) / "root"
        log(f"rootfs: debootstrap {SUITE} with {len(PACKAGES)} packages (about 2 minutes)")
        _run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(PACKAGES)}",
                SUITE,
                str(root),
                debian_mirror(),
            ],
            "debootstrap",
            log,
        )
        log("rootfs: customising")
        _customise(root, log)
        partial = Path(tmp) / "rootfs.tar.zst"
        log("rootfs: packing")
        _run(
            [
                "tar",
                "--numeric-owner",
                "--xattrs",
                "-I",
                "zstd -T0 -3",
                "-C",
                str(root),
                "-cf",
                str(partial),
                ".",
            ],
            "pack",
            log,
        )
        partial.replace(target)
    artifacts.record("debian-rootfs", f"{SUITE}-{cache_key()}", target)
    log(f"rootfs: cached {target} ({target.stat().st_size // (1 << 20)} MiB)")
    return target


def lower_dir(log: Log = print) -> Path:
    """Return the unpacked rootfs for the current key, unpacking the tarball once."""
    tarball = build_tarball(log)
    lower = state_root() / "rootfs" / cache_key()
    marker = lower.with_name(lower.name + ".complete")
    if marker.exists() and lower.is_dir():
        return lower
    if lower.exists():
        shutil.rmtree(lower)
    partial = lower.with_name(lower.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    log(f"rootfs: unpacking {tarball.name}")
    _run(
        ["tar", "--numeric-owner", "--xattrs", "-I", "zstd", "-C", str(partial), "-xf", str(tarball)],
        "unpack",
        log,
    )
    partial.rename(lower)
    marker.write_text(cache_key())
    return lower
