"""The lab's state file: the one place that says what a lab is and what it has made.

Written before anything is created and after every step, so that an interrupted
`up` can be converged by the next `up` or cleaned by `down`, and so that
inventories/lab.py can read device addresses instead of anyone writing them by hand.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgefaas.lab.paths import lab_dir, state_root
from edgefaas.lab.spec import LabSpec, parse_spec

DEFAULT_LAB = "edgefaas"


class StateError(RuntimeError):
    pass


@dataclass
class DeviceState:
    pid: int | None = None
    netns: str | None = None
    # Powered off by `edgefaas lab stop`: its disk (overlay upper and K3S data) is kept, and
    # `lab start` or `lab up` boots it from that disk instead of recreating it blank.
    powered_off: bool = False


@dataclass
class LabState:
    spec: LabSpec
    devices: dict[str, DeviceState] = field(default_factory=dict)

    @property
    def dir(self) -> Path:
        return lab_dir(self.spec.name)

    @property
    def ssh_key(self) -> Path:
        return self.dir / "ssh" / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.dir / "ssh" / "known_hosts"

    def device_dir(self, name: str) -> Path:
        return self.dir / "devices" / name

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec.to_dict(),
            "devices": {name: asdict(dev) for name, dev in self.devices.items()},
            "ssh_key": str(self.ssh_key),
            "known_hosts": str(self.known_hosts),
            "bridge": self.spec.bridge,
            "gateway": self.spec.gateway,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabState:
        spec = parse_spec(data["spec"], source="state file")
        devices = {name: DeviceState(**dev) for name, dev in data.get("devices", {}).items()}
        return cls(spec=spec, devices=devices)

    def save(self) -> None:
        path = state_file(self.spec.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".state-")
        with os.fdopen(fd, "w") as out:
            json.dump(self.to_dict(), out, indent=2)
            out.write("\n")
        # Readable by non-root users so inventories and tests need no root.
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)


def state_file(lab: str) -> Path:
    return lab_dir(lab) / "state.json"


def load_state(lab: str = DEFAULT_LAB) -> LabState:
    path = state_file(lab)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise StateError(f"lab {lab!r} is not up (no {path}); run `edgefaas lab up` first") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise StateError(f"cannot read lab state {path}: {exc}") from None
    return LabState.from_dict(data)


def known_labs() -> list[str]:
    root = state_root() / "labs"
    if not root.is_dir():
        return []
    return sorted(p.parent.name for p in root.glob("*/state.json"))
