"""The arm64 Triton tarball holds an arm64 server that starts in an arm64 userland.

edgefaas lab build --arch arm64 triton runtime-image
pytest -m arm64 tests/arm64/test_triton_arm64.py
"""

from __future__ import annotations

import tarfile

from edgefaas.lab.builds.steps import elf_arch
from tests.arm64 import support

HOME = "/opt/tritonserver/arm64"


def test_the_arm64_tritonserver_is_arm64_and_answers_help(arm64_artifact, arm64_root):
    home = arm64_root / HOME.lstrip("/")
    home.mkdir(parents=True)
    with tarfile.open(arm64_artifact("tritonserver", "triton")) as tar:
        tar.extractall(home, filter="data")
    assert elf_arch(home / "bin/tritonserver") == "arm64"
    assert elf_arch(home / "backends/python/triton_python_backend_stub") == "arm64"
    done = support.chroot(
        arm64_root, "env", f"LD_LIBRARY_PATH={HOME}/lib", f"{HOME}/bin/tritonserver", "--help"
    )
    assert "--model-repository" in done.stdout + done.stderr, (done.stdout + done.stderr)[-2000:]
