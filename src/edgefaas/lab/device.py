"""One lab device: an overlay root, its own cgroups, and systemd-nspawn booting real systemd.

The lab machine's PID 1 is not systemd, so nothing hands a container its own cgroup;
the device gets one in every cgroup hierarchy, made here before nspawn starts.
Otherwise all devices would share one cgroup and systemd inside them fails.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from edgefaas.lab import network, profiles
from edgefaas.lab.spec import DeviceSpec, LabSpec

CGROUP_ROOT = Path("/sys/fs/cgroup")

# Container settings that let K3S (kubelet + containerd + runc) run inside a device, the
# way k3d and k3s-ansible's CI run K3S in privileged containers. Each with its reason.
K3S_NSPAWN_SETTINGS: tuple[tuple[str, str], ...] = (
    (
        "--system-call-filter=@keyring",
        "runc joins a session keyring per container: 'unable to join session keyring'",
    ),
    ("--bind=/dev/kmsg", "the kubelet's OOM watcher opens /dev/kmsg and refuses to start without it"),
    ("--capability=CAP_SYSLOG", "reading /dev/kmsg needs CAP_SYSLOG while the host has dmesg_restrict=1"),
)

# Inside the device, before K3S starts (see COMPAT_UNIT): nspawn mounts cgroup v1
# controllers read-only, and the kubelet insists on writing three global sysctls.
FAKE_SYSCTLS = {
    "vm/overcommit_memory": "1",
    "kernel/panic": "10",
    "kernel/panic_on_oops": "1",
}

COMPAT_UNIT = """\
[Unit]
Description=Lab only: let this container manage its own network and run K3S
DefaultDependencies=no
After=local-fs.target
Before=k3s.service k3s-agent.service containerd.service sysinit.target
Before=systemd-sysctl.service systemd-networkd.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/edgefaas-lab-compat

