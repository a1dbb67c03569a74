"""How deploys/triton.py runs Triton, planned before any device is touched (edgefaas.deploy.triton)."""

from __future__ import annotations

import pytest

from edgefaas.deploy import triton as plan
from edgefaas.deploy.facts import NvidiaContainerRuntime, NvidiaGpu, Userland
from edgefaas.deploy.triton import MODELS_DIR, has_gpu, host_ports, server_command, workload_key

from .deploy_fakes import Data, FakeHost

pytestmark = pytest.mark.unit


def test_ports_come_from_host_data_else_triton_s_defaults():
    assert host_ports(Data()) == {"http_port": 8000, "grpc_port": 8001, "metrics_port": 8002}
    assert host_ports(Data(triton_http_port="9000", triton_metrics_port=None))["http_port"] == 9000
    assert host_ports(Data(triton_metrics_port=None))["metrics_port"] == 8002


def test_the_server_command_serves_the_model_repository_on_the_host_s_ports():
    command = server_command("/opt/tritonserver/2.51.0", host_ports(Data(triton_grpc_port=7001)), gpu=False)
    assert command[0] == "/opt/tritonserver/2.51.0/bin/tritonserver"
    assert f"--model-repository={MODELS_DIR}" in command
    assert "--backend-directory=/opt/tritonserver/2.51.0/backends" in command
    assert "--model-control-mode=explicit" in command and "--strict-readiness=true" in command
    assert {"--http-port=8000", "--grpc-port=7001", "--metrics-port=8002"} <= set(command)
    assert "--allow-gpu-metrics=false" in command
    assert "--allow-gpu-metrics=true" in server_command("/t", host_ports(Data()), gpu=True)


def test_the_workload_key_changes_with_what_the_pod_runs_and_nothing_else():
    key = workload_key(Data(), "server-sha", "wheels-sha")
    assert len(key) == 16 and key == workload_key(Data(triton_gpu=True), "server-sha", "wheels-sha")
    assert key != workload_key(Data(), "server-sha-2", "wheels-sha")
    assert key != workload_key(Data(), "server-sha", "wheels-sha-2")
    assert key != workload_key(Data(triton_http_port=9000), "server-sha", "wheels-sha")


def test_host_data_decides_the_gpu_before_the_device_s_own_answer():
    assert has_gpu(FakeHost("jetson-1", facts={NvidiaGpu: True})) is True
    assert has_gpu(FakeHost("jetson-1", facts={NvidiaGpu: False})) is False
    assert has_gpu(FakeHost("jetson-1", facts={NvidiaGpu: True}, triton_gpu=False)) is False
    assert has_gpu(FakeHost("sonic-1", facts={}, triton_gpu=True)) is True


def _lab(**extra):
    return [
        FakeHost("sonic-1", ("sonic", "k3s_server"), triton_server=True, k3s_node_ip="10.77.0.11"),
        FakeHost("sonic-2", ("sonic", "k3s_agent"), triton_server=True, ssh_hostname="10.77.0.12"),
        FakeHost("jetson-1", ("jetson", "k3s_agent"), triton_server=True, ssh_hostname="10.77.0.13", **extra),
    ]


def test_the_test_cases_cross_device_kinds():
    http, grpc = plan.testcases(_lab(triton_grpc_port=9001))
    # HTTP on the SONiC agent against the Jetson's server, gRPC on the Jetson against the K3S server's.
    assert (http["name"], http["case"], http["node"]) == ("triton-http-face", "http-face", "sonic-2")
    assert http["command"][:5] == ["python3", "-m", "edgefaas.triton.testcases", "http-face", "--url"]
    assert http["command"][5] == "http://10.77.0.13:8000"
    assert http["command"][-2:] == ["--report", "/dev/termination-log"]
    assert "--photo" in http["command"]
    assert (grpc["name"], grpc["case"], grpc["node"]) == ("triton-grpc-numeric", "grpc-numeric", "jetson-1")
    assert grpc["command"][4:6] == ["--url", "10.77.0.11:8001"]


