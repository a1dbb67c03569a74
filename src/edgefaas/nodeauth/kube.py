"""NodeApi on a real cluster, through the kubernetes Python client (the server's side of K3S).

Removing a node follows what an operator would do by hand: cordon it so nothing new lands
there, evict its pods (DaemonSet pods go with the node), delete it, and leave an Event on
it with the reason, which `kubectl get events` shows after the node itself is gone.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from edgefaas.nodeauth.marks import (
    CERTIFICATE_SERIAL,
    CLOCK_SKEW,
    CLOCK_SKEW_CLEARED_REASON,
    CLOCK_SKEW_REASON,
    EVENT_NAMESPACE,
    QUARANTINED,
    REMOVED_REASON,
)
from edgefaas.nodeauth.server import Node

COMPONENT = "edgefaas-nodeauth"


class KubernetesNodes:
    def __init__(self, api_client: Any) -> None:
        from kubernetes import client

        self.k8s = client
        self.core = client.CoreV1Api(api_client)

    def nodes(self) -> list[Node]:
        found = []
        for item in self.core.list_node().items:
            addresses = {a.type: a.address for a in (item.status.addresses or [])}
            address = addresses.get("InternalIP") or addresses.get("Hostname") or item.metadata.name
            found.append(
                Node(
                    item.metadata.name,
                    address,
                    dict(item.metadata.labels or {}),
                    dict(item.metadata.annotations or {}),
                    item.metadata.creation_timestamp,
                )
            )
        return found

    def certify(
        self, node: str, labels: dict[str, str], annotations: dict[str, str], uncordon: bool = False
    ) -> None:
        patch: dict[str, Any] = {"metadata": {"labels": labels, "annotations": {**annotations}}}
        if uncordon:  # lifted only where quarantine() cordoned the node
            patch["metadata"]["annotations"][QUARANTINED] = None
            patch["spec"] = {"unschedulable": False}
        self.core.patch_node(node, patch)
        self._event(node, "Certified", "Normal", f"certified: serial {annotations.get(CERTIFICATE_SERIAL)}")

    def quarantine(self, node: str, reason: str) -> None:
        """Cordon a node whose agent is not there yet, and say so; certify() lifts it."""
        from kubernetes.client.exceptions import ApiException

        self._event(node, "AwaitingCertification", "Warning", f"cordoned until certified: {reason}")
        try:
            self.core.patch_node(
                node,
                {"metadata": {"annotations": {QUARANTINED: reason[:250]}}, "spec": {"unschedulable": True}},
            )
        except ApiException as exc:
            if exc.status != 404:
                raise

    def report_clock(self, node: str, skew_s: float | None, message: str) -> None:
        """An Event and the annotation when a node's clock goes off (skew_s), or comes back (None)."""
        from kubernetes.client.exceptions import ApiException

        if skew_s is None:
            self._event(node, CLOCK_SKEW_CLEARED_REASON, "Normal", message)
        else:
            self._event(node, CLOCK_SKEW_REASON, "Warning", message)
        value = None if skew_s is None else f"{skew_s:.1f}"
        try:
            self.core.patch_node(node, {"metadata": {"annotations": {CLOCK_SKEW: value}}})
        except ApiException as exc:
            if exc.status != 404:
                raise

    def remove(self, node: str, reason: str) -> None:
        from kubernetes.client.exceptions import ApiException

        self._event(node, REMOVED_REASON, "Warning", f"removed from the cluster: {reason}")
        try:
            self.core.patch_node(node, {"spec": {"unschedulable": True}})
            pods = self.core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node}").items
            for pod in pods:
                eviction = self.k8s.V1Eviction(
                    metadata=self.k8s.V1ObjectMeta(name=pod.metadata.name, namespace=pod.metadata.namespace)
                )
                try:
                    self.core.create_namespaced_pod_eviction(
                        pod.metadata.name, pod.metadata.namespace, eviction
                    )
                except ApiException as exc:
                    if exc.status not in (404, 429):  # gone already, or a disruption budget: delete goes on
                        raise
            self.core.delete_node(node)
        except ApiException as exc:
            if exc.status != 404:  # removed meanwhile by someone else: the goal is reached
                raise

    def _event(self, node: str, reason: str, kind: str, message: str) -> None:
        now = dt.datetime.now(dt.UTC)
        self.core.create_namespaced_event(
            EVENT_NAMESPACE,
            self.k8s.CoreV1Event(
                metadata=self.k8s.V1ObjectMeta(
                    name=f"{node}.{uuid.uuid4().hex[:10]}", namespace=EVENT_NAMESPACE
                ),
                involved_object=self.k8s.V1ObjectReference(
                    kind="Node", name=node, uid=node, api_version="v1"
                ),
                reason=reason,
                message=message[:1000],
                type=kind,
                source=self.k8s.V1EventSource(component=COMPONENT),
                first_timestamp=now,
                last_timestamp=now,
                count=1,
            ),
        )