[Install]
WantedBy=sysinit.target
"""

COMPAT_SCRIPT = """\
#!/bin/sh
# Lab only. The network namespace is this device's own (the lab made it, so nspawn treats
# networking as the host's and mounts /proc/sys/net read-only): make it writable, as nspawn
# itself does for containers with private networking. The lab machine's sysctls are untouched.
mount --bind /proc/sys/net /proc/sys/net && mount -o remount,bind,rw /proc/sys/net
# Lab only. nspawn mounts cgroup v1 controllers read-only ("mkdir /sys/fs/cgroup/cpuset/
# k8s.io/...: read-only file system"); the device owns its cgroup, so make it writable.
for d in /sys/fs/cgroup/*/; do
    mount -o remount,bind,rw "$d" 2>/dev/null || true
done
# Global sysctls are read-only in a container and the kubelet stops if it cannot set
# these; bind small files over them so its writes succeed and the host stays unchanged.
mkdir -p /run/edgefaas-lab/sysctl
{binds}
"""


@dataclass
class DevicePaths:
    root: Path

    @property
    def upper(self) -> Path:
        return self.root / "upper"

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def merged(self) -> Path:
        return self.root / "merged"

    @property
    def rancher(self) -> Path:
        # K3S's containerd snapshots need a real filesystem, not the overlay root.
        return self.root / "rancher"

    @property
    def log(self) -> Path:
        return self.root / "console.log"

    @property
    def prepared(self) -> Path:
        return self.root / ".prepared"


def mountpoints_under(path: Path) -> list[str]:
    """Mount points strictly below `path`, deepest first."""
    prefix = str(path.resolve()) + "/"
    with open("/proc/self/mountinfo") as mounts:
        found = [line.split()[4] for line in mounts if line.split()[4].startswith(prefix)]
    return sorted(found, key=len, reverse=True)


def is_mounted(path: Path) -> bool:
    target = str(path.resolve())
    with open("/proc/self/mountinfo") as mounts:
        return any(line.split()[4] == target for line in mounts)


def mount_overlay(paths: DevicePaths, lower: Path) -> None:
    for d in (paths.upper, paths.work, paths.merged, paths.rancher):
        d.mkdir(parents=True, exist_ok=True)
    if is_mounted(paths.merged):
        return
    opts = f"lowerdir={lower},upperdir={paths.upper},workdir={paths.work}"
    proc = subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o", opts, str(paths.merged)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RuntimeError(f"mount overlay at {paths.merged}: {proc.stderr.strip()}")


def unmount(path: Path) -> None:
    if path.exists() and is_mounted(path):
        proc = subprocess.run(["umount", str(path)], capture_output=True, text=True)
        if proc.returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def prepare_root(paths: DevicePaths, lab: LabSpec, dev: DeviceSpec, public_key: str) -> None:
    """Write what makes this device itself: name, identity, address, access, profile."""
    root = paths.merged
    (root / "etc/hostname").write_text(dev.name + "\n")
    (root / "etc/hosts").write_text(
        f"127.0.0.1 localhost\n127.0.1.1 {dev.name}\n"
        + "".join(f"{d.address} {d.name}\n" for d in lab.devices)
        + f"{lab.gateway} lab-gateway\n"
    )
    machine_id = subprocess.run(["systemd-id128", "new"], capture_output=True, text=True, check=True)
    (root / "etc/machine-id").write_text(machine_id.stdout.strip() + "\n")
    # A dead local resolver fails lookups at once; a timing-out one delayed services by seconds.
    resolv = root / "etc/resolv.conf"
    if resolv.is_symlink() or resolv.exists():
        resolv.unlink()
    resolv.write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    subprocess.run(["ssh-keygen", "-A", "-f", str(root)], capture_output=True, check=True)
    netdir = root / "etc/systemd/network"
    netdir.mkdir(parents=True, exist_ok=True)
    (netdir / "10-mgmt.network").write_text(
        "[Match]\nName=eth0\n\n[Network]\n"
        f"Address={dev.address}/{lab.subnet_of(dev).prefixlen}\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n\n"
        # K3S needs a default route; the gateway is the lab machine, which forwards nothing (the
        # provider edge for a cloud device, which routes inside the lab alone).
        f"[Route]\nGateway={lab.router_of(dev)}\n"
    )
    ssh_dir = root / "home/admin/.ssh"
    ssh_dir.mkdir(parents=True, exist_ok=True)
    (ssh_dir / "authorized_keys").write_text(public_key.strip() + "\n")
    admin = _admin_ids(root)
    for p in (ssh_dir, ssh_dir / "authorized_keys"):
        os.chown(p, *admin)
    ssh_dir.chmod(0o700)
    (ssh_dir / "authorized_keys").chmod(0o600)

    script = root / "usr/local/sbin/edgefaas-lab-compat"
    script.parent.mkdir(parents=True, exist_ok=True)
    binds = "\n".join(
        f"echo {value} > /run/edgefaas-lab/sysctl/{key.replace('/', '.')}\n"
        f"mount --bind /run/edgefaas-lab/sysctl/{key.replace('/', '.')} /proc/sys/{key} || true"
        for key, value in FAKE_SYSCTLS.items()
    )
    script.write_text(COMPAT_SCRIPT.format(binds=binds))
    script.chmod(0o755)
    (root / "etc/systemd/system/edgefaas-lab-compat.service").write_text(COMPAT_UNIT)
    wants = root / "etc/systemd/system/sysinit.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / "edgefaas-lab-compat.service"
    if not link.is_symlink():
        link.symlink_to("/etc/systemd/system/edgefaas-lab-compat.service")
    profiles.apply(root, lab, dev)
    paths.prepared.write_text(dev.address + "\n")


def _admin_ids(root: Path) -> tuple[int, int]:
    for line in (root / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == "admin":
            return int(fields[2]), int(fields[3])
    raise RuntimeError("the rootfs has no admin user")


def host_public_keys(root: Path) -> list[str]:
    return [p.read_text().strip() for p in sorted((root / "etc/ssh").glob("ssh_host_*_key.pub"))]


def cgroup_hierarchies() -> list[Path]:
    """Every mounted cgroup hierarchy on the lab machine (v1 controllers and unified)."""
    hierarchies = []
    with open("/proc/self/mountinfo") as mounts:
        for line in mounts:
            fields = line.split()
            fstype = fields[fields.index("-") + 1]
            if fstype in ("cgroup", "cgroup2"):
                hierarchies.append(Path(fields[4]))
    return hierarchies


def cgroup_paths(lab: str, device: str) -> list[Path]:
    return [h / "edgefaas-lab" / lab / device for h in cgroup_hierarchies()]


def ensure_cgroups(lab: str, device: str) -> list[Path]:
    paths = cgroup_paths(lab, device)
    for path in paths:
        hierarchy = path.parents[2]
        level = hierarchy
        for part in ("edgefaas-lab", lab, device):
            parent, level = level, level / part
            if not level.exists():
                level.mkdir()
            # cpuset children start empty and refuse tasks until given CPUs and memory nodes.
            for knob in ("cpuset.cpus", "cpuset.mems"):
                mine = level / knob
                if mine.exists() and not mine.read_text().strip():
                    mine.write_text((parent / knob).read_text().strip())
    return paths


def cgroup_pids(lab: str, device: str) -> set[int]:
    pids: set[int] = set()
    for path in cgroup_paths(lab, device):
        if not path.exists():
            continue
        for procs in path.rglob("cgroup.procs"):
            with contextlib.suppress(OSError):
                pids.update(int(p) for p in procs.read_text().split())
    return pids


def remove_cgroups(lab: str, device: str) -> None:
    for path in cgroup_paths(lab, device):
        if not path.exists():
            continue
        # Children first: systemd inside the device made its own tree below ours.
        for sub in sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                sub.rmdir()
        with contextlib.suppress(OSError):
            path.rmdir()
    for hierarchy in cgroup_hierarchies():
        for parent in (hierarchy / "edgefaas-lab" / lab, hierarchy / "edgefaas-lab"):
            with contextlib.suppress(OSError):
                parent.rmdir()


def start(paths: DevicePaths, lab: LabSpec, dev: DeviceSpec, netns: str, k3s_ready: bool = True) -> int:
    """Boot the device in the background; return the systemd-nspawn PID."""
    cgroups = ensure_cgroups(lab.name, dev.name)
    cmd = [
        "systemd-nspawn",
        "--boot",
        f"--directory={paths.merged}",
        f"--machine={dev.name}",
        f"--network-namespace-path=/run/netns/{netns}",
        # No machined here (PID 1 is not systemd): don't register, and keep our own cgroup.
        "--register=no",
        "--keep-unit",
        # The namespace is the device's own; nspawn only grants CAP_NET_ADMIN when it made it.
        "--capability=CAP_NET_ADMIN",
        "--resolv-conf=off",
        "--timezone=off",
        "--link-journal=no",
        "--console=passive",
        f"--bind={paths.rancher}:/var/lib/rancher",
    ]
    if k3s_ready:
        cmd += [setting for setting, _reason in K3S_NSPAWN_SETTINGS]

    def join_cgroups() -> None:
        pid = str(os.getpid())
        for cg in cgroups:
            (cg / "cgroup.procs").write_text(pid)

    with open(paths.log, "ab") as log:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=join_cgroups,
            start_new_session=True,
        )
    return proc.pid


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (our own exited child) is not alive.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def ssh_banner(address: str, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((address, 22), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(8).startswith(b"SSH-")
    except OSError:
        return False


def stop(lab: str, device: str, pid: int | None, grace: float = 15.0) -> None:
    """Power the device off cleanly, then force what did not stop within the grace period."""
    if pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)  # nspawn turns this into a clean poweroff
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and pid_alive(pid):
            time.sleep(0.1)
    # A nested container that ignores SIGTERM can hang poweroff for minutes.
    for _ in range(50):
        pids = cgroup_pids(lab, device)
        if pid_alive(pid):
            pids.add(pid)  # type: ignore[arg-type]
        if not pids:
            break
        for p in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        time.sleep(0.1)
    if pid:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


def power_off(paths: DevicePaths, lab: str, device: str, pid: int | None) -> None:
    """Stop the device and release what runs it, keeping its disk (overlay upper, K3S data)."""
    stop(lab, device, pid)
    # K3S leaves mounts (pod volumes, netns) under the device tree; unmount deepest first.
    for mountpoint in mountpoints_under(paths.root):
        subprocess.run(["umount", "-l", mountpoint], capture_output=True)
    unmount(paths.merged)
    remove_cgroups(lab, device)
    network.remove_device_netns(lab, device)


def teardown(paths: DevicePaths, lab: str, device: str, pid: int | None) -> None:
    power_off(paths, lab, device, pid)
