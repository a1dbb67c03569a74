"""The nvidia container runtime: which K3S nodes have it, and how pods are run through it.

JetPack installs nvidia-container-runtime; K3S (v1.25) finds it at start in the places below
and gives its containerd a runtime named `nvidia` (templates/k3s/config.toml.tmpl.j2 renders
K3S's `.ExtraRuntimes`). Pods reach that runtime through the RuntimeClass `nvidia`.

Two separate questions, on purpose:
- the runtime's presence decides the RuntimeClass a pod runs with (the handler must exist
  on its node);
- a real GPU decides whether the pod asks the runtime for devices, and whether Triton's
  models use GPU instance groups. A device can have the runtime and no usable GPU (the
  virtual lab's Jetson, a machine whose driver is not loaded): asking for devices there
  would make the real runtime refuse to start the container.
"""

from __future__ import annotations

from dataclasses import dataclass, field

RUNTIME_CLASS = "nvidia"
# Each node's K3S configuration sets this label from its own runtime fact ("true"/"false").
NODE_LABEL = "edgefaas.io/nvidia-runtime"
# Where K3S v1.25 looks, in its order: the GPU Operator's toolkit first, then the package's.
RUNTIME_PATHS = (
    "/usr/local/nvidia/toolkit/nvidia-container-runtime",
    "/usr/bin/nvidia-container-runtime",
)


def node_label(runtime: str | None) -> str:
    """The node label saying whether this node's containerd has the `nvidia` handler.

    Always set, "false" included: K3S merges configured labels into the node's on every
    start but never drops one, so a runtime that goes away must turn the value to false.
    """
    return f"{NODE_LABEL}={'true' if runtime else 'false'}"


def runtime_from_listing(lines: list[str]) -> str | None:
    """The runtime K3S would pick from `ls -d` output of RUNTIME_PATHS, directories marked `/`."""
    found = {line.strip() for line in lines if line.strip() and not line.strip().endswith("/")}
    return next((path for path in RUNTIME_PATHS if path in found), None)


@dataclass(frozen=True)
class PodRuntime:
    """What a pod spec needs to run through the nvidia runtime, and to get the GPU from it."""

    runtime_class: str | None = None
    env: dict[str, str] = field(default_factory=dict)


def pod_runtime(runtime: str | None, gpu: bool) -> PodRuntime:
    """The RuntimeClass and environment of a workload pinned to one node.

    The nvidia runtime hands a container the GPU only when NVIDIA_VISIBLE_DEVICES asks for
    it (images not built on CUDA's do not set it); without the variable it runs the
    container as runc would. It is set only where there is a GPU to give.
    """
    if not runtime:
        return PodRuntime()
    env = {"NVIDIA_VISIBLE_DEVICES": "all", "NVIDIA_DRIVER_CAPABILITIES": "compute,utility"} if gpu else {}
    return PodRuntime(RUNTIME_CLASS, env)
