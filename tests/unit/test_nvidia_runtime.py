"""The nvidia container runtime path: node labels, the RuntimeClass, the Triton workload's pod
spec, K3S's containerd template, and the lab Jetson's stand-in runtime."""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from pathlib import Path

import jinja2
import pytest
import yaml

from edgefaas.deploy import nvidia
from edgefaas.deploy.facts import NvidiaContainerRuntime
from edgefaas.deploy.inventory import load_inventory
from edgefaas.lab import profiles
from edgefaas.lab.spec import load_spec
from edgefaas.lab.state import LabState

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = REPO / "templates"
TOOLKIT, PACKAGE = nvidia.RUNTIME_PATHS


def render(template: str, **variables: object) -> str:
    # As pyinfra's files.template renders: strict about undefined names.
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return env.from_string((TEMPLATES / template).read_text()).render(**variables)


# -- planning ---------------------------------------------------------------------------------


def test_the_node_label_is_always_set_false_included():
    assert nvidia.node_label(PACKAGE) == "edgefaas.io/nvidia-runtime=true"
    # K3S never drops a label it set: a runtime that went away must say false.
    assert nvidia.node_label(None) == "edgefaas.io/nvidia-runtime=false"


@pytest.mark.parametrize(
    ("listing", "found"),
    [
        ([], None),
        ([PACKAGE], PACKAGE),
        # K3S prefers the GPU Operator's toolkit over the package, whatever order ls gives.
        ([PACKAGE, TOOLKIT], TOOLKIT),
        ([f"{TOOLKIT}/", PACKAGE], PACKAGE),  # a directory of that name is no runtime
        ([f"{PACKAGE}/"], None),
        (["/usr/local/bin/nvidia-container-runtime"], None),  # on PATH, but K3S won't look there
    ],
)
def test_the_runtime_is_the_one_k3s_would_find(listing, found):
    assert nvidia.runtime_from_listing(listing) == found
    assert NvidiaContainerRuntime().process(listing) == found


def test_the_fact_lists_the_places_k3s_checks_marking_directories():
    command = NvidiaContainerRuntime.command
    assert command.startswith("ls -dp ") and all(path in command for path in nvidia.RUNTIME_PATHS)
    assert command.endswith("; true")  # nothing found is an answer, not a failed fact


def test_no_runtime_means_a_plain_pod():
    assert nvidia.pod_runtime(None, gpu=False) == nvidia.PodRuntime(None, {})
    # A GPU without the runtime cannot be handed to a container by it: still plain.
    assert nvidia.pod_runtime(None, gpu=True) == nvidia.PodRuntime(None, {})


def test_the_runtime_without_a_gpu_gives_the_class_and_asks_for_no_device():
    assert nvidia.pod_runtime(PACKAGE, gpu=False) == nvidia.PodRuntime("nvidia", {})


