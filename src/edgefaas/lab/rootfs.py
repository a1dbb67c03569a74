"""The Debian root filesystems lab devices boot from.

SONiC's host OS is Debian (bookworm from SONiC 202311 on, bullseye before), so a Debian
rootfs is an honest stand-in for a SONiC switch's host; the Jetson stand-in is a Debian
rootfs with a Jetson profile laid on top (bullseye's glibc 2.31 is JetPack 5's). Each
(release, architecture) is built once with debootstrap, packed as a .tar.zst keyed on
everything that shapes it, and unpacked once per key as the read-only lower layer of
every device that uses it. A foreign architecture's second stage runs under qemu-user.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from edgefaas.lab import artifacts, binfmt
from edgefaas.lab.paths import cache_dir, state_root

SUITE = "bookworm"
# Each release's Python, whose libpython Triton's Python backend stub embeds.
SUITE_PYTHON = {"bookworm": "3.11", "bullseye": "3.9"}
# Bumped whenever the customisation below changes, so caches rebuild.
LAYOUT_VERSION = "7"

# What a device needs before any deploy runs (SSH, Python for pyinfra/testinfra, systemd),
# plus what the task deploys use, because lab devices have no route out to fetch packages.
PACKAGES = (
    "openssh-server",
    "python3",
    "python3-venv",
    "python3-pip",
    "python3-numpy",
    "libpython{python}",
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
    # SONiC's database, routing suite and the Python its own daemons (and the lab's
    # stand-ins for them) run on; only the SONiC profile enables them.
    "redis-server",
    "python3-redis",
    "frr",
    "frr-pythontools",
)
# The gateways' shared state (deploys/edgefaas.py): PostgreSQL for licenses and the ledger,
# NATS JetStream for queued calls; the site's registry for image functions (deploys/registry.py:
# docker-registry, and skopeo that pushes to it) on the K3S server; and monitoring
# (deploys/monitoring.py): Prometheus and Alertmanager on the K3S server (a switch). Only bookworm
# hosts (the switches) carry them; the node exporter goes on every K3S node, Jetsons (bullseye)
# included.
SUITE_PACKAGES = {
    "bookworm": (
        "postgresql",
        "nats-server",
        "docker-registry",
        "skopeo",
        "prometheus",
        "prometheus-alertmanager",
        "prometheus-node-exporter",
    ),
    "bullseye": ("prometheus-node-exporter",),
}
# Installed, not running: a deploy enables each where the inventory puts it.
DISABLED_UNITS = (
    "redis-server.service",
    "frr.service",
    "postgresql.service",
    "nats-server.service",
    "docker-registry.service",
    "prometheus.service",
    "prometheus-alertmanager.service",
    "prometheus-node-exporter.service",
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


def packages(suite: str = SUITE) -> tuple[str, ...]:
    return tuple(name.format(python=SUITE_PYTHON[suite]) for name in (*PACKAGES, *SUITE_PACKAGES[suite]))


def cache_key(suite: str = SUITE, arch: str | None = None) -> str:
    arch = arch or artifacts.native_arch()
    # The machine's own architecture keeps the key it had before foreign ones existed.
    own = [] if arch == artifacts.native_arch() else [arch]
    text = "\n".join([suite, debian_mirror(), LAYOUT_VERSION, *own, *sorted(packages(suite))])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _name(suite: str, arch: str) -> str:
    own = arch == artifacts.native_arch()
    return f"{suite}-{cache_key(suite, arch)}" if own else f"{suite}-{arch}-{cache_key(suite, arch)}"


def tarball_path(suite: str = SUITE, arch: str | None = None) -> Path:
    return cache_dir() / "rootfs" / f"{_name(suite, arch or artifacts.native_arch())}.tar.zst"


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
    # SONiC devices run Redis and FRR (their profile enables them); the deploys enable the
    # rest where the inventory puts them.
    units = [unit for unit in DISABLED_UNITS if (root / "lib/systemd/system" / unit).exists()]
    _run([*chroot, "systemctl", "disable", *units], f"disable {', '.join(units)}", log)
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


def build_tarball(log: Log = print, force: bool = False, arch: str | None = None, suite: str = SUITE) -> Path:
    """Return the cached rootfs tarball, running debootstrap (~1.5 min) if it is missing."""
    arch = artifacts.check_arch(arch or artifacts.native_arch())
    name = "debian-rootfs" if suite == SUITE else f"debian-rootfs-{suite}"
    target = tarball_path(suite, arch)
    if target.exists() and not force:
        listed = artifacts.lookup(name, arch)
        if listed is None or listed.path != str(target):
            artifacts.record(name, _name(suite, arch), target, arch=arch)
        return target
    if not shutil.which("debootstrap"):
        raise RuntimeError("rootfs: debootstrap is not installed (apt-get install debootstrap)")
    target.parent.mkdir(parents=True, exist_ok=True)
    with (
        binfmt.emulation(f"build:{os.getpid()}", arch, log),
        tempfile.TemporaryDirectory(dir=target.parent, prefix=".build-") as tmp,
    ):
        root = Path(tmp) / "root"
        foreign = arch != artifacts.native_arch()
        pace = "under qemu-user, about 10 minutes" if foreign else "about 2 minutes"
        log(f"rootfs: debootstrap {suite} {arch} with {len(PACKAGES)} packages ({pace})")
        _run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--arch={arch}",
                f"--include={','.join(packages(suite))}",
                suite,
                str(root),
                debian_mirror(),
            ],
            f"debootstrap {suite} {arch}",
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
    artifacts.record(name, _name(suite, arch), target, arch=arch)
    log(f"rootfs: cached {target} ({target.stat().st_size // (1 << 20)} MiB)")
    return target


def lower_dir(log: Log = print, suite: str = SUITE, arch: str | None = None) -> Path:
    """Return the unpacked rootfs of `suite` for `arch`, unpacking its tarball once."""
    tarball = build_tarball(log, arch=arch, suite=suite)
    key = cache_key(suite, arch)
    lower = state_root() / "rootfs" / key
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
    marker.write_text(key)
    return lower
