"""Bringing a lab up, taking it down, and saying how it is.

`up` converges: whatever an earlier, interrupted `up` left behind is either reused
(a device still running) or cleaned and redone. `down` removes everything `up` made,
reading the state file first and then sweeping for leftovers by name.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from edgefaas.lab import artifacts, binfmt, device, network, rootfs
from edgefaas.lab.device import DevicePaths
from edgefaas.lab.paths import lab_dir
from edgefaas.lab.spec import LabSpec, SpecError, check_subnet_free
from edgefaas.lab.state import DeviceState, LabState, StateError, load_state, state_file

Log = Callable[[str], None]
REQUIRED_TOOLS = (
    "systemd-nspawn",
    "debootstrap",
    "iptables",
    "ip",
    "ssh",
    "ssh-keygen",
    "zstd",
    "systemd-id128",
)
SSH_USER = "admin"


class LabError(RuntimeError):
    pass


def require_root(action: str) -> None:
    if os.geteuid() != 0:
        raise LabError(
            f"`edgefaas lab {action}` must run as root: it creates a bridge, network namespaces, "
            "cgroups and mounts. Nothing was changed."
        )


def require_tools() -> None:
    missing = [tool for tool in REQUIRED_TOOLS if not shutil.which(tool)]
    if missing:
        raise LabError(
            f"missing tools: {', '.join(missing)}. Install them with "
            "`apt-get install systemd-container debootstrap iptables iproute2 openssh-client zstd`"
        )


def ssh_command(state: LabState, name: str, *remote: str) -> list[str]:
    dev = state.spec.device(name)
    return [
        "ssh",
        "-i",
        str(state.ssh_key),
        "-o",
        f"UserKnownHostsFile={state.known_hosts}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=5",
        "-o",
        "LogLevel=ERROR",
        f"{SSH_USER}@{dev.address}",
        *remote,
    ]


@dataclass
class DeviceStatus:
    name: str
    profile: str
    roles: tuple[str, ...]
    address: str
    state: str


# Every device's systemd, journald and udev-less services hold inotify instances under the
# same (root) user: Debian's default of 128 runs out near ten devices ("Failed to allocate
# manager object"). kind documents the same requirement for its nodes.
INOTIFY_MINIMUMS = {"max_user_instances": 8192, "max_user_watches": 524288}


def _ensure_inotify_limits(log: Log) -> None:
    for key, minimum in INOTIFY_MINIMUMS.items():
        path = Path("/proc/sys/fs/inotify") / key
        current = int(path.read_text())
        if current < minimum:
            path.write_text(str(minimum))
            log(f"raised fs.inotify.{key} from {current} to {minimum} (each device's systemd needs its own)")


def _ensure_ssh_key(state: LabState) -> str:
    key = state.ssh_key
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                f"edgefaas-lab-{state.spec.name}",
                "-f",
                str(key),
            ],
            check=True,
        )
    # Readable by the group so that a CI user in it can run the tests without root.
    return key.with_suffix(".pub").read_text()


def _write_known_hosts(state: LabState) -> None:
    lines = []
    for dev in state.spec.devices:
        root = DevicePaths(state.device_dir(dev.name)).merged
        for pub in device.host_public_keys(root):
            keytype, keydata = pub.split()[:2]
            lines.append(f"{dev.address},{dev.name} {keytype} {keydata}\n")
    state.known_hosts.write_text("".join(lines))


def _wait_for_ssh(state: LabState, names: list[str], timeout: float) -> None:
    """Wait until each device answers SSH with our key, in parallel."""

    def wait_one(name: str) -> str | None:
        address = state.spec.device(name).address
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid = state.devices[name].pid
            if not device.pid_alive(pid):
                log_file = DevicePaths(state.device_dir(name)).log
                tail = log_file.read_text(errors="replace").splitlines()[-5:] if log_file.exists() else []
                return f"{name}: systemd-nspawn exited during boot; last console lines:\n  " + "\n  ".join(
                    tail
                )
            if device.ssh_banner(address):
                proc = subprocess.run(ssh_command(state, name, "true"), capture_output=True, text=True)
                if proc.returncode == 0:
                    return None
            time.sleep(0.1)
        return f"{name}: no SSH login at {address} within {timeout:.0f} s"

    with ThreadPoolExecutor(max_workers=min(16, len(names) or 1)) as pool:
        failures = [err for err in pool.map(wait_one, names) if err]
    if failures:
        raise LabError("devices did not come up:\n" + "\n".join(failures))


BootPlan = Literal["running", "from-disk", "fresh"]


def boot_plan(dev_state: DeviceState, paths: DevicePaths, alive: bool) -> BootPlan:
    """What `up` does with a device: leave it, boot it from its kept disk, or make it anew.

    A device powered off by `lab stop` keeps its disk, as a real board does across a power
    cycle; only a device never prepared (or left half-made by an interrupted run) is recreated.
    """
    if alive and paths.prepared.exists():
        return "running"
    if dev_state.powered_off and paths.prepared.exists() and paths.upper.is_dir():
        return "from-disk"
    return "fresh"


def _boot(state: LabState, name: str, lower: Path) -> None:
    """Mount the device's overlay (kept or new), plug it in and boot it; record its PID."""
    spec = state.spec
    dev = spec.device(name)
    dev_state = state.devices.setdefault(name, DeviceState())
    paths = DevicePaths(state.device_dir(name))
    device.mount_overlay(paths, lower)
    wan = spec.wan_device
    has_cloud = any(d.profile == "cloud" for d in spec.devices)
    if dev.profile == "cloud" and wan is not None:
        wan_ns = network.ensure_device_netns(spec.name, wan.name, spec.bridge)
        network.ensure_cloud_segment(wan_ns, spec.cloud_gateway, spec.cloud_network.prefixlen)
        dev_state.netns = network.ensure_cloud_device_netns(spec.name, name, wan_ns)
    else:
        dev_state.netns = network.ensure_device_netns(spec.name, name, spec.bridge)
        if wan is not None and name == wan.name and has_cloud:
            network.ensure_cloud_segment(dev_state.netns, spec.cloud_gateway, spec.cloud_network.prefixlen)
    if dev.arch != artifacts.native_arch():
        network.configure_from_outside(
            dev_state.netns, dev.address, spec.subnet_of(dev).prefixlen, spec.router_of(dev)
        )
    dev_state.pid = device.start(paths, spec, dev, dev_state.netns)
    dev_state.powered_off = False
    state.save()


