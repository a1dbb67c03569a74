"""Scan and publishing tools from the package index, each in a virtualenv of its own.

kube-hunter and lftools pin libraries (kubernetes 12, old requests) that would
fight the project's own, so each gets a venv under build/scan-tools/, made from a pinned
requirements file in requirements/ and reused while that file is unchanged; pip's download
cache lives in the machine's build cache, so a fresh checkout installs from it.

    python -m edgefaas.scans.tools kube-hunter   # prints the venv's bin/ directory
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

from edgefaas.lab.paths import cache_dir

REPO = Path(__file__).resolve().parents[3]
REQUIREMENTS = REPO / "requirements"
VENVS = REPO / "build" / "scan-tools"
TOOLS = ("kube-hunter", "lftools")


class ToolError(RuntimeError):
    """A tool's venv could not be made; the message names the tool and pip's complaint."""


def requirements_file(tool: str) -> Path:
    if tool not in TOOLS:
        raise ToolError(f"unknown tool {tool!r} (one of {', '.join(TOOLS)})")
    return REQUIREMENTS / f"{tool}.txt"


def venv_bin(tool: str, python: str = sys.executable) -> Path:
    """The bin/ directory of `tool`'s venv, made (or remade when its pins changed) first."""
    pins = requirements_file(tool)
    key = hashlib.sha256(pins.read_bytes()).hexdigest()[:12]
    venv = VENVS / tool
    stamp = venv / ".requirements-sha256"
    if stamp.is_file() and stamp.read_text().strip() == key and (venv / "bin" / "python").exists():
        return venv / "bin"
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    _run([python, "-m", "venv", str(venv)], tool)
    _run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--cache-dir",
            str(cache_dir() / "pip"),
            "-r",
            str(pins),
        ],
        tool,
    )
    stamp.write_text(key + "\n")
    return venv / "bin"


def _run(argv: list[str], tool: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise ToolError(f"{tool}: {' '.join(argv[:4])} ... failed: {done.stderr.strip()[-800:]}")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(f"usage: python -m edgefaas.scans.tools {{{','.join(TOOLS)}}}", file=sys.stderr)
        return 2
    try:
        print(venv_bin(args[0]))
    except ToolError as exc:
        print(f"scan tools: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
