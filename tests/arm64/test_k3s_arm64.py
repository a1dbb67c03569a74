"""The recorded arm64 k3s and flannel CNI plugin are arm64 programs that run.

They run under qemu-user on an amd64 machine (natively on an arm64 one), through the same
command the build's own version check uses. A missing artifact fails rather than skips:
these tests are selected only where the arm64 build is meant to have been made.

    edgefaas lab build --arch arm64 k3s
    pytest -m arm64 tests/arm64/test_k3s_arm64.py
"""

import json
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from edgefaas.lab import artifacts
from edgefaas.lab.builds import k3s

pytestmark = pytest.mark.arm64

BUILD = "edgefaas lab build --arch arm64 k3s"
EM_AARCH64 = 183  # ELF e_machine of AArch64
PT_INTERP = 3


@pytest.fixture(scope="module")
def k3s_binary(arm64_artifact) -> Path:
    return arm64_artifact("k3s", "k3s")


@pytest.fixture(scope="module")
def flannel_binary(arm64_artifact) -> Path:
    return arm64_artifact("flannel-cni", "k3s")


@pytest.fixture(scope="module")
def emulator() -> None:
    if artifacts.native_arch() != "arm64" and shutil.which("qemu-aarch64-static") is None:
        pytest.fail("qemu-aarch64-static not found: apt-get install qemu-user-static", pytrace=False)


def _elf(path: Path) -> dict:
    """The few ELF header fields that say which machine a program is for."""
    with open(path, "rb") as f:
        header = f.read(64)
        assert header[:4] == b"\x7fELF", f"{path} is not an ELF file"
        assert header[4] == 2 and header[5] == 1, f"{path} is not a 64-bit little-endian ELF"
        (e_machine,) = struct.unpack_from("<H", header, 18)
        (e_phoff,) = struct.unpack_from("<Q", header, 32)
        e_phentsize, e_phnum = struct.unpack_from("<HH", header, 54)
        interpreter = None
        for index in range(e_phnum):
            f.seek(e_phoff + index * e_phentsize)
            p_type, _flags, p_offset, _vaddr, _paddr, p_filesz = struct.unpack("<IIQQQQ", f.read(40))
            if p_type == PT_INTERP:
                f.seek(p_offset)
                interpreter = f.read(p_filesz).rstrip(b"\0").decode()
    return {"machine": e_machine, "interpreter": interpreter}


def _run(argv: list[str], extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    argv, env = k3s.foreign_command(argv, "arm64")
    env = {**(env or os.environ), **(extra_env or {})}
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)


def test_k3s_is_an_aarch64_program(k3s_binary):
    elf = _elf(k3s_binary)
    assert elf["machine"] == EM_AARCH64, f"{k3s_binary}: e_machine {elf['machine']}, not AArch64"
    # Static (glibc and libseccomp linked in): it runs on whatever C library the board has.
    assert elf["interpreter"] is None, f"{k3s_binary} asks for the loader {elf['interpreter']}"


def test_k3s_reports_its_release_under_emulation(k3s_binary, emulator):
    done = _run([str(k3s_binary), "--version"])
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0]
    assert first.startswith(f"k3s version {k3s.K3S_VERSION} ({k3s.K3S_COMMIT[:8]})"), done.stdout


def test_flannel_is_a_static_aarch64_program(flannel_binary):
    elf = _elf(flannel_binary)
    assert elf["machine"] == EM_AARCH64, f"{flannel_binary}: e_machine {elf['machine']}, not AArch64"
    assert elf["interpreter"] is None, "flannel's plugin is built without cgo and needs no loader"


def test_flannel_answers_cni_version_under_emulation(flannel_binary, emulator):
    done = _run([str(flannel_binary)], {"CNI_COMMAND": "VERSION"})
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    # k3s must be started with a 0.4.0 conflist for this plugin (see builds/k3s.py).
    assert "0.4.0" in answer["supportedVersions"]
