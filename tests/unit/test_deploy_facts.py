"""What the deploys' own facts make of their commands' output (edgefaas.deploy.facts)."""

from __future__ import annotations

import subprocess

import pytest

from edgefaas.deploy.facts import K3sImage, NvidiaGpu, UnpackedArtifact

pytestmark = pytest.mark.unit


def test_a_gpu_is_there_when_either_device_node_is_listed():
    assert NvidiaGpu().process(["/dev/nvhost-ctrl-gpu"]) is True
    assert NvidiaGpu().process(["", " "]) is False


def test_an_unpacked_artifact_is_known_only_when_complete(tmp_path):
    fact = UnpackedArtifact()
    home = tmp_path / "tritonserver"
    (home / "bin").mkdir(parents=True)

    def read() -> str | None:
        command = fact.command(home=str(home), binary="bin/tritonserver")
        done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True)
        return fact.process(done.stdout.splitlines())

    (home / ".artifact-sha256").write_text("abc\n")
    assert read() is None, "no binary: an unpack cut short"
    (home / "bin" / "tritonserver").write_text("#!/bin/sh\n")
    (home / "bin" / "tritonserver").chmod(0o755)
    assert read() == "abc"
    (home / ".artifact-sha256").unlink()
    assert read() is None


def test_an_image_is_present_only_when_crictl_says_so():
    command = K3sImage().command(socket="/run/k3s/containerd/containerd.sock", ref="docker.io/x/y:1")
    assert "unix:///run/k3s/containerd/containerd.sock" in command and "docker.io/x/y:1" in command
    assert K3sImage().process(["present"]) is True
    assert K3sImage().process(["missing"]) is False
    assert K3sImage().process([]) is False
