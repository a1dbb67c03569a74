"""KubernetesNodes: the calls the server makes to certify or remove a node."""

from __future__ import annotations

from types import SimpleNamespace as NS

import pytest

kubernetes = pytest.importorskip("kubernetes")
from kubernetes.client.exceptions import ApiException  # noqa: E402

from edgefaas.nodeauth.kube import KubernetesNodes  # noqa: E402

pytestmark = pytest.mark.unit


class FakeCore:
    def __init__(self, pods=(), delete_status: int | None = None) -> None:
        self.calls: list[tuple] = []
        self.pods = list(pods)
        self.delete_status = delete_status

    def list_node(self):
        node = NS(
            metadata=NS(
                name="jetson-1",
                labels={"edgefaas.io/profile": "jetson"},
                annotations=None,
                creation_timestamp=None,
            ),
            status=NS(
                addresses=[
                    NS(type="Hostname", address="jetson-1"),
                    NS(type="InternalIP", address="10.7.0.13"),
                ]
            ),
        )
        return NS(items=[node])

    def patch_node(self, name, body):
        self.calls.append(("patch", name, body))

    def list_pod_for_all_namespaces(self, field_selector):
        self.calls.append(("list pods", field_selector))
        return NS(items=self.pods)

    def create_namespaced_pod_eviction(self, name, namespace, body):
        self.calls.append(("evict", namespace, name))

    def delete_node(self, name):
        if self.delete_status:
            raise ApiException(status=self.delete_status)
        self.calls.append(("delete", name))

    def create_namespaced_event(self, namespace, event):
        self.calls.append(("event", event.reason, event.involved_object.name, event.message))


def nodes(core: FakeCore) -> KubernetesNodes:
    api = KubernetesNodes.__new__(KubernetesNodes)
    api.k8s, api.core = kubernetes.client, core
    return api


def test_nodes_are_reached_at_their_internal_address():
    [node] = nodes(FakeCore()).nodes()
    assert (node.name, node.address, node.labels["edgefaas.io/profile"]) == (
        "jetson-1",
        "10.7.0.13",
        "jetson",
    )


def test_removal_says_why_then_cordons_evicts_and_deletes():
    pod = NS(metadata=NS(name="fn-1", namespace="edgefaas-fn"))
    core = FakeCore(pods=[pod])
    nodes(core).remove("jetson-9", "certificate rejected: expired")
    kinds = [call[0] for call in core.calls]
    assert kinds == ["event", "patch", "list pods", "evict", "delete"]
    assert core.calls[0][1:] == (
        "CertificationFailed",
        "jetson-9",
        "removed from the cluster: certificate rejected: expired",
    )
    assert core.calls[1][2] == {"spec": {"unschedulable": True}}
    assert core.calls[3] == ("evict", "edgefaas-fn", "fn-1")


def test_a_node_already_gone_is_not_an_error_but_other_failures_are():
    nodes(FakeCore(delete_status=404)).remove("jetson-9", "no agent")
    with pytest.raises(ApiException):
        nodes(FakeCore(delete_status=500)).remove("jetson-9", "no agent")


def test_certifying_labels_annotates_and_records_an_event():
    core = FakeCore()
    nodes(core).certify(
        "jetson-1", {"edgefaas.io/certified": "true"}, {"edgefaas.io/certificate-serial": "abc"}
    )
    assert core.calls[0] == (
        "patch",
        "jetson-1",
        {
            "metadata": {
                "labels": {"edgefaas.io/certified": "true"},
                "annotations": {"edgefaas.io/certificate-serial": "abc"},
            }
        },
    )
    assert core.calls[1][1] == "Certified"


def test_a_quarantined_node_is_cordoned_with_an_event_and_certifying_lifts_it():
    core = FakeCore()
    nodes(core).quarantine("jetson-1", "no agent yet")
    assert core.calls[0][:2] == ("event", "AwaitingCertification")
    patch = core.calls[1][2]
    assert patch["spec"] == {"unschedulable": True}
    assert patch["metadata"]["annotations"]["edgefaas.io/quarantined"] == "no agent yet"
    core.calls.clear()
    nodes(core).certify("jetson-1", {"edgefaas.io/certified": "true"}, {}, uncordon=True)
    patch = core.calls[0][2]
    assert patch["spec"] == {"unschedulable": False}
    assert patch["metadata"]["annotations"]["edgefaas.io/quarantined"] is None  # deleted by the patch


def test_a_clock_skew_is_an_event_and_an_annotation_and_its_end_removes_the_annotation():
    core = FakeCore()
    nodes(core).report_clock("jetson-1", 7200.04, "clock 7200.0 s ahead of the authentication server's")
    assert core.calls[0] == (
        "event", "ClockSkew", "jetson-1", "clock 7200.0 s ahead of the authentication server's"
    )  # fmt: skip
    assert core.calls[1] == (
        "patch",
        "jetson-1",
        {"metadata": {"annotations": {"edgefaas.io/clock-skew-s": "7200.0"}}},
    )
    core.calls.clear()
    nodes(core).report_clock("jetson-1", None, "clock 0.1 s ahead of the authentication server's")
    assert core.calls[0][:2] == ("event", "ClockSkewCleared")
    assert core.calls[1][2]["metadata"]["annotations"]["edgefaas.io/clock-skew-s"] is None
