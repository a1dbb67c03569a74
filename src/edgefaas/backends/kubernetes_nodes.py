"""Reading K3S's Node objects into NodeInfo: what each device offers, and whether it is certified.

Pure functions of the objects the kubernetes client returns (Nodes, Events): the backend
lists them, with its own timeouts and errors, and hands them here.

Certification is what the node authentication server (edgefaas.nodeauth) wrote on each
node: a label and annotations once certified, an annotation while quarantined, and an
Event when it removed a node. It is shown only in a cluster where that server runs,
which is recognised by those marks: elsewhere ``certification`` stays None.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from edgefaas.nodeauth.marks import (
    CERTIFICATE_SERIAL,
    CERTIFIED_AT,
    CERTIFIED_LABEL,
    CLOCK_SKEW,
    EVENT_NAMESPACE,
    QUARANTINED,
    REMOVED_REASON,
)

from .base import ARCH_LABEL, PROFILE_LABEL, NodeInfo

CONTROL_PLANE_LABEL = "node-role.kubernetes.io/control-plane"
MASTER_LABEL = "node-role.kubernetes.io/master"
GPU_RESOURCE = "nvidia.com/gpu"

# Where the authentication server's removals are, and the API server's filter for them: the
# console asks every few seconds, and most events are not these.
REMOVALS_NAMESPACE = EVENT_NAMESPACE
REMOVALS_SELECTOR = f"reason={REMOVED_REASON},involvedObject.kind=Node"
MAX_REMOVALS = 100


def node_infos(nodes: Iterable[Any], functions: Mapping[str, Iterable[str]]) -> list[NodeInfo]:
    """Every node, with the functions running on it (``functions``: node name -> function names)."""
    nodes = list(nodes)
    certifying = any(_certification_marked(node) for node in nodes)
    return [node_info(node, functions.get(node.metadata.name, ()), certifying) for node in nodes]


def node_info(node: Any, functions: Iterable[str], certifying: bool = False) -> NodeInfo:
    """One node; ``certifying``: the node authentication server runs in this cluster."""
    labels = dict(node.metadata.labels or {})
    server = is_server(labels)
    status = node.status
    capacity = dict(status.capacity or {})
    allocatable = dict(status.allocatable or {})
    info = status.node_info
    ready = any(c.type == "Ready" and c.status == "True" for c in status.conditions or [])
    gpus: tuple[Mapping[str, str], ...] = ()
    count = int(quantity(capacity.get(GPU_RESOURCE, 0)))
    if count:
        gpus = tuple({"vendor": "nvidia", "resource": GPU_RESOURCE, "index": str(i)} for i in range(count))
    return NodeInfo(
        name=node.metadata.name,
        profile=labels.get(PROFILE_LABEL, "generic"),
        arch=labels.get(ARCH_LABEL) or (info.architecture if info else ""),
        os=(f"{info.os_image} ({info.kernel_version})" if info else ""),
        ready=ready,
        cpu={
            "count": cores(capacity.get("cpu", 0)),
            "allocatable": cores(allocatable.get("cpu", 0)),
        },
        memory={
            "total_bytes": int(quantity(capacity.get("memory", 0))),
            "allocatable_bytes": int(quantity(allocatable.get("memory", 0))),
        },
        gpus=gpus,
        labels=labels,
        functions=tuple(sorted(functions)),
        role="server" if server else "agent",
        certification=certification(labels, dict(node.metadata.annotations or {})) if certifying else None,
    )


def is_server(labels: Mapping[str, str]) -> bool:
    """A K3S server (control plane) node, by the role labels K3S sets."""
    return labels.get(CONTROL_PLANE_LABEL) == "true" or labels.get(MASTER_LABEL) == "true"


def certification(labels: Mapping[str, str], annotations: Mapping[str, str]) -> dict[str, Any]:
    """What the node authentication server says of a node: certified, authority or pending."""
    if labels.get(CERTIFIED_LABEL) == "true":
        found = {
            "state": "certified",
            "reason": None,
            "at": annotations.get(CERTIFIED_AT),
            "serial": annotations.get(CERTIFICATE_SERIAL),
        }
        skew = _seconds(annotations.get(CLOCK_SKEW))
        if skew is not None:  # only while its clock is off beyond the server's tolerance
            found["clock_skew_s"] = skew
        return found
    if is_server(labels):
        return {"state": "authority", "reason": "the K3S server certifies the other nodes"}
    return {"state": "pending", "reason": annotations.get(QUARANTINED) or "not certified yet"}


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def removals(events: Iterable[Any]) -> list[dict[str, Any]]:
    """Nodes the authentication server removed, from its Events: {node, reason, at}, newest first."""
    found = []
    for event in events:
        if event.reason == REMOVED_REASON and event.involved_object.kind == "Node":
            when = event.last_timestamp or event.first_timestamp or event.metadata.creation_timestamp
            found.append(
                {
                    "node": event.involved_object.name,
                    "reason": event.message or "",
                    "at": when.isoformat() if when else None,
                }
            )
    return sorted(found, key=lambda r: r["at"] or "", reverse=True)[:MAX_REMOVALS]


def quantity(value: Any) -> float:
    """A Kubernetes quantity ("3500m", "8Gi") as a number; 0 when it cannot be read."""
    from kubernetes.utils import parse_quantity

    try:
        return float(parse_quantity(str(value)))
    except (ValueError, TypeError, ArithmeticError):
        return 0.0


def cores(value: Any) -> int | float:
    """A CPU quantity in cores: whole cores as an int."""
    number = quantity(value)
    return int(number) if number.is_integer() else number


def _certification_marked(node: Any) -> bool:
    return CERTIFIED_LABEL in (node.metadata.labels or {}) or QUARANTINED in (node.metadata.annotations or {})
