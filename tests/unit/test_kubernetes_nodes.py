"""Nodes as the kubernetes backend reports them: resources, functions, and node certification."""

from __future__ import annotations

import datetime as dt
from typing import Any

import kubernetes
import pytest

from edgefaas.backends import kubernetes_nodes as kn
from edgefaas.backends.base import FunctionSpec
from edgefaas.backends.kubernetes import KubernetesBackend
from edgefaas.nodeauth.kube import KubernetesNodes

from .kube_fakes import CODE, FakeCluster, View, make_backend, node

pytestmark = pytest.mark.unit


@pytest.fixture
def cluster() -> FakeCluster:
    return FakeCluster()


@pytest.fixture
def backend(cluster: FakeCluster) -> KubernetesBackend:
    return make_backend(cluster)


def test_nodes_report_profile_resources_gpus_and_functions(backend):
    backend.deploy(FunctionSpec("FuncB", code=CODE, constraints=("edgefaas.io/profile=jetson",)))
    nodes = {n.name: n for n in backend.nodes()}
    assert nodes["jetson-1"].profile == "jetson" and nodes["sonic-1"].profile == "sonic"
    assert nodes["jetson-1"].functions == ("FuncB",) and nodes["sonic-1"].functions == ()
    assert nodes["jetson-1"].gpus == ({"vendor": "nvidia", "resource": "nvidia.com/gpu", "index": "0"},)
    assert nodes["sonic-1"].gpus == ()
    assert nodes["sonic-1"].cpu == {"count": 4, "allocatable": 3.5}
    assert nodes["sonic-1"].memory["total_bytes"] == 8 * 1024**3
    assert nodes["jetson-1"].arch == "arm64" and nodes["jetson-1"].ready


def test_certification_is_shown_only_where_the_node_authentication_server_labels_nodes(cluster, backend):
    assert all(n.certification is None for n in backend.nodes())  # no nodeauth in this cluster
    sonic, jetson = cluster.nodes
    sonic["metadata"]["labels"]["node-role.kubernetes.io/control-plane"] = "true"
    jetson["metadata"]["labels"]["edgefaas.io/certified"] = "true"
    jetson["metadata"]["annotations"] = {
        "edgefaas.io/certified-at": "2026-11-22T20:00:00+00:00",
        "edgefaas.io/certificate-serial": "1f",
    }
    cluster.nodes.append(node("jetson-2", "jetson"))
    cluster.nodes[2]["metadata"]["annotations"] = {"edgefaas.io/quarantined": "no agent listens"}
    nodes = {n.name: n.to_json() for n in backend.nodes()}
    assert nodes["sonic-1"]["role"] == "server" and nodes["jetson-1"]["role"] == "agent"
    assert nodes["sonic-1"]["certification"]["state"] == "authority"
    assert nodes["jetson-1"]["certification"] == {
        "state": "certified",
        "reason": None,
        "at": "2026-11-22T20:00:00+00:00",
        "serial": "1f",
    }
    assert nodes["jetson-2"]["certification"] == {"state": "pending", "reason": "no agent listens"}


def test_node_removals_come_from_the_authentication_servers_events_newest_first(cluster, backend):
    def event(name: str, reason: str, node_name: str, minute: int) -> dict[str, Any]:
        return {
            "metadata": {"name": name, "labels": {}},
            "involvedObject": {"kind": "Node", "name": node_name},
            "reason": reason,
            "message": f"removed from the cluster: {name}",
            "lastTimestamp": dt.datetime(2026, 11, 22, 20, minute, tzinfo=dt.UTC),
        }

    cluster.objects["Event"] = {
        "a": event("a", "CertificationFailed", "jetson-9", 1),
        "b": event("b", "Certified", "jetson-1", 2),
        "c": event("c", "CertificationFailed", "sonic-7", 3),
    }
    removals = backend.node_removals()
    assert [r["node"] for r in removals] == ["sonic-7", "jetson-9"]
    assert removals[0] == {
        "node": "sonic-7",
        "reason": "removed from the cluster: c",
        "at": "2026-11-22T20:03:00+00:00",
    }


# -- reading certification, without the backend ----------------------------------------------------

CERTIFIED_AT = "2026-11-22T20:00:00+00:00"


@pytest.mark.parametrize(
    ("labels", "annotations", "expected"),
    [
        (
            {"edgefaas.io/certified": "true"},
            {"edgefaas.io/certified-at": CERTIFIED_AT, "edgefaas.io/certificate-serial": "1f"},
            {"state": "certified", "reason": None, "at": CERTIFIED_AT, "serial": "1f"},
        ),
        (
            {"edgefaas.io/certified": "true"},
            {},
            {"state": "certified", "reason": None, "at": None, "serial": None},
        ),
        (
            {"edgefaas.io/certified": "true"},
            {"edgefaas.io/clock-skew-s": "-600.2"},
            {"state": "certified", "reason": None, "at": None, "serial": None, "clock_skew_s": -600.2},
        ),
        (
            {"edgefaas.io/certified": "true", "node-role.kubernetes.io/control-plane": "true"},
            {"edgefaas.io/certified-at": CERTIFIED_AT, "edgefaas.io/certificate-serial": "2a"},
            {"state": "certified", "reason": None, "at": CERTIFIED_AT, "serial": "2a"},
        ),
        (
            {"node-role.kubernetes.io/control-plane": "true"},
            {},
            {"state": "authority", "reason": "the K3S server certifies the other nodes"},
        ),
        (
            {"node-role.kubernetes.io/master": "true"},
            {},
            {"state": "authority", "reason": "the K3S server certifies the other nodes"},
        ),
        (
            {"edgefaas.io/certified": "false"},
            {"edgefaas.io/quarantined": "no agent listens"},
            {"state": "pending", "reason": "no agent listens"},
        ),
        ({}, {}, {"state": "pending", "reason": "not certified yet"}),
    ],
)
def test_certification_reads_what_the_node_authentication_server_wrote(labels, annotations, expected):
    assert kn.certification(labels, annotations) == expected


