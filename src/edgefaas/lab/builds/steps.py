"""Running build commands so that people watching a 20-minute build see it move.

Compilers print one line per unit built (thousands for k3s, hundreds for Parsec):
those are folded into a progress line every few seconds, everything else is passed on
as it comes, and a failure raises naming the step with the last lines of output.
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path

from edgefaas.lab.artifacts import GNU_ARCH, native_arch

Log = Callable[[str], None]
REPORT_EVERY = 5.0


def run(
    argv: list[str],
    step: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float | None = None,
) -> str:
    """Run a short command and return its standard output; on failure (or after `timeout`
    seconds, when the command is killed) raise naming `step`."""
    try:
        done = subprocess.run(
            argv, cwd=cwd, env=env, capture_output=True, text=True, errors="replace", timeout=timeout
        )
    except OSError as exc:
        raise RuntimeError(f"{step}: cannot start {argv[0]}: {exc}") from exc
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"{step}: no answer in {timeout:.0f} s, killed: {' '.join(argv)}") from exc
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip()[-2000:]
        raise RuntimeError(f"{step} failed (exit {done.returncode}): {' '.join(argv)}\n{detail}")
    return done.stdout


def stream(
    argv: list[str],
    step: str,
    log: Log,
    progress: re.Pattern[str],
    unit: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> float:
    """Run a long build at low priority, folding lines matching `progress`; return seconds taken."""
    started = last_report = time.monotonic()
    count = 0
    tail: deque[str] = deque(maxlen=40)
    try:
        proc = subprocess.Popen(
            ["nice", "-n", "10", *argv],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
    except OSError as exc:
        raise RuntimeError(f"{step}: cannot start {argv[0]}: {exc}") from exc
    with proc:
        for raw in proc.stdout or ():
            line = raw.rstrip()
            tail.append(line)
            if progress.search(line):
                count += 1
            elif line:
                log(f"{step}: {line}")
            now = time.monotonic()
            if now - last_report >= REPORT_EVERY:
                log(f"{step}: {count} {unit} built, {now - started:.0f} s")
                last_report = now
    if proc.returncode != 0:
        raise RuntimeError(f"{step} failed (exit {proc.returncode}):\n" + "\n".join(tail))
    elapsed = time.monotonic() - started
    log(f"{step}: done, {count} {unit} in {elapsed:.0f} s")
    return elapsed


def download_wheels(
    dest: Path, requirements: list[str], platforms: list[str], step: str, python: str = "3.11"
) -> None:
    """pip download `requirements` (no dependencies, wheels only) for the devices, whatever the host is."""
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "--disable-pip-version-check",
            "-q",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            python,
            "--implementation",
            "cp",
            *(arg for tag in platforms for arg in ("--platform", tag)),
            "-d",
            str(dest),
            *requirements,
        ],
        step,
    )


def foreign_command(argv: list[str], arch: str) -> tuple[list[str], dict[str, str] | None]:
    """`argv` and its environment to run a program built for `arch` on this machine.

    A foreign program runs under qemu-user with the cross C library as its root for the
    dynamic loader (-L), and the target's multiarch directory on the library path for what
    Debian ships only there (libseccomp). Native programs run as they are (env None: the
    caller's own).

    The cross libc must come first: ld.so is the cross package's, and a libc.so.6 from
    another glibc build (the multiarch libc6:<arch> the host's ld.so.cache names) does not
    share its private loader state, so the first pthread_create loops forever.
    """
    if arch == native_arch():
        return argv, None
    gnu = GNU_ARCH[arch]
    sysroot = f"/usr/{gnu}-linux-gnu"
    libdirs = f"{sysroot}/lib:/usr/lib/{gnu}-linux-gnu:/lib/{gnu}-linux-gnu"
    env = {**os.environ, "QEMU_LD_PREFIX": sysroot, "LD_LIBRARY_PATH": libdirs}
    return [f"qemu-{gnu}-static", "-L", sysroot, *argv], env


_EM_ARCH = {62: "amd64", 183: "arm64"}


def elf_arch(path: Path) -> str:
    """The architecture an ELF file is built for (Debian's name), read from its header."""
    with open(path, "rb") as stream:
        header = stream.read(20)
    if header[:4] != b"\x7fELF" or len(header) < 20:
        raise RuntimeError(f"{path} is not an ELF file")
    machine = int.from_bytes(header[18:20], "little" if header[5] == 1 else "big")
    return _EM_ARCH.get(machine, f"e_machine {machine}")


def is_static_elf(binary: Path) -> bool:
    """True when `binary` is an ELF64 with no program interpreter: it needs no C library where it runs."""
    data = binary.read_bytes()
    if data[:5] != b"\x7fELF\x02":
        return False
    (phoff,) = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    pt_interp = 3
    return all(struct.unpack_from("<I", data, phoff + i * phentsize)[0] != pt_interp for i in range(phnum))