def _device_of(state: LabState, name: str) -> tuple[DeviceState, DevicePaths]:
    try:
        state.spec.device(name)
    except SpecError as exc:
        raise LabError(str(exc)) from None
    return state.devices.setdefault(name, DeviceState()), DevicePaths(state.device_dir(name))


def stop_device(lab: str, name: str, log: Log = print) -> bool:
    """Power DEVICE off cleanly, keeping its disk; return False if it was already off."""
    require_root("stop")
    state = load_state(lab)
    dev_state, paths = _device_of(state, name)
    if dev_state.powered_off and not device.pid_alive(dev_state.pid):
        log(f"{name}: already powered off")
        return False
    if not paths.prepared.exists():
        raise LabError(f"{name} was never created; run `edgefaas lab up`")
    started = time.monotonic()
    device.power_off(paths, lab, name, dev_state.pid)
    dev_state.pid = None
    dev_state.netns = None
    dev_state.powered_off = True
    state.save()
    log(f"{name}: powered off in {time.monotonic() - started:.1f} s (its disk is kept)")
    return True


def start_device(lab: str, name: str, log: Log = print, ssh_timeout: float = 90.0) -> bool:
    """Boot a powered-off DEVICE from its kept disk; return False if it was already running."""
    require_root("start")
    state = load_state(lab)
    dev_state, paths = _device_of(state, name)
    plan = boot_plan(dev_state, paths, device.pid_alive(dev_state.pid))
    if plan == "running":
        log(f"{name}: already running")
        return False
    if plan != "from-disk":
        raise LabError(f"{name} is not powered off with a disk to boot from; run `edgefaas lab up`")
    started = time.monotonic()
    dev = state.spec.device(name)
    _boot(state, name, rootfs.lower_dir(log, suite=dev.userland, arch=dev.arch))
    _wait_for_ssh(state, [name], ssh_timeout)
    log(f"{name}: booted from its disk, SSH-ready in {time.monotonic() - started:.1f} s")
    return True


