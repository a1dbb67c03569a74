"""The blueprint on its target boards' architecture and userland, on a throwaway lab.

The default lab's Jetson is amd64 (bullseye, JetPack 5's glibc). This lab (its own name and
subnet, taken down at the end) adds what the default one cannot show: a Jetson that is arm64
*and* bullseye, running under qemu-user, beside an amd64 switch (the K3S server) and an amd64
switch agent to compare with. The platform, K3S, Parsec and node-certification deploys run on
all three; each step is timed, and the figures are printed at the end (`-s` shows them) and
written to reports/targets-figures.txt.

Pods cannot start on an emulated node: qemu-user has no seccomp, and containerd refuses every
pod that asks for a seccomp profile (the blueprint's all do). Functions and Triton on arm64 are
proved by tests/arm64 instead (the arm64 runtime image serving a call; the arm64 Triton).

Needs root (the lab boots systemd-nspawn devices and registers qemu-user through binfmt_misc).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.integration.support import wait_for

pytestmark = pytest.mark.targets

REPO = Path(__file__).resolve().parents[2]
LAB = os.environ.get("EDGEFAAS_TARGETS_LAB", "targets")
SUBNET = os.environ.get("EDGEFAAS_TARGETS_SUBNET", "10.86.0.0/24")
BOARD, SWITCH_AGENT, SERVER = "jetson-1", "sonic-2", "sonic-1"
SPEC = f"""\
name: {LAB}
subnet: {SUBNET}
devices:
  - {{name: {SERVER}, profile: sonic, roles: [k3s_server]}}
  - {{name: {SWITCH_AGENT}, profile: sonic, roles: [k3s_agent]}}
  - {{name: {BOARD}, profile: jetson, roles: [k3s_agent], arch: arm64, userland: bullseye}}