def test_the_runtime_with_a_gpu_asks_it_for_the_devices():
    runtime = nvidia.pod_runtime(PACKAGE, gpu=True)
    assert runtime.runtime_class == "nvidia"
    assert runtime.env["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert "compute" in runtime.env["NVIDIA_DRIVER_CAPABILITIES"]


# -- templates --------------------------------------------------------------------------------


def test_the_runtime_class_selects_the_labelled_nodes():
    doc = yaml.safe_load(
        render("k3s/nvidia-runtimeclass.yaml.j2", runtime_class=nvidia.RUNTIME_CLASS, label=nvidia.NODE_LABEL)
    )
    assert doc["apiVersion"] == "node.k8s.io/v1" and doc["kind"] == "RuntimeClass"
    assert doc["metadata"]["name"] == "nvidia" and doc["handler"] == "nvidia"
    assert doc["scheduling"]["nodeSelector"] == {"edgefaas.io/nvidia-runtime": "true"}
    # The value the node label carries, so the selector and the label cannot drift apart.
    assert nvidia.node_label(PACKAGE).split("=", 1) == ["edgefaas.io/nvidia-runtime", "true"]


def _k3s_renders(template: str, runtimes: dict[str, dict[str, str]]) -> str:
    """K3S's own (Go template) pass over the file, for the fields this template uses (no
    registries.yaml: K3S leaves .PrivateRegistryConfig empty, and that block renders nothing)."""
    template = re.sub(r"\{\{ if \.PrivateRegistryConfig \}\}.*\Z", "", template, flags=re.S)
    match = re.search(r"\{\{ range \$k, \$v := \.ExtraRuntimes \}\}(.*?)\{\{ end \}\}", template, re.S)
    assert match, "the template ranges over K3S's ExtraRuntimes"
    body = match.group(1)
    runs = "".join(
        body.replace("{{ $k }}", name)
        .replace("{{ $v.RuntimeType }}", config["RuntimeType"])
        .replace("{{ $v.BinaryName }}", config["BinaryName"])
        for name, config in runtimes.items()
    )
    text = template[: match.start()] + runs + template[match.end() :]
    text = text.replace("{{ .NodeConfig.SELinux }}", "false").replace("{{ .SystemdCgroup }}", "true")
    return re.sub(r"\{\{ \.[A-Za-z.]+ \}\}", "x", text)


@pytest.mark.parametrize("restrict", [False, True])
def test_k3s_containerd_template_gives_the_detected_runtime_its_binary(restrict):
    template = render("k3s/config.toml.tmpl.j2", restrict_oom_score_adj=restrict)
    found = {"nvidia": {"RuntimeType": "io.containerd.runc.v2", "BinaryName": PACKAGE}}
    runtimes = tomllib.loads(_k3s_renders(template, found))["plugins"]["io.containerd.grpc.v1.cri"][
        "containerd"
    ]["runtimes"]
    assert runtimes["nvidia"]["runtime_type"] == "io.containerd.runc.v2"
    assert runtimes["nvidia"]["options"]["BinaryName"] == PACKAGE
    assert runtimes["runc"]["runtime_type"] == "io.containerd.runc.v2"
    plain = tomllib.loads(_k3s_renders(template, {}))["plugins"]["io.containerd.grpc.v1.cri"]
    assert set(plain["containerd"]["runtimes"]) == {"runc"}


def _workloads(runtime: nvidia.PodRuntime) -> dict:
    text = render(
        "triton/workloads.yaml.j2",
        namespace="edgefaas-triton",
        image="docker.io/edgefaas/runtime:1",
        image_venv="/opt/edgefaas/venv",
        home="/opt/tritonserver/2.51.0",
        models="/var/lib/triton/models",
        workloads=[
            {
                "name": "tritonserver-jetson-1",
                "node": "jetson-1",
                "command": ["tritonserver"],
                "config_sha256": "0" * 16,
                "ports": {"http_port": 8000, "grpc_port": 8001, "metrics_port": 8002},
                "runtime_class": runtime.runtime_class,
                "env": runtime.env,
            }
        ],
    )
    deployment = next(d for d in yaml.safe_load_all(text) if d and d["kind"] == "Deployment")
    return deployment["spec"]["template"]["spec"]


def test_the_triton_workload_runs_with_the_nvidia_class_on_a_node_with_the_runtime():
    spec = _workloads(nvidia.pod_runtime(PACKAGE, gpu=False))
    assert spec["runtimeClassName"] == "nvidia"
    env = {e["name"] for e in spec["containers"][0]["env"]}
    assert "NVIDIA_VISIBLE_DEVICES" not in env  # no GPU: no device asked for


def test_the_triton_workload_on_a_gpu_asks_the_runtime_for_it():
    spec = _workloads(nvidia.pod_runtime(PACKAGE, gpu=True))
    env = {e["name"]: e["value"] for e in spec["containers"][0]["env"]}
    assert spec["runtimeClassName"] == "nvidia" and env["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert env["LD_LIBRARY_PATH"] == "/opt/tritonserver/2.51.0/lib"


def test_the_triton_workload_elsewhere_has_no_runtime_class():
    spec = _workloads(nvidia.pod_runtime(None, gpu=False))
    assert "runtimeClassName" not in spec
    assert {e["name"] for e in spec["containers"][0]["env"]} == {"PATH", "LD_LIBRARY_PATH"}


# -- the virtual lab --------------------------------------------------------------------------


def _profile_root(tmp_path: Path, name: str) -> Path:
    lab = load_spec(devices=3)
    root = tmp_path / name
    (root / "etc/systemd/system").mkdir(parents=True)  # as in the device's rootfs
    profiles.apply(root, lab, lab.device(name))
    return root


def test_the_lab_jetson_has_a_stand_in_runtime_where_k3s_looks(tmp_path):
    runtime = _profile_root(tmp_path, "jetson-1") / profiles.NVIDIA_RUNTIME
    assert "/" + profiles.NVIDIA_RUNTIME == PACKAGE
    assert runtime.is_file() and os.access(runtime, os.X_OK)
    text = runtime.read_text()
    assert text.startswith("#!/bin/sh\n") and "Lab stand-in for nvidia-container-runtime" in text
    assert text.rstrip().endswith('exec /usr/sbin/runc "$@"')


def test_switches_get_no_stand_in_runtime(tmp_path):
    assert not (_profile_root(tmp_path, "sonic-1") / profiles.NVIDIA_RUNTIME).exists()


def test_the_stand_in_logs_each_call_and_passes_the_arguments_on_unchanged(tmp_path):
    log = tmp_path / "calls.log"
    # The very script, with runc and its log swapped for ones the test can read.
    script = tmp_path / "runtime"
    script.write_text(
        profiles.NVIDIA_RUNTIME_SCRIPT.replace(profiles.NVIDIA_RUNTIME_LOG, str(log)).replace(
            "exec /usr/sbin/runc", "exec printf '%s\\n'"
        )
    )
    args = ["--root", "/run/containerd/runc/k8s.io", "create", "--bundle", "/b c", "abc123"]
    for _ in range(2):
        out = subprocess.run(["sh", str(script), *args], capture_output=True, text=True, check=True)
        assert out.stdout.splitlines() == args  # the spaces in "/b c" kept: "$@", not $*
    lines = log.read_text().splitlines()
    assert len(lines) == 2 and all(line.endswith(" create --bundle /b c abc123") for line in lines)


def test_the_lab_inventory_runs_triton_as_a_workload_on_the_jetson(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEFAAS_STATE", str(tmp_path))
    LabState(spec=load_spec(devices=3)).save()
    inventory = load_inventory(str(REPO / "inventories/lab.py"), cwd=str(REPO))
    workloads = {h.name for h in inventory if h.data.get("triton_as_k3s_workload")}
    assert workloads == {"sonic-2", "jetson-1"}