def test_without_a_jetson_the_cases_still_run_on_two_nodes_against_other_servers():
    lab = _lab()[:2]
    http, grpc = plan.testcases(lab)
    assert http["node"] == "sonic-2" and http["command"][5] == "http://10.77.0.11:8000"
    assert grpc["node"] == "sonic-1" and grpc["command"][5] == "10.77.0.12:8001"


def test_no_test_cases_with_fewer_than_two_nodes_or_two_servers():
    assert plan.testcases(_lab()[:1]) == []
    lab = _lab()
    lab[1].data["triton_server"] = lab[2].data["triton_server"] = False
    assert plan.testcases(lab) == []


BOOKWORM = {"id": "debian", "kernel": "6.1.0", "systemd": "systemd 252 (252.30-1)", "glibc": "glibc 2.36"}
JETPACK4 = {"id": "ubuntu", "kernel": "4.9.337-tegra", "systemd": "systemd 237", "glibc": "glibc 2.27"}


def _templates(tmp_path):
    for model in ("face_expression", "numeric"):
        (tmp_path / model).mkdir(parents=True)
    (tmp_path / "README").write_text("not a model\n")
    return tmp_path


def test_triton_as_a_service_needs_the_glibc_it_was_built_for(tmp_path):
    models = {"face_expression": {}}
    templates = _templates(tmp_path)
    ok = FakeHost("sonic-1", ("sonic", "k3s_server"), facts={Userland: BOOKWORM}, triton_models=models)
    assert plan.refusal(ok, "2.51.0", templates) is None
    old = FakeHost("jetson-1", ("jetson", "k3s_agent"), facts={Userland: JETPACK4}, triton_models=models)
    refused = plan.refusal(old, "2.51.0", templates)
    assert refused.startswith("jetson-1: ") and "glibc >= 2.35" in refused and "K3S workload" in refused


def test_triton_as_a_workload_needs_a_k3s_node_and_not_the_device_s_glibc(tmp_path):
    templates = _templates(tmp_path)
    old = FakeHost(
        "jetson-1", ("jetson", "k3s_agent"), facts={}, triton_as_k3s_workload=True, triton_models={}
    )
    assert plan.refusal(old, "2.51.0", templates) is None, "no Userland fact asked: the image brings its libc"
    alone = FakeHost("jetson-9", ("jetson",), facts={}, triton_as_k3s_workload=True, triton_models={})
    assert plan.refusal(alone, "2.51.0", templates) == (
        "jetson-9: triton_as_k3s_workload needs a K3S node (k3s_server or k3s_agent)"
    )


def test_a_model_without_a_template_is_refused(tmp_path):
    models = {"numeric": {}, "resnet": {}, "README": {}}
    device = FakeHost("sonic-1", ("sonic",), facts={Userland: BOOKWORM}, triton_models=models)
    assert plan.refusal(device, "2.51.0", _templates(tmp_path)) == (
        "sonic-1: triton_models names models with no template: README, resnet"
    )


def test_a_workload_runs_the_device_s_server_through_the_runtime_its_node_has():
    jetson = FakeHost(
        "jetson-1",
        ("jetson", "k3s_agent"),
        facts={NvidiaGpu: True, NvidiaContainerRuntime: "/usr/bin/nvidia-container-runtime"},
        triton_http_port=9000,
    )
    document = plan.workload(jetson, "/opt/tritonserver/2.51.0", "server-sha", "wheels-sha")
    assert document["name"] == "tritonserver-jetson-1" and document["node"] == "jetson-1"
    assert document["command"] == server_command("/opt/tritonserver/2.51.0", host_ports(jetson.data), True)
    assert document["ports"]["http_port"] == 9000
    assert document["config_sha256"] == workload_key(jetson.data, "server-sha", "wheels-sha")
    assert document["runtime_class"] == "nvidia" and document["env"]["NVIDIA_VISIBLE_DEVICES"] == "all"
    switch = FakeHost(
        "sonic-2", ("sonic", "k3s_agent"), facts={NvidiaGpu: False, NvidiaContainerRuntime: None}
    )
    plain = plan.workload(switch, "/opt/tritonserver/2.51.0", "server-sha", "wheels-sha")
    assert plain["runtime_class"] is None and plain["env"] == {}
    assert "--allow-gpu-metrics=false" in plain["command"]
