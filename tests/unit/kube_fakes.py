"""A fake of the Kubernetes API for the kubernetes backend's tests.

The fake keeps manifests as the API server would (camelCase dicts) and answers with
objects read the way the kubernetes client's models are (snake_case attributes, None when
absent). A tiny "controller" plays the Deployment controller and the scheduler: pods of
a new version start on a node matching the nodeSelector and become ready, or crash when
the test says so, and the old pods stay until the new ones are ready.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

import urllib3
from kubernetes.client.exceptions import ApiException

from edgefaas.backends.kubernetes import KubernetesBackend
from edgefaas.backends.kubernetes_manifests import (
    CODE_HASH_ANNOTATION,
    DEFAULT_NAMESPACE,
    FUNCTION_LABEL,
    VERSION_ANNOTATION,
)

IMAGE = "docker.io/edgefaas/runtime:test"
GATEWAY = "http://10.77.0.11:8080"
CODE = "def handle(event, context):\n    return {'ok': True}\n"


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
        self.namespace = DEFAULT_NAMESPACE
        self.objects: dict[str, dict[str, dict[str, Any]]] = {
            "Deployment": {},
            "Service": {},
            "ConfigMap": {},
            "Pod": {},
            "Event": {},
            "Secret": {},
        }
        self.nodes = (
            nodes if nodes is not None else [node("sonic-1", "sonic"), node("jetson-1", "jetson", gpus=1)]
        )
        self.resource_version = 100
        self.next_ip = 10
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.crashing: set[str] = set()  # code hashes whose pods exit with status 3
        # The kubelet's image pull: the reason it failed, None when it worked. The default pulls
        # everything; a test may give a real registry's answer (tests/unit/test_registry.py).
        self.pull: Callable[[str], str | None] = lambda image: None
        self.unreachable = False
        self.core = _Api(self)
        self.apps = _Api(self)

    # The "controller": what the Deployment controller, scheduler and kubelet would do.
    def reconcile(self, name: str) -> None:
        dep = self.objects["Deployment"][name]
        template = dep["spec"]["template"]
        annotations = template["metadata"]["annotations"]
        version = annotations[VERSION_ANNOTATION]
        replicas = dep["spec"]["replicas"]
        pods = {
            k: p
            for k, p in self.objects["Pod"].items()
            if p["metadata"]["labels"].get(FUNCTION_LABEL) == name
        }
        current = {
            k: p for k, p in pods.items() if p["metadata"]["annotations"][VERSION_ANNOTATION] == version
        }
        old = {k: p for k, p in pods.items() if k not in current}
        placed = [n for n in self.nodes if _matches(n["metadata"]["labels"], _selector(template))]
        crash = annotations[CODE_HASH_ANNOTATION] in self.crashing
        container = template["spec"]["containers"][0]
        pull_error = self.pull(container["image"]) if container["imagePullPolicy"] != "Never" else None
        crash = crash or pull_error is not None
        for i in range(len(current), replicas):
            pod_name = f"{name}-v{version}-{i}"
            self.objects["Pod"][pod_name] = pod(
                pod_name, template, placed[0]["metadata"]["name"] if placed else None, crash, pull_error
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


def pod(
    name: str, template: dict[str, Any], node_name: str | None, crash: bool, pull_error: str | None = None
) -> dict[str, Any]:
    if node_name is not None and pull_error is not None:
        # What the kubelet reports when containerd could not pull: the reason, then its message.
        status = {
            "phase": "Pending",
            "containerStatuses": [
                {
                    "name": "function",
                    "ready": False,
                    "restartCount": 0,
                    "state": {"waiting": {"reason": "ErrImagePull", "message": pull_error}},
                }
            ],
        }
    elif node_name is None:
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
    "secret": "Secret",
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
        kind = self._kind(method)
        store = self.cluster.objects[kind]
        if name not in store:
            raise _not_found(kind, name)
        current = store[name]
        if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise ApiException(status=409, reason="Conflict")
        body = copy.deepcopy(body)
        body["metadata"]["resourceVersion"] = self.cluster.bump()
        changed = body.get("spec") != current.get("spec")
        if kind != "Deployment":
            store[name] = body
            return _view(body)
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
                if p["metadata"]["labels"].get(FUNCTION_LABEL) == name
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


def make_backend(cluster: FakeCluster, **kwargs: Any) -> KubernetesBackend:
    """A started backend on ``cluster``, without the watcher thread (tests drive it)."""
    backend = KubernetesBackend(
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
