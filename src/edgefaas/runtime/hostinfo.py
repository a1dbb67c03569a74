"""What this device is: name, profile, CPU, memory, GPU. Read from /proc and /etc, stdlib only.

Used by the local backend for ``/system/nodes`` and by the ``system_info`` function, so
both report a device the same way. Every reader tolerates a missing file: containers and
small boards differ in what they expose.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

DEVICE_LABEL_FILE = Path("/etc/edgefaas/device-label")
TEGRA_RELEASE_FILE = Path("/etc/nv_tegra_release")
SONIC_VERSION_FILE = Path("/etc/sonic/sonic_version.yml")

# Kubernetes' names for machine architectures, so local and K3S nodes read alike.
_KUBE_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "riscv64": "riscv64"}


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def device_profile(root: Path = Path("/")) -> str:
    """The device's profile: /etc/edgefaas/device-label, else guessed from SONiC/Tegra files."""
    label = _read(root / DEVICE_LABEL_FILE.relative_to("/")).strip()
    if label:
        return label
    if (root / SONIC_VERSION_FILE.relative_to("/")).exists():
        return "sonic"
    if (root / TEGRA_RELEASE_FILE.relative_to("/")).exists():
        return "jetson"
    return "generic"


def memory(root: Path = Path("/")) -> dict[str, int]:
    """Total and available memory in bytes, from /proc/meminfo (0 when unknown)."""
    values: dict[str, int] = {}
    for line in _read(root / "proc/meminfo").splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[name] = int(parts[0]) * 1024
    return {"total_bytes": values.get("MemTotal", 0), "available_bytes": values.get("MemAvailable", 0)}


def cpu(root: Path = Path("/")) -> dict[str, Any]:
    model = ""
    for line in _read(root / "proc/cpuinfo").splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "Hardware") and value.strip():
            model = value.strip()
            break
    load = _read(root / "proc/loadavg").split()
    return {
        "count": os.cpu_count() or 0,
        "model": model,
        "load1": float(load[0]) if load else None,
    }


def gpus(root: Path = Path("/")) -> list[dict[str, str]]:
    """GPUs this device has: NVIDIA desktop/server GPUs from the driver, or a Jetson's Tegra GPU."""
    found: list[dict[str, str]] = []
    nvidia = root / "proc/driver/nvidia/gpus"
    if nvidia.is_dir():
        for info in sorted(nvidia.glob("*/information")):
            fields = dict(
                (k.strip(), v.strip())
                for k, _, v in (line.partition(":") for line in _read(info).splitlines())
            )
            found.append(
                {"vendor": "nvidia", "model": fields.get("Model", "unknown"), "bus": info.parent.name}
            )
    tegra = _read(root / TEGRA_RELEASE_FILE.relative_to("/"))
    if tegra and not found:
        # The lab's Jetsons say so in the file itself: a profile without the SoC.
        first = tegra.splitlines()[0].lstrip("# ").strip() if tegra.strip() else ""
        found.append({"vendor": "nvidia", "model": "tegra", "release": first})
    return found


def describe_host(root: Path = Path("/")) -> dict[str, Any]:
    """Everything ``/system/nodes`` and ``system_info`` report about this device."""
    uname = platform.uname()
    return {
        "name": uname.node,
        "profile": device_profile(root),
        "arch": _KUBE_ARCH.get(uname.machine, uname.machine),
        "os": f"{uname.system} {uname.release}",
        "cpu": cpu(root),
        "memory": memory(root),
        "gpus": gpus(root),
    }