def up(spec: LabSpec, log: Log = print, ssh_timeout: float = 90.0) -> bool:
    """Bring the lab described by `spec` up; return True if anything changed."""
    require_root("up")
    require_tools()
    started = time.monotonic()
    try:
        existing = load_state(spec.name)
    except StateError:
        existing = None
    if existing and existing.spec != spec:
        raise LabError(
            f"lab {spec.name!r} is already up with a different spec "
            f"({len(existing.spec.devices)} devices on {existing.spec.subnet}); "
            "run `edgefaas lab down` first, or give the spec that made it"
        )
    own = {spec.subnet, str(spec.cloud_network)} if network.link_exists(spec.bridge) else set()
    check_subnet_free(spec, network.machine_networks(), own)

    state = existing or LabState(spec=spec)
    state.save()  # record intent first: `down` can clean up whatever follows
    if network.forwarding_enabled():
        log(
            "warning: net.ipv4.ip_forward is 1 on this machine; the lab's FORWARD DROP rules "
            "still keep lab traffic on the bridge"
        )

    _ensure_inotify_limits(log)
    # Devices of another architecture boot under qemu-user for as long as the lab is up.
    for arch in sorted({d.arch for d in spec.devices}):
        binfmt.acquire(f"lab:{spec.name}", arch, log)
    lowers = {(d.userland, d.arch) for d in spec.devices}
    lower = {key: rootfs.lower_dir(log, suite=key[0], arch=key[1]) for key in sorted(lowers)}
    public_key = _ensure_ssh_key(state)
    changed = network.ensure_bridge(spec.bridge, spec.gateway, spec.network.prefixlen, spec.name)
    if changed:
        log(f"bridge {spec.bridge} {spec.gateway}/{spec.network.prefixlen} (no route out)")
    wan = spec.wan_device
    has_cloud = wan is not None and any(d.profile == "cloud" for d in spec.devices)
    if has_cloud and network.ensure_route(str(spec.cloud_network), wan.address, spec.bridge):
        log(f"cloud segment {spec.cloud_network}: reached through {wan.name} ({wan.address})")

    booted: list[str] = []
    for dev in spec.devices:
        dev_state = state.devices.setdefault(dev.name, DeviceState())
        paths = DevicePaths(state.device_dir(dev.name))
        plan = boot_plan(dev_state, paths, device.pid_alive(dev_state.pid))
        if plan == "running":
            continue
        if plan == "from-disk":
            _boot(state, dev.name, lower[dev.userland, dev.arch])
            booted.append(dev.name)
            log(f"{dev.name}: booting from its disk ({dev.profile}, {dev.address})")
            continue
        if dev_state.pid or paths.root.exists():
            log(f"{dev.name}: cleaning up what an interrupted run left")
            device.teardown(paths, spec.name, dev.name, dev_state.pid)
            shutil.rmtree(paths.root, ignore_errors=True)
        paths.root.mkdir(parents=True, exist_ok=True)
        device.mount_overlay(paths, lower[dev.userland, dev.arch])
        device.prepare_root(paths, spec, dev, public_key)
        _boot(state, dev.name, lower[dev.userland, dev.arch])
        booted.append(dev.name)
        log(f"{dev.name}: booting ({dev.profile}, {dev.address})")

    _write_known_hosts(state)
    state.save()
    if booted:
        _wait_for_ssh(state, booted, ssh_timeout)
        changed = True
        log(
            f"lab {spec.name}: {len(booted)} of {len(spec.devices)} devices booted and SSH-ready "
            f"in {time.monotonic() - started:.1f} s"
        )
    if not changed:
        log(f"lab {spec.name} is already up: {len(spec.devices)} devices running, nothing changed")
    return changed


def down(lab: str, log: Log = print) -> bool:
    """Remove everything the lab made; return True if there was anything to remove."""
    require_root("down")
    started = time.monotonic()
    try:
        state = load_state(lab)
    except StateError:
        state = None
    root = lab_dir(lab)
    if state is None and not root.exists():
        log(f"lab {lab} is not up: nothing to remove")
        return False
    names: set[str] = set()
    if state:
        names.update(d.name for d in state.spec.devices)
    if (root / "devices").is_dir():
        names.update(p.name for p in (root / "devices").iterdir())

    def remove(name: str) -> None:
        pid = state.devices.get(name, DeviceState()).pid if state else None
        device.teardown(DevicePaths(root / "devices" / name), lab, name, pid)

    with ThreadPoolExecutor(max_workers=min(16, len(names) or 1)) as pool:
        list(pool.map(remove, sorted(names)))
    if state:
        network.remove_bridge(state.spec.bridge, lab)
    binfmt.release(f"lab:{lab}", log)
    leftovers = device.mountpoints_under(root)
    if leftovers:
        raise LabError(
            f"lab {lab}: could not unmount {', '.join(leftovers)}; state kept in {state_file(lab)}"
        )
    shutil.rmtree(root, ignore_errors=True)
    log(f"lab {lab} down: {len(names)} devices removed in {time.monotonic() - started:.1f} s")
    return True


def status(lab: str) -> list[DeviceStatus]:
    state = load_state(lab)
    rows = []
    for dev in state.spec.devices:
        dev_state = state.devices.get(dev.name, DeviceState())
        pid = dev_state.pid
        if not device.pid_alive(pid):
            # "off": powered off by `lab stop`, disk kept; "stopped": not running, for no known reason.
            condition = "off" if dev_state.powered_off else "stopped"
        elif device.ssh_banner(dev.address):
            condition = "running"
        else:
            condition = "booting"
        rows.append(DeviceStatus(dev.name, dev.profile, dev.roles, dev.address, condition))
    return rows
