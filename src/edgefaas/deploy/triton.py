"""How deploys/triton.py runs Triton on a device, planned on the machine running pyinfra.

Whether a device can run it the way its host data asks, the server's command line (one for
the systemd unit and the K3S workload), its ports from host data, a device's K3S workload
and what rolls its pod, whether a device's models use its GPU, and the two Task 4.3
test-case Jobs placed across the inventory's devices.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from edgefaas.deploy import hosts, nvidia, userland
from edgefaas.deploy.facts import NvidiaContainerRuntime, NvidiaGpu, Userland
from edgefaas.lab.builds.triton import TRITON_GLIBC

STATE_DIR = "/var/lib/triton"
MODELS_DIR = f"{STATE_DIR}/models"
PHOTO = "/opt/edgefaas/frames/grace_hopper.jpg"  # in the runtime image (images.FRAMES_DIR)
# The verdict as the pod's termination message: kept in the pod's status, unlike its log.
REPORT = ("--report", "/dev/termination-log")


def refusal(current: Any, version: str, model_templates: Path) -> str | None:
    """Why host `current` cannot run tritonserver `version` as its host data asks, or None.

    A K3S workload needs a K3S node; a systemd service needs the glibc Triton was built for
    (a workload's image brings its own); every model in `triton_models` needs a template
    directory in `model_templates`.
    """
    if current.data.get("triton_as_k3s_workload"):
        if not {"k3s_server", "k3s_agent"} & set(current.groups):
            return f"{current.name}: triton_as_k3s_workload needs a K3S node (k3s_server or k3s_agent)"
    else:
        found = userland.from_fact(current.get_fact(Userland))
        refused = userland.triton_service_refusal(current.name, found, version, TRITON_GLIBC)
        if refused:
            return refused
    templates = {p.name for p in model_templates.iterdir() if p.is_dir()}
    unknown = sorted(set(current.data.triton_models) - templates)
    if unknown:
        return f"{current.name}: triton_models names models with no template: {', '.join(unknown)}"
    return None


def server_command(home: str, ports: dict[str, int], gpu: bool) -> list[str]:
    """tritonserver's command line, the same for the systemd unit and the K3S workload."""
    return [
        f"{home}/bin/tritonserver",
        f"--model-repository={MODELS_DIR}",
        f"--backend-directory={home}/backends",
        f"--cache-directory={home}/caches",
        # explicit: the deploy reloads one changed model through the repository API, no restart.
        "--model-control-mode=explicit",
        "--load-model=*",
        "--strict-readiness=true",
        f"--http-port={ports['http_port']}",
        f"--grpc-port={ports['grpc_port']}",
        f"--metrics-port={ports['metrics_port']}",
        f"--allow-gpu-metrics={'true' if gpu else 'false'}",
        "--exit-timeout-secs=10",
    ]


def host_ports(data: Any) -> dict[str, int]:
    """The HTTP, gRPC and metrics ports from host data `triton_*_port`, else Triton's defaults."""
    return {
        "http_port": int(data.get("triton_http_port") or 8000),
        "grpc_port": int(data.get("triton_grpc_port") or 8001),
        "metrics_port": int(data.get("triton_metrics_port") or 8002),
    }


def workload_key(data: Any, artifact_sha256: str, wheelhouse_sha256: str) -> str:
    """What the K3S workload's pod runs; a change rolls it (models reload without, by the API)."""
    digest = hashlib.sha256()
    for part in (artifact_sha256, wheelhouse_sha256, json.dumps(host_ports(data), sort_keys=True)):
        digest.update(part.encode())
    return digest.hexdigest()[:16]


def has_gpu(device: Any) -> bool:
    """Host data `triton_gpu` if set, else whether the device really has an NVIDIA GPU."""
    gpu = device.data.get("triton_gpu")
    return bool(device.get_fact(NvidiaGpu) if gpu is None else gpu)


def workload(device: Any, home: str, tritonserver_sha256: str, wheelhouse_sha256: str) -> dict[str, Any]:
    """The K3S Deployment (templates/triton/workloads.yaml.j2) running `device`'s Triton server.

    From `device`'s own facts, read from the K3S server: the pod must match what that node's
    run put in its model configs (GPU or not) and what its containerd has (the nvidia handler).
    """
    gpu = has_gpu(device)
    runtime = nvidia.pod_runtime(device.get_fact(NvidiaContainerRuntime), gpu)
    return {
        "name": f"tritonserver-{device.name}",
        "node": device.name,
        "command": server_command(home, host_ports(device.data), gpu),
        "config_sha256": workload_key(device.data, tritonserver_sha256, wheelhouse_sha256),
        "ports": host_ports(device.data),
        "runtime_class": runtime.runtime_class,
        "env": runtime.env,
    }


def testcases(inventory: Iterable[Any]) -> list[dict[str, Any]]:
    """The two Task 4.3 Jobs: each on its own K3S node, each calling a server on another device.

    The HTTP case runs on a switch against a Jetson's server when the inventory has both,
    the gRPC case on that Jetson against the K3S server's: traffic crosses device kinds.
    None (an empty list) with fewer than two K3S nodes or two Triton servers.
    """
    every = list(inventory)
    nodes = [h for h in every if {"k3s_server", "k3s_agent"} & set(h.groups)]
    servers = [h for h in every if h.data.get("triton_server")]
    if len(nodes) < 2 or len(servers) < 2:
        return []
    agents = [h for h in nodes if "k3s_agent" in h.groups] or nodes
    sonic_agent = next((h for h in agents if "sonic" in h.groups), agents[0])
    jetson = next((h for h in nodes if "jetson" in h.groups and h is not sonic_agent), None)
    second = jetson or next(h for h in nodes if h is not sonic_agent)
    http_server = next(h for h in servers if h is not sonic_agent and (h is second or jetson is None))
    grpc_server = next(h for h in servers if h is not second)

    def url(server_host: Any, port_key: str, default: int) -> str:
        return f"{hosts.address(server_host)}:{server_host.data.get(port_key) or default}"

    return [
        {
            "name": "triton-http-face",
            "case": "http-face",
            "node": sonic_agent.name,
            "command": [
                "python3", "-m", "edgefaas.triton.testcases", "http-face",
                "--url", "http://" + url(http_server, "triton_http_port", 8000), "--photo", PHOTO, *REPORT,
            ],
        },
        {
            "name": "triton-grpc-numeric",
            "case": "grpc-numeric",
            "node": second.name,
            "command": [
                "python3", "-m", "edgefaas.triton.testcases", "grpc-numeric",
                "--url", url(grpc_server, "triton_grpc_port", 8001), *REPORT,
            ],
        },
    ]  # fmt: skip
