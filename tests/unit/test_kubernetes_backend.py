"""The kubernetes backend against a fake of the Kubernetes API: objects, names, placement, rollouts.

The fake keeps manifests as the API server would (camelCase dicts) and answers with
objects read the way the kubernetes client's models are (snake_case attributes, None when
absent). A tiny "controller" plays the Deployment controller and the scheduler: pods of
a new version start on a node matching the nodeSelector and become ready, or crash when
the test says so, and the old pods stay until the new ones are ready.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import click
import pytest
import urllib3
from click.testing import CliRunner
from kubernetes.client.exceptions import ApiException

from edgefaas.backends import kubernetes as kb
from edgefaas.backends.base import (
    BackendError,
    DeployError,
    FunctionExists,
    FunctionNotFound,
    FunctionSpec,
    FunctionUnavailable,
    Unsupported,
)
from edgefaas.gateway import cli
from edgefaas.lab.gateway import gateway_url
from edgefaas.lab.spec import SpecError, parse_spec
from edgefaas.lab.state import LabState

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "docker.io/edgefaas/runtime:test"
GATEWAY = "http://10.77.0.11:8080"
DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
CODE = "def handle(event, context):\n    return {'ok': True}\n"


# -- the fake -------------------------------------------------------------------------------------

# Fields whose keys are data (label names, file names...), not field names: kept as they are.
_MAPS = {
    "labels",
    "annotations",
    "data",
    "node_selector",
    "capacity",
    "allocatable",
    "match_labels",
    "selector",
    "limits",
    "requests",
}


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


class View:
    """A manifest read like a client model: snake_case attributes, None for what is absent."""

    def __init__(self, data: dict[str, Any]) -> None:
        for key, value in data.items():
            name = _snake(key)
            setattr(self, name, value if name in _MAPS else _view(value))

    def __getattr__(self, name: str) -> Any:
        return None


def _view(value: Any) -> Any:
    if isinstance(value, dict):
        return View(value)
    if isinstance(value, list):
        return [_view(v) for v in value]
    return value


def _not_found(kind: str, name: str) -> ApiException:
    exc = ApiException(status=404, reason="Not Found")
    exc.body = f'{{"message": "{kind} \\"{name}\\" not found"}}'
    return exc


def _matches(labels: dict[str, str], selector: str | None) -> bool:
    if not selector:
        return True
    return all(labels.get(k) == v for k, _, v in (part.partition("=") for part in selector.split(",")))


class FakeCluster:
    def __init__(self, nodes: list[dict[str, Any]] | None = None) -> None:
        self.namespace = kb.DEFAULT_NAMESPACE
        self.objects: dict[str, dict[str, dict[str, Any]]] = {
            "Deployment": {},
            "Service": {},
            "ConfigMap": {},
            "Pod": {},
            "Event": {},
        }
        self.nodes = (
            nodes if nodes is not None else [node("sonic-1", "sonic"), node("jetson-1", "jetson", gpus=1)]
        )
        self.resource_version = 100
        self.next_ip = 10
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.crashing: set[str] = set()  # code hashes whose pods exit with status 3
        self.unreachable = False
        self.core = _Api(self)
        self.apps = _Api(self)

    # The "controller": what the Deployment controller, scheduler and kubelet would do.
    def reconcile(self, name: str) -> None:
        dep = self.objects["Deployment"][name]
        template = dep["spec"]["template"]
        annotations = template["metadata"]["annotations"]
        version = annotations[kb.VERSION_ANNOTATION]
        replicas = dep["spec"]["replicas"]
        pods = {
            k: p
            for k, p in self.objects["Pod"].items()
            if p["metadata"]["labels"].get(kb.FUNCTION_LABEL) == name
        }
        current = {
            k: p for k, p in pods.items() if p["metadata"]["annotations"][kb.VERSION_ANNOTATION] == version
        }
        old = {k: p for k, p in pods.items() if k not in current}
        placed = [n for n in self.nodes if _matches(n["metadata"]["labels"], _selector(template))]
        crash = annotations[kb.CODE_HASH_ANNOTATION] in self.crashing
        for i in range(len(current), replicas):
            pod_name = f"{name}-v{version}-{i}"
            self.objects["Pod"][pod_name] = pod(
                pod_name, template, placed[0]["metadata"]["name"] if placed else None, crash
            )
        for extra in list(current)[replicas:]:
            del self.objects["Pod"][extra]
        ready_new = 0 if crash or not placed else replicas
        if ready_new >= replicas:
            for key in old:
                del self.objects["Pod"][key]
            ready = ready_new
        else:
            ready = sum(1 for p in old.values() if p["status"]["containerStatuses"][0]["ready"])
        dep["status"] = {
            "observedGeneration": dep["metadata"]["generation"],
            "replicas": ready_new + len(old) if ready_new < replicas else replicas,
            "updatedReplicas": ready_new,
            "readyReplicas": ready,
            "availableReplicas": ready,
        }

    def bump(self) -> str:
        self.resource_version += 1
        return str(self.resource_version)


def node(name: str, profile: str, gpus: int = 0) -> dict[str, Any]:
    capacity = {"cpu": "4", "memory": "8Gi", "pods": "110"}
    if gpus:
        capacity["nvidia.com/gpu"] = str(gpus)
    return {
        "metadata": {
            "name": name,
            "labels": {
                "edgefaas.io/profile": profile,
                "edgefaas.io/device": name,
                "kubernetes.io/hostname": name,
                "kubernetes.io/arch": "arm64" if profile == "jetson" else "amd64",
            },
        },
        "status": {
            "capacity": capacity,
            "allocatable": {**capacity, "cpu": "3500m"},
            "nodeInfo": {
                "osImage": "Debian GNU/Linux 12 (bookworm)",
                "kernelVersion": "6.1",
                "architecture": "amd64",
            },
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def pod(name: str, template: dict[str, Any], node_name: str | None, crash: bool) -> dict[str, Any]:
    if node_name is None:
        status = {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/2 nodes are available",
                }
            ],
        }
    elif crash:
        status = {
            "phase": "Running",
            "containerStatuses": [
                {
                    "name": "function",
                    "ready": False,
                    "restartCount": 1,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"exitCode": 3}},
                }
            ],
        }
    else:
        status = {
            "phase": "Running",
            "containerStatuses": [
                {"name": "function", "ready": True, "restartCount": 0, "state": {"running": {}}}
            ],
        }
    return {
        "metadata": copy.deepcopy({**template["metadata"], "name": name}),
        "spec": {**copy.deepcopy(template["spec"]), "nodeName": node_name},
        "status": status,
    }


def _selector(template: dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in template["spec"].get("nodeSelector", {}).items())


LOG = "2026-01-01T00:00:02Z INFO listening\n2026-01-01T00:00:03Z ERROR importing /code/handler.py failed\n"
_KINDS = {
    "deployment": "Deployment",
    "service": "Service",
    "config_map": "ConfigMap",
    "pod": "Pod",
    "event": "Event",
}


class _Api:
    """Both CoreV1Api and AppsV1Api: methods are found by their names, as the client names them."""

    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster

    def __getattr__(self, method: str):
        cluster = self.cluster

        def call(*args: Any, **kwargs: Any) -> Any:
            cluster.calls.append((method, args))
            if cluster.unreachable:
                raise urllib3.exceptions.MaxRetryError(None, "/", "connection refused")
            kwargs.pop("_request_timeout", None)
            return getattr(self, f"_{method.split('_', 1)[0]}")(method, *args, **kwargs)

        return call

    def _kind(self, method: str) -> str:
        for suffix, kind in _KINDS.items():
            if method.endswith(f"namespaced_{suffix}"):
                return kind
        raise AttributeError(method)

    def _create(self, method: str, namespace: str, body: dict[str, Any]) -> View:
        kind = self._kind(method)
        store = self.cluster.objects[kind]
        name = body["metadata"]["name"]
        if name in store:
            raise ApiException(status=409, reason="AlreadyExists")
        body = copy.deepcopy(body)
        body["metadata"]["resourceVersion"] = self.cluster.bump()
        if kind == "Service":
            body["spec"]["clusterIP"] = f"10.43.0.{self.cluster.next_ip}"
            self.cluster.next_ip += 1
        store[name] = body
        if kind == "Deployment":
            body["metadata"]["generation"] = 1
            self.cluster.reconcile(name)
        return _view(body)

    def _read(self, method: str, name: str, namespace: str, **kwargs: Any) -> Any:
        if method == "read_namespaced_pod_log":
            return LOG
        kind = self._kind(method)
        if name not in self.cluster.objects[kind]:
            raise _not_found(kind, name)
        return _view(self.cluster.objects[kind][name])

    def _replace(self, method: str, name: str, namespace: str, body: dict[str, Any]) -> View:
        store = self.cluster.objects["Deployment"]
        if name not in store:
            raise _not_found("Deployment", name)
        current = store[name]
        if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise ApiException(status=409, reason="Conflict")
        body = copy.deepcopy(body)
        body["metadata"]["resourceVersion"] = self.cluster.bump()
        changed = body["spec"] != current["spec"]
        body["metadata"]["generation"] = current["metadata"]["generation"] + (1 if changed else 0)
        store[name] = body
        self.cluster.reconcile(name)
        return _view(body)

    def _patch(self, method: str, name: str, namespace: str, body: dict[str, Any]) -> View:
        current = self.cluster.objects["Deployment"][name]
        current["metadata"]["annotations"].update(body["metadata"]["annotations"])
        if "replicas" in body["spec"]:
            current["spec"]["replicas"] = body["spec"]["replicas"]
            current["metadata"]["generation"] += 1
        current["metadata"]["resourceVersion"] = self.cluster.bump()
        self.cluster.reconcile(name)
        return _view(current)

    def _delete(self, method: str, *args: Any, label_selector: str | None = None) -> None:
        if method.startswith("delete_collection_"):
            store = self.cluster.objects["ConfigMap"]
            for key in [k for k, v in store.items() if _matches(v["metadata"]["labels"], label_selector)]:
                del store[key]
            return
        name = args[0]
        kind = self._kind(method)
        if name not in self.cluster.objects[kind]:
            raise _not_found(kind, name)
        del self.cluster.objects[kind][name]
        if kind == "Deployment":
            for key in [
                k
                for k, p in self.cluster.objects["Pod"].items()
                if p["metadata"]["labels"].get(kb.FUNCTION_LABEL) == name
            ]:
                del self.cluster.objects["Pod"][key]

    def _list(
        self, method: str, namespace: str | None = None, label_selector: str | None = None, **kw: Any
    ) -> View:
        if method == "list_node":
            items = self.cluster.nodes
        else:
            kind = self._kind(method)
            items = [
                o
                for o in self.cluster.objects[kind].values()
                if _matches(o["metadata"].get("labels") or {}, label_selector)
            ]
        return View(
            {
                "items": copy.deepcopy(items),
                "metadata": {"resourceVersion": str(self.cluster.resource_version)},
            }
        )


@pytest.fixture
def cluster() -> FakeCluster:
    return FakeCluster()


def make_backend(cluster: FakeCluster, **kwargs: Any) -> kb.KubernetesBackend:
    backend = kb.KubernetesBackend(
        IMAGE,
        GATEWAY,
        core_api=cluster.core,
        apps_api=cluster.apps,
        watch=False,
        poll_interval=0.001,
        start_timeout=kwargs.pop("start_timeout", 0.2),
        **kwargs,
    )
    backend.start()
    return backend


@pytest.fixture
def backend(cluster: FakeCluster) -> kb.KubernetesBackend:
    return make_backend(cluster)


def deployment(cluster: FakeCluster, function: str) -> dict[str, Any]:
    return cluster.objects["Deployment"][kb.object_name(function)]


def container(cluster: FakeCluster, function: str) -> dict[str, Any]:
    return deployment(cluster, function)["spec"]["template"]["spec"]["containers"][0]


# -- names ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["FuncA", "funca", "system_info", "a", "x_", "Long" + "_x" * 29 + "y"])
def test_object_names_are_dns_labels(name):
    obj = kb.object_name(name)
    assert DNS_LABEL.match(obj), obj
    assert len(obj) <= 63


def test_names_differing_in_case_or_separator_get_different_objects():
    names = {kb.object_name(n) for n in ("FuncA", "funca", "FUNCA", "system_info", "system-info")}
    assert len(names) == 5
    assert kb.object_name("FuncA").startswith("funca-")
    assert kb.object_name("system_info").startswith("system-info-")


# -- the objects ----------------------------------------------------------------------------------


def build(spec: FunctionSpec, version: int = 1) -> dict[str, Any]:
    return kb.build_deployment(
        spec,
        kb.object_name(spec.name),
        runtime_image=IMAGE,
        gateway_url=GATEWAY,
        version=version,
        created_at=1.0,
        updated_at=2.0,
    )


def test_the_deployment_runs_the_runtime_image_with_the_code_mounted():
    spec = FunctionSpec("FuncA", code=CODE, env_vars={"EDGEFAAS_CODE": "/elsewhere.py", "MODE": "fast"})
    dep = build(spec)
    pod_spec = dep["spec"]["template"]["spec"]
    box = pod_spec["containers"][0]
    assert box["image"] == IMAGE and box["imagePullPolicy"] == "Never"
    env = {e["name"]: e.get("value") or e["valueFrom"]["fieldRef"]["fieldPath"] for e in box["env"]}
    # The spec's variables pass, but never over the runtime's own.
    assert env["EDGEFAAS_CODE"] == "/code/handler.py"
    assert env["MODE"] == "fast"
    assert env["EDGEFAAS_PORT"] == "8080"
    assert env["EDGEFAAS_FUNCTION_NAME"] == "FuncA"
    assert env["EDGEFAAS_GATEWAY_URL"] == GATEWAY
    assert [e["name"] for e in box["env"]].count("EDGEFAAS_CODE") == 1
    # The device it landed on, from the downward API (offloading starts from it).
    assert env["EDGEFAAS_NODE_IP"] == "status.hostIP" and env["EDGEFAAS_NODE_NAME"] == "spec.nodeName"
    assert box["volumeMounts"] == [{"name": "code", "mountPath": "/code", "readOnly": True}]
    volume = pod_spec["volumes"][0]["configMap"]
    assert volume["name"] == kb.config_map_name(kb.object_name("FuncA"), spec.code_sha256)
    assert box["readinessProbe"]["httpGet"]["path"] == "/_/ready"
    assert box["livenessProbe"]["httpGet"]["path"] == "/_/health"
    security = box["securityContext"]
    assert security["runAsUser"] == 10001 and security["runAsNonRoot"] is True
    assert security["allowPrivilegeEscalation"] is False and security["capabilities"] == {"drop": ["ALL"]}
    assert pod_spec["automountServiceAccountToken"] is False


def test_the_rollout_never_drops_below_the_asked_replicas():
    dep = build(FunctionSpec("FuncA", code=CODE))
    assert dep["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    box = dep["spec"]["template"]["spec"]["containers"][0]
    # A leaving pod keeps serving while it is taken out of the Service, then drains.
    assert box["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", str(kb.PRE_STOP_SECONDS)]
    grace = dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= kb.PRE_STOP_SECONDS + 30


def test_new_code_changes_the_pod_template_so_kubernetes_rolls():
    one = build(FunctionSpec("FuncA", code=CODE))["spec"]["template"]
    two = build(FunctionSpec("FuncA", code=CODE + "# v2\n"), version=2)["spec"]["template"]
    assert one != two
    assert (
        one["metadata"]["annotations"][kb.CODE_HASH_ANNOTATION]
        != two["metadata"]["annotations"][kb.CODE_HASH_ANNOTATION]
    )
    assert one["spec"]["volumes"] != two["spec"]["volumes"]


def test_constraints_become_a_node_selector():
    spec = FunctionSpec(
        "FuncB", code=CODE, constraints=("node.labels.edgefaas.io/profile == jetson", "disk=ssd")
    )
    pod_spec = build(spec)["spec"]["template"]["spec"]
    assert pod_spec["nodeSelector"] == {"edgefaas.io/profile": "jetson", "disk": "ssd"}
    assert "nodeSelector" not in build(FunctionSpec("FuncC", code=CODE))["spec"]["template"]["spec"]


def test_constraints_that_cannot_both_hold_are_refused():
    spec = FunctionSpec(
        "F", code=CODE, constraints=("edgefaas.io/profile=sonic", "edgefaas.io/profile=jetson")
    )
    with pytest.raises(DeployError, match="cannot both hold"):
        build(spec)


def test_limits_and_requests_become_the_containers_resources():
    spec = FunctionSpec(
        "F", code=CODE, limits={"memory": "128Mi", "cpu": "500m"}, requests={"memory": "64Mi"}
    )
    box = build(spec)["spec"]["template"]["spec"]["containers"][0]
    assert box["resources"] == {"limits": {"memory": "128Mi", "cpu": "500m"}, "requests": {"memory": "64Mi"}}
    assert "resources" not in build(FunctionSpec("F", code=CODE))["spec"]["template"]["spec"]["containers"][0]


def test_user_labels_cannot_take_over_the_selector():
    spec = FunctionSpec("F", code=CODE, labels={kb.FUNCTION_LABEL: "other", "team": "edge"})
    dep = build(spec)
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert labels[kb.FUNCTION_LABEL] == kb.object_name("F") and labels["team"] == "edge"
    assert dep["spec"]["selector"]["matchLabels"] == {kb.FUNCTION_LABEL: kb.object_name("F")}


def test_an_image_function_has_no_config_map_and_a_read_only_root_gets_a_tmp():
    spec = FunctionSpec("Img", image="example/fn:1", read_only_root_filesystem=True, secrets=("api-key",))
    pod_spec = build(spec)["spec"]["template"]["spec"]
    box = pod_spec["containers"][0]
    assert box["image"] == "example/fn:1"
    assert "EDGEFAAS_CODE" not in {e["name"] for e in box["env"]}
    assert {v["name"] for v in pod_spec["volumes"]} == {"tmp", "secrets"}
    assert box["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "secrets", "mountPath": "/var/openfaas/secrets", "readOnly": True} in box["volumeMounts"]


def test_code_without_a_runtime_image_is_unsupported(cluster):
    backend = kb.KubernetesBackend(None, GATEWAY, core_api=cluster.core, apps_api=cluster.apps, watch=False)
    with pytest.raises(Unsupported, match="runtime image"):
        backend.deploy(FunctionSpec("F", code=CODE))


# -- deploy, call, update, scale, delete ----------------------------------------------------------


def test_deploy_makes_a_config_map_a_deployment_and_a_service(cluster, backend):
    status = backend.deploy(FunctionSpec("FuncB", code=CODE, constraints=("edgefaas.io/profile=jetson",)))
    obj = kb.object_name("FuncB")
    assert status.version == 1 and status.available_replicas == 1
    assert status.nodes == ("jetson-1",)
    (cm,) = cluster.objects["ConfigMap"].values()
    assert cm["immutable"] is True and cm["data"]["handler.py"] == CODE
    service = cluster.objects["Service"][obj]
    assert service["spec"]["selector"] == {kb.FUNCTION_LABEL: obj}
    assert service["spec"]["type"] == "ClusterIP"
    assert backend.endpoint("FuncB") == f"http://{service['spec']['clusterIP']}:8080"


def test_a_second_deploy_of_a_name_is_refused(backend):
    backend.deploy(FunctionSpec("FuncA", code=CODE))
    with pytest.raises(FunctionExists):
        backend.deploy(FunctionSpec("FuncA", code=CODE))


def test_a_constraint_no_node_has_fails_at_once_and_leaves_nothing(cluster, backend):
    with pytest.raises(DeployError, match=r"no node satisfies constraints edgefaas\.io/profile=camera"):
        backend.deploy(FunctionSpec("F", code=CODE, constraints=("edgefaas.io/profile=camera",)))
    assert not any(cluster.objects[kind] for kind in ("Deployment", "Service", "ConfigMap"))


def test_a_function_that_crashes_at_start_is_not_deployed_and_says_why(cluster, backend):
    bad = "import nosuchmodule\n" + CODE
    cluster.crashing.add(FunctionSpec("F", code=bad).code_sha256)
    with pytest.raises(DeployError, match=r"exited with status 3: .*ERROR importing"):
        backend.deploy(FunctionSpec("F", code=bad))
    assert not any(cluster.objects[kind] for kind in ("Deployment", "Service", "ConfigMap"))
    with pytest.raises(FunctionNotFound):
        backend.endpoint("F")


def test_update_rolls_to_a_new_code_version_and_keeps_the_history(cluster, backend):
    first = backend.deploy(FunctionSpec("FuncC", code=CODE))
    url = backend.endpoint("FuncC")
    status = backend.update(FunctionSpec("FuncC", code=CODE + "# v2\n"))
    assert status.version == 2
    assert status.created_at == first.created_at and status.updated_at >= first.updated_at
    replaced = [args for method, args in cluster.calls if method == "replace_namespaced_deployment"]
    assert len(replaced) == 1
    annotations = deployment(cluster, "FuncC")["spec"]["template"]["metadata"]["annotations"]
    assert annotations[kb.VERSION_ANNOTATION] == "2"
    assert annotations[kb.CODE_HASH_ANNOTATION] == status.spec.code_sha256
    # The old code's ConfigMap goes once nothing runs it; the Service (and its URL) stays.
    (cm,) = cluster.objects["ConfigMap"].values()
    assert cm["data"]["handler.py"] == CODE + "# v2\n"
    assert backend.endpoint("FuncC") == url
    assert backend.get("FuncC").spec.code == CODE + "# v2\n"


def test_a_failed_update_puts_the_old_version_back(cluster, backend):
    backend.deploy(FunctionSpec("FuncC", code=CODE))
    before = copy.deepcopy(deployment(cluster, "FuncC")["spec"]["template"])
    bad = CODE + "raise SystemExit(3)\n"
    cluster.crashing.add(FunctionSpec("FuncC", code=bad).code_sha256)
    with pytest.raises(DeployError, match="stays at version 1"):
        backend.update(FunctionSpec("FuncC", code=bad))
    assert deployment(cluster, "FuncC")["spec"]["template"] == before
    status = backend.get("FuncC")
    assert status.version == 1 and status.spec.code == CODE and status.available_replicas == 1
    assert [cm["data"]["handler.py"] for cm in cluster.objects["ConfigMap"].values()] == [CODE]
    assert backend.endpoint("FuncC").startswith("http://10.43.")


def test_update_of_an_unknown_function_is_not_found(backend):
    with pytest.raises(FunctionNotFound):
        backend.update(FunctionSpec("Nope", code=CODE))


def test_list_and_get_rebuild_the_spec_from_the_cluster_alone(cluster, backend):
    spec = FunctionSpec(
        "system_info",
        code=CODE,
        env_vars={"exec_timeout": "10s"},
        constraints=("edgefaas.io/profile=sonic",),
        limits={"memory": "128Mi"},
        public=True,
        labels={"team": "edge"},
    )
    backend.deploy(spec)
    backend.deploy(FunctionSpec("FuncA", code=CODE))
    fresh = make_backend(cluster)  # a restarted gateway: nothing but the cluster to go by
    listed = {s.name: s for s in fresh.list()}
    assert sorted(listed) == ["FuncA", "system_info"]
    assert listed["system_info"].spec == spec
    assert listed["system_info"].nodes == ("sonic-1",)
    assert fresh.get("system_info").spec == spec
    assert fresh.endpoint("FuncA") == backend.endpoint("FuncA")


def test_scale_to_zero_and_back(cluster, backend):
    backend.deploy(FunctionSpec("FuncA", code=CODE))
    status = backend.scale("FuncA", 0)
    assert status.replicas == 0
    with pytest.raises(FunctionUnavailable) as raised:
        backend.endpoint("FuncA")
    assert raised.value.scaled_to_zero
    status = backend.scale("FuncA", 2)
    assert status.replicas == 2 and status.available_replicas == 2
    assert backend.endpoint("FuncA")
    assert make_backend(cluster).get("FuncA").spec.replicas == 2


def test_delete_removes_every_object(cluster, backend):
    backend.deploy(FunctionSpec("FuncA", code=CODE))
    backend.update(FunctionSpec("FuncA", code=CODE + "#2\n"))
    backend.delete("FuncA")
    assert not any(cluster.objects[kind] for kind in ("Deployment", "Service", "ConfigMap", "Pod"))
    with pytest.raises(FunctionNotFound):
        backend.endpoint("FuncA")
    with pytest.raises(FunctionNotFound):
        backend.get("FuncA")
    with pytest.raises(FunctionNotFound):
        backend.delete("FuncA")


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
    import datetime as dt

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


def test_logs_come_from_the_functions_pods_without_their_timestamps(backend):
    backend.deploy(FunctionSpec("FuncA", code=CODE))
    assert backend.logs("FuncA", tail=1) == ["ERROR importing /code/handler.py failed"]
    with pytest.raises(FunctionNotFound):
        backend.logs("Nope")


def test_an_unreachable_api_server_is_a_backend_error(cluster, backend):
    cluster.unreachable = True
    with pytest.raises(BackendError, match="cannot be reached"):
        backend.list()


def test_endpoint_of_an_unknown_function_is_not_found(backend):
    with pytest.raises(FunctionNotFound):
        backend.endpoint("Nope")


# -- choosing the backend -------------------------------------------------------------------------


def test_auto_picks_kubernetes_when_a_kubeconfig_is_given(monkeypatch, tmp_path):
    monkeypatch.setattr(cli, "available_backends", lambda: ["local", "kubernetes"])
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setattr(cli, "K3S_KUBECONFIG", tmp_path / "absent.yaml")
    assert cli.choose_backend("auto") == "local"
    assert cli.choose_backend("auto", tmp_path / "kubeconfig") == "kubernetes"


def test_the_kubernetes_backend_needs_a_runtime_image(tmp_path):
    with pytest.raises(click.ClickException, match="--runtime-image"):
        cli.make_backend("kubernetes", tmp_path, GATEWAY)
    backend = cli.make_backend(
        "kubernetes",
        tmp_path,
        GATEWAY,
        runtime_image=IMAGE,
        namespace="edgefaas-test",
        kubeconfig=tmp_path / "k",
    )
    assert isinstance(backend, kb.KubernetesBackend)
    assert backend.namespaces() == ["edgefaas-test"] and backend.runtime_image == IMAGE


def test_pods_cannot_reach_a_gateway_on_loopback(tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\n")
    result = CliRunner().invoke(
        cli.gateway,
        [
            "--backend",
            "kubernetes",
            "--kubeconfig",
            str(kubeconfig),
            "--runtime-image",
            IMAGE,
            "--data-dir",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 2 and "--gateway-url is required" in result.output


def test_the_lab_gateway_is_on_the_k3s_server():
    devices = [
        {"name": "sonic-1", "profile": "sonic", "roles": ["k3s_server"]},
        {"name": "jetson-1", "profile": "jetson", "roles": ["k3s_agent"]},
    ]
    state = LabState(parse_spec({"devices": devices}))
    assert gateway_url(state) == f"http://{state.spec.device('sonic-1').address}:8080"
    assert gateway_url(state, port=9090).endswith(":9090")
    alone = LabState(parse_spec({"devices": [{"name": "jetson-1", "profile": "jetson", "roles": []}]}))
    with pytest.raises(SpecError, match="no k3s_server"):
        gateway_url(alone)
