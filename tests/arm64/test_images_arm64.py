"""The arm64 images and wheelhouse work in an arm64 userland, under emulation.

The arm64 runtime image's own layers, unpacked, are the userland (chroot; qemu-user through
binfmt_misc while the tests run): its function runtime serves a real function, and the arm64
wheelhouse installs into it and imports the device-side packages. Needs root.

    edgefaas lab build --arch arm64 wheelhouse pause-image runtime-image metrics-server-image
    pytest -m arm64 tests/arm64/test_images_arm64.py
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request
from pathlib import Path

from edgefaas.backends import kubernetes_manifests
from edgefaas.lab.builds.steps import elf_arch
from edgefaas.perf.stats import percentile
from tests.arm64 import support
from tests.integration.support import wait_for

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


def test_the_metrics_server_image_runs_arm64_metrics_server(arm64_artifact, tmp_path):
    from edgefaas.lab.builds import metrics_server
    from edgefaas.lab.builds.steps import foreign_command

    image = arm64_artifact("metrics-server-image", "metrics-server-image")
    config, _ = support.image_config(image)
    assert config["architecture"] == "arm64"
    assert config["config"]["Entrypoint"] == [metrics_server.ENTRYPOINT]
    root = tmp_path / "root"
    support.unpack_image(image, root)
    binary = root / metrics_server.ENTRYPOINT.lstrip("/")
    assert elf_arch(binary) == "arm64"
    argv, env = foreign_command([str(binary), "--version"], "arm64")
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == metrics_server.VERSION, done.stderr[-2000:]


def test_the_runtime_image_is_arm64(arm64_artifact, arm64_root):
    config, _ = support.image_config(arm64_artifact("runtime-image", "runtime-image"))
    assert config["architecture"] == "arm64"
    assert elf_arch(arm64_root / "usr/bin/python3.11") == "arm64"


def _serve(argv: list[str], env: dict[str, str], port: int, calls: int = 10) -> tuple[dict, float, float]:
    """Start a function runtime, wait (up to 180 s) until it answers, then call it `calls`
    times; return its answer, the seconds to its first answer and the p50 call time in
    seconds. Stops it either way."""
    launched = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def call() -> dict:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/",
            data=json.dumps({"message": "from arm64"}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as reply:
            return json.loads(reply.read())

    def answered() -> dict | None:
        assert proc.poll() is None, f"the runtime exited: {proc.stdout.read().decode()[-2000:]}"
        try:
            return call()
        except OSError:
            return None

    try:
        answer = wait_for(answered, 180, f"{argv[:3]} to answer", interval=0.5)
        first = time.perf_counter() - launched
        took = []
        for _ in range(calls):
            started = time.perf_counter()
            call()
            took.append(time.perf_counter() - started)
    finally:
        support.stop(proc)
    return answer, first, percentile(took, 50)


def test_the_runtime_image_serves_a_function_on_arm64_as_a_pod_runs_it(arm64_artifact, arm64_root):
    """The image's own Cmd and Env, configured as the Kubernetes backend configures a pod
    (EDGEFAAS_CODE in a read-only code directory, EDGEFAAS_PORT, its working directory and
    unprivileged user), answers a call with the function's real answer."""
    config, _ = support.image_config(arm64_artifact("runtime-image", "runtime-image"))
    code_dir = arm64_root / kubernetes_manifests.CODE_DIR.lstrip("/")
    code_dir.mkdir(mode=0o755, exist_ok=True)
    shutil.copy(REPO / "functions" / "FuncC.py", code_dir / kubernetes_manifests.CODE_FILE)
    (code_dir / kubernetes_manifests.CODE_FILE).chmod(0o444)
    port = _free_port()
    env = dict(item.split("=", 1) for item in config["config"]["Env"])
    env.update(
        EDGEFAAS_CODE=f"{kubernetes_manifests.CODE_DIR}/{kubernetes_manifests.CODE_FILE}",
        EDGEFAAS_PORT=str(port),
        EDGEFAAS_FUNCTION_NAME="FuncC",
        HOME="/",
    )
    user = f"--userspec={kubernetes_manifests.RUNTIME_UID}:{kubernetes_manifests.RUNTIME_UID}"
    workdir = f"--chdir={kubernetes_manifests.CODE_DIR}"
    argv = ["chroot", user, str(arm64_root), "env", workdir, *config["config"]["Cmd"]]
    answer, emulated_start, emulated = _serve(argv, env, port)
    assert answer["function"] == "FuncC" and answer["message"] == "from arm64"
    assert answer["call_id"]

    # The same function on this machine's own Python, for the cost of emulation per call.
    native_port = _free_port()
    native_env = {**os.environ, "EDGEFAAS_CODE": str(code_dir / kubernetes_manifests.CODE_FILE)}
    native_env["EDGEFAAS_PORT"] = str(native_port)
    native_argv = [sys.executable, "-m", "edgefaas.runtime"]
    native_answer, native_start, native = _serve(native_argv, native_env, native_port)
    assert native_answer["function"] == "FuncC"
    print(
        f"\nFuncC, arm64 under qemu-user / native: first answer {emulated_start:.1f} / {native_start:.1f} s,"
        f" a call (p50 of 10) {emulated * 1e3:.1f} / {native * 1e3:.1f} ms"
    )


def test_the_arm64_wheelhouse_installs_and_imports_in_an_arm64_userland(arm64_artifact, arm64_root):
    wheels = arm64_root / "tmp/wheels"
    wheels.mkdir()
    with tarfile.open(arm64_artifact("edgefaas-wheelhouse", "wheelhouse")) as tar:
        tar.extractall(wheels, filter="data")
    pip_wheels = sorted((arm64_root / "usr/share/python-wheels").glob("pip-*.whl"))
    assert pip_wheels, "the arm64 runtime image has no pip wheel in /usr/share/python-wheels"
    pip_wheel = pip_wheels[0]
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
