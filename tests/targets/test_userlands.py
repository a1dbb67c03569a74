"""Target userlands the blueprint refuses or supports, on devices booted for the purpose.

A throwaway virtual lab (its own name and subnet, taken down at the end) holds a SONiC
switch on bookworm and a Jetson on bullseye (glibc 2.31, Python 3.9: the JetPack 5
generation). The platform deploy must refuse the Jetson before it changes anything on any
device, naming it and what it lacks. Needs root (the lab boots systemd-nspawn devices).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.targets

REPO = Path(__file__).resolve().parents[2]
LAB = os.environ.get("EDGEFAAS_TARGETS_LAB", "targets")
SUBNET = os.environ.get("EDGEFAAS_TARGETS_SUBNET", "10.86.0.0/24")
SPEC = f"""\
name: {LAB}
subnet: {SUBNET}
devices:
  - {{name: sonic-1, profile: sonic, roles: [k3s_server]}}
  - {{name: jetson-1, profile: jetson, roles: [k3s_agent], userland: bullseye}}
"""


def _edgefaas(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgefaas.cli", *args],
        cwd=REPO,
        env={**os.environ, "EDGEFAAS_LAB": LAB},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _on(device: str, command: str) -> str:
    done = _edgefaas("lab", "ssh", device, "--name", LAB, "--", command, timeout=60)
    assert done.returncode == 0, f"{device}: {command!r} failed: {done.stderr.strip()}"
    return done.stdout.strip()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.fail("the target-userland tests boot devices: run them as root")
    spec = tmp_path_factory.mktemp("targets") / "spec.yaml"
    spec.write_text(SPEC)
    up = _edgefaas("lab", "up", "--spec", str(spec), timeout=1200)
    try:
        assert up.returncode == 0, f"edgefaas lab up --spec ({LAB}) failed:\n{up.stderr[-3000:]}"
        yield LAB
    finally:
        down = _edgefaas("lab", "down", "--name", LAB)
        assert down.returncode == 0, f"edgefaas lab down --name {LAB} failed: {down.stderr.strip()}"


def test_the_bullseye_jetson_has_the_jetpack5_generation_userland(lab):
    assert "bullseye" in _on("jetson-1", "cat /etc/os-release")
    assert _on("jetson-1", "getconf GNU_LIBC_VERSION") == "glibc 2.31"
    assert _on("sonic-1", "getconf GNU_LIBC_VERSION") == "glibc 2.36"


def test_platform_deploy_refuses_an_older_userland_before_changing_anything(lab):
    done = subprocess.run(
        [sys.executable, "-m", "pyinfra", "-y", "inventories/lab.py", "deploys/platform.py"],
        cwd=REPO,
        env={**os.environ, "EDGEFAAS_LAB": LAB},
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0, f"the platform deploy accepted a bullseye Jetson:\n{output[-2000:]}"
    refusals = [line for line in output.splitlines() if "is older than this blueprint supports" in line]
    assert len(refusals) == 1, f"expected one refusal line, got:\n{output[-2000:]}"
    assert "jetson-1: Debian GNU/Linux 11 (bullseye) (glibc 2.31, Python 3.9)" in refusals[0]
    assert "needs Python 3.11" in refusals[0]
    # pyinfra stops while preparing operations: no device was touched, the switch included.
    for device in ("sonic-1", "jetson-1"):
        assert _on(device, "test -e /opt/edgefaas && echo present || echo absent") == "absent"
        assert _on(device, "getent passwd edgefaas >/dev/null && echo present || echo absent") == "absent"