"""
FIGURES: dict[str, str] = {}


def _edgefaas(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgefaas.cli", *args],
        cwd=REPO,
        env={**os.environ, "EDGEFAAS_LAB": LAB},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _on(device: str, command: str, timeout: float = 120) -> str:
    done = _edgefaas("lab", "ssh", device, "--name", LAB, "--", command, timeout=timeout)
    assert done.returncode == 0, f"{device}: {command!r} failed: {done.stderr.strip()}"
    return done.stdout.strip()


def _deploy(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pyinfra", "-y", *args, "inventories/lab.py", f"deploys/{name}.py"],
        cwd=REPO,
        env={**os.environ, "EDGEFAAS_LAB": LAB},
        capture_output=True,
        text=True,
        timeout=1500,
    )
    FIGURES[f"deploys/{name}.py {' '.join(args)}".strip()] = f"{time.monotonic() - started:.0f} s"
    return done


def _deployed(name: str) -> None:
    done = _deploy(name)
    assert done.returncode == 0, f"deploys/{name}.py failed on the targets lab:\n{done.stdout[-3000:]}"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.fail("the target tests boot devices: run them as root")
    spec = tmp_path_factory.mktemp("targets") / "spec.yaml"
    spec.write_text(SPEC)
    started = time.monotonic()
    up = _edgefaas("lab", "up", "--spec", str(spec), timeout=1800)
    FIGURES["lab up to SSH-ready (with any rootfs build)"] = f"{time.monotonic() - started:.1f} s"
    try:
        assert up.returncode == 0, f"edgefaas lab up --spec ({LAB}) failed:\n{up.stderr[-3000:]}"
        yield LAB
    finally:
        down = _edgefaas("lab", "down", "--name", LAB)
        figures = "\n".join(f"{step}: {value}" for step, value in FIGURES.items()) + "\n"
        print("\n" + figures, end="")
        (REPO / "reports").mkdir(exist_ok=True)
        (REPO / "reports" / "targets-figures.txt").write_text(figures)
        assert down.returncode == 0, f"edgefaas lab down --name {LAB} failed: {down.stderr.strip()}"


def _kubectl_json(command: str) -> dict:
    return json.loads(_on(SERVER, f"sudo kubectl {command} -o json"))


def _ready_seconds(node: dict) -> float:
    """From the start of the device's k3s-agent to its node's Ready condition (one kernel
    clock: the lab's devices share the machine's)."""
    name = node["metadata"]["name"]
    ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
    assert ready, f"{name} has no Ready condition: {node['status']['conditions']}"
    assert ready[0]["status"] == "True", f"{name}: {ready[0].get('message')}"
    started = _on(name, 'date -d "$(systemctl show -p ExecMainStartTimestamp --value k3s-agent)" +%s')
    ready_at = datetime.fromisoformat(ready[0]["lastTransitionTime"].replace("Z", "+00:00")).timestamp()
    return ready_at - int(started)


def test_the_board_is_an_arm64_bullseye_device(lab):
    assert _on(BOARD, "uname -m") == "aarch64"
    assert _on(BOARD, "getconf GNU_LIBC_VERSION") == "glibc 2.31"
    assert _on(SERVER, "uname -m") == "x86_64"


def test_the_platform_installs_edgefaas_on_its_own_arm64_python(lab):
    _deployed("platform")
    probe = "import platform, sys; print(platform.machine(), platform.libc_ver()[1], sys.version.split()[0])"
    machine, libc, python = _on(BOARD, f"/opt/edgefaas/venv/bin/python -c '{probe}'").split()
    # The bundle's interpreter and C library on a board whose own are Python 3.9 and glibc 2.31.
    assert (machine, libc, python) == ("aarch64", "2.36", "3.11.2")
    assert _on(BOARD, "edgefaas --version").startswith("edgefaas ")


def test_the_arm64_board_joins_k3s_as_a_ready_agent(lab):
    _deployed("k3s")
    nodes = {n["metadata"]["name"]: n for n in _kubectl_json("get nodes")["items"]}
    assert nodes[BOARD]["metadata"]["labels"]["kubernetes.io/arch"] == "arm64"
    assert nodes[SWITCH_AGENT]["metadata"]["labels"]["kubernetes.io/arch"] == "amd64"
    board, switch = _ready_seconds(nodes[BOARD]), _ready_seconds(nodes[SWITCH_AGENT])
    FIGURES["K3S agent, start to node Ready: arm64 (emulated) / amd64"] = f"{board:.0f} / {switch:.0f} s"


def test_the_arm64_parsec_service_answers_on_the_board(lab):
    _deployed("parsec")
    # e_machine 183 (0xb7): the arm64 build, not an amd64 one under some other name.
    assert _on(BOARD, "od -An -tx1 -j18 -N2 /usr/libexec/parsec/parsec").split() == ["b7", "00"]
    ping = _on(BOARD, "sudo edgefaas parsec ping")
    assert ping.endswith("wire protocol 1.0"), ping


def test_the_arm64_board_is_certified_through_its_parsec_key(lab):
    _deployed("nodeauth")
    state = _on(BOARD, "systemctl is-active edgefaas-nodeauth-agent")
    assert state == "active", f"edgefaas-nodeauth-agent on {BOARD} is {state}"
    labels: dict = {}

    def certified() -> dict | None:
        node = _kubectl_json(f"get node {BOARD}")
        labels.clear()
        labels.update(node["metadata"]["labels"])
        return node if node["metadata"]["labels"].get("edgefaas.io/certified") == "true" else None

    node = wait_for(certified, 60, lambda: f"{BOARD} to be certified (its labels: {labels})", interval=2)
    assert not node["spec"].get("unschedulable"), f"{BOARD} is still cordoned"


def test_triton_as_a_service_is_refused_on_the_board_before_any_change(lab):
    done = _deploy("triton", "--limit", BOARD, "--data", "triton_as_k3s_workload=False")
    output = done.stdout + done.stderr
    assert done.returncode != 0, f"a Triton service was accepted on glibc 2.31:\n{output[-2000:]}"
    assert f"{BOARD}: Debian GNU/Linux 11 (bullseye)" in output and "needs glibc >= 2.35" in output
    assert _on(BOARD, "test -e /opt/tritonserver && echo present || echo absent") == "absent"
