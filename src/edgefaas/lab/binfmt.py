"""qemu-user for arm64 through binfmt_misc, registered only while something needs it.

Building an arm64 root filesystem (debootstrap's second stage, a venv, pip), booting an arm64
lab device and running arm64 programs in tests all execute arm64 code on this machine: the
kernel hands such programs to Debian's qemu-user-static once a binfmt_misc handler names it.
The handler is the machine's, so this module registers Debian's own rule only when no handler
for the architecture exists, records what it registered (and whether it mounted binfmt_misc)
with who holds it, and removes exactly that when the last holder lets go. A handler someone
else registered is used and never removed.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from edgefaas.lab.artifacts import GNU_ARCH, native_arch
from edgefaas.lab.paths import state_root

MOUNT = Path("/proc/sys/fs/binfmt_misc")
# Debian's qemu-user-static rules (magic, mask, interpreter, flags), one file per architecture.
RULES = Path("/usr/lib/binfmt.d")

Log = Callable[[str], None]


class BinfmtError(RuntimeError):
    pass


def handler_name(arch: str) -> str:
    return f"qemu-{GNU_ARCH[arch]}"


def _state_file() -> Path:
    return state_root() / "binfmt.json"


def _load(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {"mounted": False, "registered": [], "holders": {}}


def _save(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    os.replace(tmp, path)


@contextmanager
def _locked() -> Iterator[dict]:
    path = _state_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state = _load(path)
        try:
            yield state
        finally:
            # Saved on failure too: what a failed call did mount or register must stay known.
            if state["holders"] or state["registered"] or state["mounted"]:
                _save(path, state)
            else:
                path.unlink(missing_ok=True)


def _others() -> list[str]:
    """Every handler registered now (anyone's)."""
    entries = MOUNT.iterdir() if MOUNT.is_dir() else ()
    return [e.name for e in entries if e.name not in ("register", "status")]


def _mounted() -> bool:
    return (MOUNT / "register").exists()


def _mount() -> None:
    done = subprocess.run(
        ["mount", "-t", "binfmt_misc", "binfmt_misc", str(MOUNT)], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise BinfmtError(f"cannot mount binfmt_misc at {MOUNT}: {done.stderr.strip()}")


def _umount() -> None:
    subprocess.run(["umount", str(MOUNT)], capture_output=True, text=True)


def _handler_for(arch: str) -> str | None:
    """The name of an enabled handler (anyone's) whose interpreter is qemu for `arch`."""
    wanted = f"qemu-{GNU_ARCH[arch]}"
    for entry in MOUNT.iterdir() if MOUNT.is_dir() else ():
        if entry.name in ("register", "status"):
            continue
        try:
            text = entry.read_text()
        except OSError:
            continue
        interpreter = next((line for line in text.splitlines() if line.startswith("interpreter ")), "")
        if text.startswith("enabled") and (entry.name == wanted or GNU_ARCH[arch] in interpreter):
            return entry.name
    return None


def _register(rule: str) -> None:
    with open(MOUNT / "register", "w") as register:
        register.write(rule)


def _unregister(name: str) -> None:
    with open(MOUNT / name, "w") as entry:
        entry.write("-1")


def _rule(arch: str) -> str:
    """Debian's rule, with the C flag added: credentials from the program, not from qemu, so
    that setuid programs (sudo, which deploys use on a device) work in an emulated device."""
    path = RULES / f"{handler_name(arch)}.conf"
    try:
        rule = path.read_text().strip()
    except FileNotFoundError:
        raise BinfmtError(
            f"no {path}: install Debian's qemu-user-static to run {arch} programs here"
        ) from None
    head, flags = rule.rsplit(":", 1)
    return f"{head}:{flags if 'C' in flags else flags + 'C'}"


def acquire(holder: str, arch: str, log: Log = print) -> None:
    """Make `arch` programs runnable here on behalf of `holder` (a lab, a build, a test run)."""
    if arch == native_arch():
        return
    if os.geteuid() != 0:
        raise BinfmtError(f"running {arch} programs needs a binfmt_misc handler: run as root")
    with _locked() as state:
        mounted_here = registered_here = False
        if not _mounted():
            _mount()
            state["mounted"] = mounted_here = True
        name = handler_name(arch)
        try:
            if _handler_for(arch) is None:
                _register(_rule(arch))
                registered_here = True
                if _handler_for(arch) is None:
                    raise BinfmtError(f"registered {name}, but binfmt_misc shows no enabled handler for it")
                state["registered"].append(name)
                log(f"binfmt: registered {name} (removed again when nothing here needs {arch})")
        except BaseException:
            # Nobody holds what this call just added, so nobody would remove it: undo it now.
            if registered_here and (MOUNT / name).exists():
                _unregister(name)
            if mounted_here and not _others():
                _umount()
                state["mounted"] = False
            raise
        state["holders"][holder] = arch


def release(holder: str, log: Log = print) -> None:
    """`holder` no longer needs emulation; the last holder removes what this module added."""
    with _locked() as state:
        state["holders"].pop(holder, None)
        if state["holders"]:
            return
        for name in state["registered"]:
            if (MOUNT / name).exists():
                _unregister(name)
                log(f"binfmt: removed {name}, which this machine's lab had registered")
        state["registered"] = []
        # Unmounting drops every handler: keep the mount while anyone else's is there.
        if state["mounted"] and not _others():
            _umount()
        state["mounted"] = False


@contextmanager
def emulation(holder: str, arch: str, log: Log = print) -> Iterator[None]:
    acquire(holder, arch, log)
    try:
        yield
    finally:
        release(holder, log)
