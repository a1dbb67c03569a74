"""The arm64 images and wheelhouse work in an arm64 userland, under emulation.

The arm64 runtime image's own layers, unpacked, are the userland (chroot; qemu-user through
binfmt_misc while the tests run): its function runtime serves a real function, and the arm64
wheelhouse installs into it and imports the device-side packages. Needs root.

    edgefaas lab build --arch arm64 wheelhouse pause-image runtime-image
    pytest -m arm64 tests/arm64/test_images_arm64.py
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tarfile
import time
import urllib.request
from pathlib import Path

from edgefaas.lab.builds import images
from edgefaas.lab.builds.steps import elf_arch
from tests.arm64 import support

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_pause_image_is_arm64(arm64_artifact, tmp_path):
    image = arm64_artifact("pause-image", "pause-image")
    config, _ = support.image_config(image)
    assert config["architecture"] == "arm64"
    support.unpack_image(image, tmp_path / "root")
    assert elf_arch(tmp_path / "root" / "catatonit") == "arm64"


def test_the_runtime_image_is_arm64(arm64_artifact, arm64_root):
    config, _ = support.image_config(arm64_artifact("runtime-image", "runtime-image"))
    assert config["architecture"] == "arm64"
    assert elf_arch(arm64_root / "usr/bin/python3.11") == "arm64"


def test_the_runtime_image_serves_a_function_on_arm64(arm64_root):
    shutil.copy(REPO / "functions" / "FuncC.py", arm64_root / "tmp" / "FuncC.py")
    port = _free_port()
    argv = [f"{images.VENV}/bin/python3", "-m", "edgefaas.runtime", "--code", "/tmp/FuncC.py"]
    proc = subprocess.Popen(
        ["chroot", str(arm64_root), *argv, "--port", str(port)],
        env=support.CHROOT_ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline, answer = time.monotonic() + 180, None
        while answer is None:
            assert proc.poll() is None, f"the arm64 runtime exited: {proc.stdout.read().decode()[-2000:]}"
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/",
                data=json.dumps({"message": "from arm64"}).encode(),
                headers={"Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=30) as reply:
                    answer = json.loads(reply.read())
            except OSError:
                assert time.monotonic() < deadline, "the arm64 runtime did not answer within 180 s"
                time.sleep(0.5)
    finally:
        proc.terminate()  # our own child, by its handle
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert answer["function"] == "FuncC" and answer["message"] == "from arm64"


def test_the_arm64_wheelhouse_installs_and_imports_in_an_arm64_userland(arm64_artifact, arm64_root):
    wheels = arm64_root / "tmp/wheels"
    wheels.mkdir()
    with tarfile.open(arm64_artifact("edgefaas-wheelhouse", "wheelhouse")) as tar:
        tar.extractall(wheels, filter="data")
    pip_wheel = next((arm64_root / "usr/share/python-wheels").glob("pip-*.whl"))
    venv = "/opt/check/venv"  # beside the image's own venv, from the bare Debian python
    created = support.chroot(arm64_root, "python3", "-m", "venv", "--without-pip", venv)
    assert created.returncode == 0, created.stderr
    pip = [f"{venv}/bin/python", f"/usr/share/python-wheels/{pip_wheel.name}/pip"]
    flags = ["--disable-pip-version-check", "--no-cache-dir", "--no-compile", "-q", "--no-index"]
    requirement = "edgefaas[gateway,vision,nodeauth]"
    installed = support.chroot(
        arm64_root, *pip, "install", *flags, "--find-links", "/tmp/wheels", requirement
    )
    assert installed.returncode == 0, (
        f"pip install {requirement} under arm64 failed:\n{installed.stderr[-3000:]}"
    )
    modules = "edgefaas.gateway.app, edgefaas.vision.faces, edgefaas.nodeauth.server"
    probe = f"import platform, {modules}; print(platform.machine())"
    imported = support.chroot(arm64_root, f"{venv}/bin/python", "-c", probe)
    assert imported.returncode == 0, imported.stderr[-3000:]
    assert imported.stdout.strip() == "aarch64"
