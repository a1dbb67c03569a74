"""Running build commands so that people watching a 20-minute build see it move.

Compilers print one line per unit built (thousands for k3s, hundreds for Parsec):
those are folded into a progress line every few seconds, everything else is passed on
as it comes, and a failure raises naming the step with the last lines of output.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path

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