def test_one_marked_node_is_enough_to_show_certification_for_all():
    plain, quarantined = View(node("jetson-1", "jetson")), View(node("jetson-2", "jetson"))
    assert [n.certification for n in kn.node_infos([plain], {})] == [None]
    quarantined.metadata.annotations = {"edgefaas.io/quarantined": "no agent listens"}
    infos = {n.name: n for n in kn.node_infos([plain, quarantined], {"jetson-2": {"FuncB", "FuncA"}})}
    assert infos["jetson-1"].certification == {"state": "pending", "reason": "not certified yet"}
    assert infos["jetson-2"].certification == {"state": "pending", "reason": "no agent listens"}
    assert infos["jetson-2"].functions == ("FuncA", "FuncB") and infos["jetson-1"].functions == ()


def test_a_node_without_node_info_or_capacity_still_reads():
    bare = View({"metadata": {"name": "x", "labels": {}}, "status": {"conditions": [{"type": "Ready"}]}})
    info = kn.node_info(bare, ())
    assert (info.profile, info.arch, info.os, info.ready, info.role) == ("generic", "", "", False, "agent")
    assert info.cpu == {"count": 0, "allocatable": 0} and info.gpus == ()
    assert info.certification is None


def test_quantities_read_as_numbers():
    assert kn.cores("4") == 4 and isinstance(kn.cores("4"), int)
    assert kn.cores("3500m") == 3.5
    assert kn.quantity("8Gi") == 8 * 1024**3
    assert kn.quantity("plenty") == 0.0


def test_removals_are_only_the_servers_node_removals_newest_first_and_at_most_100():
    def event(reason: str, kind: str, name: str, **times: dt.datetime | None) -> View:
        return View(
            {
                "metadata": {"name": name, "labels": {}, "creationTimestamp": times.get("created")},
                "involvedObject": {"kind": kind, "name": name},
                "reason": reason,
                "message": None,
                "lastTimestamp": times.get("last"),
                "firstTimestamp": times.get("first"),
            }
        )

    at = dt.datetime(2026, 11, 22, 20, 0, tzinfo=dt.UTC)
    found = kn.removals(
        [
            event("CertificationFailed", "Node", "never"),
            event("CertificationFailed", "Node", "first", first=at),
            event("CertificationFailed", "Pod", "a-pod", last=at),
            event("Certified", "Node", "certified", last=at),
            event("CertificationFailed", "Node", "created", created=at + dt.timedelta(minutes=1)),
        ]
    )
    assert found == [
        {"node": "created", "reason": "", "at": "2026-11-22T20:01:00+00:00"},
        {"node": "first", "reason": "", "at": "2026-11-22T20:00:00+00:00"},
        {"node": "never", "reason": "", "at": None},
    ]
    many = [
        event("CertificationFailed", "Node", f"n{i}", last=at + dt.timedelta(seconds=i)) for i in range(150)
    ]
    kept = kn.removals(many)
    assert len(kept) == kn.MAX_REMOVALS == 100 and kept[0]["node"] == "n149" and kept[-1]["node"] == "n50"


def test_the_removal_event_nodeauth_writes_is_the_one_the_gateway_reads():
    written: list[tuple[str, Any]] = []

    class Core:
        def create_namespaced_event(self, namespace: str, event: Any) -> None:
            written.append((namespace, event))

        def patch_node(self, name: str, body: Any) -> None:
            pass

        def list_pod_for_all_namespaces(self, field_selector: str) -> Any:
            return View({"items": []})

        def delete_node(self, name: str) -> None:
            pass

    remover = KubernetesNodes.__new__(KubernetesNodes)
    remover.k8s, remover.core = kubernetes.client, Core()
    remover.remove("jetson-9", "certificate rejected: expired")
    [(namespace, event)] = written
    assert namespace == kn.REMOVALS_NAMESPACE
    # The API server's filter keeps this event.
    fields = dict(part.split("=", 1) for part in kn.REMOVALS_SELECTOR.split(","))
    assert fields == {"reason": event.reason, "involvedObject.kind": event.involved_object.kind}
    assert kn.removals([event]) == [
        {
            "node": "jetson-9",
            "reason": "removed from the cluster: certificate rejected: expired",
            "at": event.last_timestamp.isoformat(),
        }
    ]
