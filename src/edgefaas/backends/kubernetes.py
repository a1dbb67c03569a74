"""The kubernetes backend: every function a Deployment + Service on K3S, its code a ConfigMap.

What those objects are is kubernetes_manifests; what the nodes are, kubernetes_nodes.
This module drives them: create, roll, scale, delete, and route calls.

Update is Kubernetes' rolling update with maxUnavailable 0 and maxSurge 1: a new pod
starts next to the old one, and the old one leaves only once the new one is ready. A
leaving pod first sleeps in preStop while the endpoints controller and kube-proxy take
it out of the Service, then gets SIGTERM and drains (the runtime finishes what is in
flight). If the new version does not become ready (it crashes, or no node takes it),
the Deployment is put back as it was and the old pods, which never stopped, keep serving.

The gateway calls a function at its Service's cluster IP: it runs on the K3S server
host, where kube-proxy makes cluster IPs reachable. ``endpoint`` must not do I/O (it is
on every call's path): a watcher thread follows the Deployments (list, then watch,
relist on any error) and keeps a table of each function's Service URL and ready
replicas; deploy/update/scale/delete write to it too.

What the gateway's Kubernetes identity needs (deploys/edgefaas.py makes it): in the
namespace, get/list/watch/create/update/patch/delete on deployments, services and
configmaps, get/list/create/update/delete on secrets (/system/secrets), get/list on pods
and pods/log; cluster-wide, get/list on nodes; list on events in ``default``, where the
node authentication server records removals.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import urllib3
from kubernetes.client.exceptions import ApiException

from . import kubernetes_nodes
from .base import (
    PROFILE_LABEL,
    Backend,
    BackendError,
    BackendUnreachable,
    DeployError,
    FunctionExists,
    FunctionNotFound,
    FunctionSpec,
    FunctionStatus,
    FunctionUnavailable,
    LogLine,
    NodeInfo,
    SecretExists,
    SecretNotFound,
    select_lines,
)
from .kubernetes_manifests import (
    CODE_FILE,
    CREATED_ANNOTATION,
    DEFAULT_NAMESPACE,
    FUNCTION_LABEL,
    MANAGED_SELECTOR,
    NAME_ANNOTATION,
    PORT,
    SECRET_LABEL,
    SECRET_SELECTOR,
    SPEC_ANNOTATION,
    UPDATED_ANNOTATION,
    VERSION_ANNOTATION,
    build_config_map,
    build_deployment,
    build_secret,
    build_service,
    config_map_name,
    node_selector,
    object_name,
)

log = logging.getLogger("edgefaas.backends.kubernetes")

T = TypeVar("T")

# Pod states no waiting cures: the deploy fails at once, naming them.
_FATAL_WAITING = frozenset(
    {
        "ErrImageNeverPull",
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)


@dataclass(frozen=True)
class _Route:
    url: str | None  # None until the Service's cluster IP is known
    replicas: int
    ready: int
    unready_since: float | None = None  # monotonic time it lost its last ready replica

    def carrying_outage(self, before: _Route | None) -> _Route:
        """This route, with when its outage began kept from the route it replaces."""
        if self.ready > 0 or self.replicas <= 0:
            return self
        since = before.unready_since if before is not None and before.unready_since is not None else None
        return replace(self, unready_since=since if since is not None else time.monotonic())


@dataclass(frozen=True)
class _Problem:
    message: str
    fatal: bool  # waiting cannot cure it (crash, missing image)


def _annotations(obj: Any) -> dict[str, str]:
    return dict(getattr(obj.metadata, "annotations", None) or {})


def _labels(obj: Any) -> dict[str, str]:
    return dict(getattr(obj.metadata, "labels", None) or {})


def _api_message(exc: ApiException) -> str:
    with contextlib.suppress(TypeError, ValueError, AttributeError):
        return str(json.loads(exc.body)["message"])
    return str(exc.reason or exc.status)


# What a function's pods are told of the gateway (build_deployment): kept in step with it.
GATEWAY_ENV = ("EDGEFAAS_GATEWAY_URL", "EDGEFAAS_GATEWAY_CA")


class KubernetesBackend(Backend):
    kind: ClassVar[str] = "kubernetes"
    orchestration: ClassVar[str] = "kubernetes"

    def __init__(
        self,
        runtime_image: str | None,
        gateway_url: str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        kubeconfig: str | Path | None = None,
        core_api: Any = None,
        apps_api: Any = None,
        start_timeout: float = 90.0,
        request_timeout: float = 15.0,
        poll_interval: float = 0.25,
        watch: bool = True,
        watch_timeout: int = 60,
        gateway_ca: str = "",
    ) -> None:
        self.runtime_image = runtime_image
        self.gateway_url = gateway_url
        self.gateway_ca = gateway_ca
        self.namespace = namespace
        self.kubeconfig = kubeconfig
        self.core = core_api
        self.apps = apps_api
        self.start_timeout = start_timeout
        self.request_timeout = request_timeout
        self.poll_interval = poll_interval
        self.watch = watch
        self.watch_timeout = watch_timeout
        # name -> route; replaced whole on every change, so endpoint() reads it without a lock.
        self._routes: dict[str, _Route] = {}
        self._routes_lock = threading.Lock()
        self._function_locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._stream: Any = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        if self.core is None or self.apps is None:
            self._connect()
        try:
            self.refresh()
            self.reconcile_gateway_env()
        except BackendError as exc:
            # Not fatal here: the watcher keeps trying until the API server answers.
            log.error("cannot list functions yet: %s", exc)
        if self.watch:
            self._stop.clear()
            self._watcher = threading.Thread(target=self._watch, name="kubernetes-watch", daemon=True)
            self._watcher.start()

    def close(self) -> None:
        self._stop.set()
        stream = self._stream
        if stream is not None:
            stream.stop()
        if self._watcher is not None:
            self._watcher.join(timeout=2)

    def _connect(self) -> None:
        from kubernetes import client, config

        if self.kubeconfig:
            api_client = config.new_client_from_config(config_file=str(self.kubeconfig))
        else:
            try:
                config.load_incluster_config()
                api_client = client.ApiClient()
            except config.ConfigException:
                api_client = config.new_client_from_config()
        self.core = client.CoreV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)

    # -- the Backend interface ---------------------------------------------------------------

    def deploy(self, spec: FunctionSpec) -> FunctionStatus:
        obj = object_name(spec.name)
        now = time.time()
        manifest = build_deployment(
            spec,
            obj,
            runtime_image=self.runtime_image,
            gateway_url=self.gateway_url,
            gateway_ca=self.gateway_ca,
            version=1,
            created_at=now,
            updated_at=now,
        )
        with self._lock(spec.name):
            if self._read_deployment(obj) is not None:
                raise FunctionExists(spec.name)
            self._check_placement(spec)
            created: list[tuple[Callable[..., Any], str]] = []
            try:
                if spec.code is not None:
                    cm = build_config_map(spec, obj)
                    if self._create(self.core.create_namespaced_config_map, cm):
                        created.append((self.core.delete_namespaced_config_map, cm["metadata"]["name"]))
                service = self._ensure_service(spec, obj, created)
                dep = self._call(self.apps.create_namespaced_deployment, self.namespace, manifest)
                created.append((self.apps.delete_namespaced_deployment, obj))
                self._set_route(spec.name, self._service_url(service), spec.replicas, 0)
                dep = self._await_rollout(spec, obj, dep.metadata.generation or 1, version=1)
            except ApiException as exc:
                self._undo(created)
                self._drop_route(spec.name)
                if exc.status == 409:
                    raise FunctionExists(spec.name) from None
                raise self._refused(exc, f"deploy {spec.name}") from None
            except BaseException:
                self._undo(created)
                self._drop_route(spec.name)
                raise
            log.info("deployed %s as %s/%s", spec.name, self.namespace, obj)
            return self._status(dep, spec.code, self._pods(obj))

    def update(self, spec: FunctionSpec) -> FunctionStatus:
        obj = object_name(spec.name)
        with self._lock(spec.name):
            current = self._read_deployment(obj)
            if current is None or _annotations(current).get(NAME_ANNOTATION) != spec.name:
                raise FunctionNotFound(spec.name)
            old = self._status(current, self._read_code(current), ())
            version = old.version + 1
            manifest = build_deployment(
                spec,
                obj,
                runtime_image=self.runtime_image,
                gateway_url=self.gateway_url,
                gateway_ca=self.gateway_ca,
                version=version,
                created_at=old.created_at,
                updated_at=time.time(),
            )
            self._check_placement(spec)
            new_cm: str | None = None
            try:
                if spec.code is not None:
                    cm = build_config_map(spec, obj)
                    if self._create(self.core.create_namespaced_config_map, cm):
                        new_cm = cm["metadata"]["name"]
                self._ensure_service(spec, obj, [])
                manifest["metadata"]["resourceVersion"] = current.metadata.resource_version
                dep = self._call(self.apps.replace_namespaced_deployment, obj, self.namespace, manifest)
            except ApiException as exc:
                self._delete_config_map(new_cm)
                raise self._refused(exc, f"update {spec.name}") from None
            try:
                dep = self._await_rollout(spec, obj, dep.metadata.generation or 1, version=version)
            except DeployError as exc:
                self._roll_back(old, obj)
                self._delete_config_map(new_cm)
                raise DeployError(f"{exc}; {spec.name} stays at version {old.version}") from None
            self._collect_config_maps(obj, keep=spec.code_sha256)
            log.info("updated %s to version %d", spec.name, version)
            return self._status(dep, spec.code, self._pods(obj))

    def delete(self, name: str) -> None:
        obj = object_name(name)
        with self._lock(name):
            current = self._read_deployment(obj)
            if current is None or _annotations(current).get(NAME_ANNOTATION) != name:
                raise FunctionNotFound(name)
            try:
                self._call(self.apps.delete_namespaced_deployment, obj, self.namespace)
                with contextlib.suppress(ApiException):
                    self._call(self.core.delete_namespaced_service, obj, self.namespace)
                self._call(
                    self.core.delete_collection_namespaced_config_map,
                    self.namespace,
                    label_selector=f"{FUNCTION_LABEL}={obj}",
                )
            except ApiException as exc:
                if exc.status != 404:
                    raise self._refused(exc, f"delete {name}") from None
            self._drop_route(name)
        log.info("deleted %s", name)

    def get(self, name: str) -> FunctionStatus:
        obj = object_name(name)
        dep = self._read_deployment(obj)
        if dep is None or _annotations(dep).get(NAME_ANNOTATION) != name:
            raise FunctionNotFound(name)
        return self._status(dep, self._read_code(dep), self._pods(obj))

    def list(self) -> list[FunctionStatus]:
        try:
            deployments = self._call(
                self.apps.list_namespaced_deployment, self.namespace, label_selector=MANAGED_SELECTOR
            ).items
            config_maps = self._call(
                self.core.list_namespaced_config_map, self.namespace, label_selector=MANAGED_SELECTOR
            ).items
            pods = self._call(
                self.core.list_namespaced_pod, self.namespace, label_selector=MANAGED_SELECTOR
            ).items
        except ApiException as exc:
            raise self._refused(exc, "list functions") from None
        codes = {cm.metadata.name: (cm.data or {}).get(CODE_FILE) for cm in config_maps}
        by_function: dict[str, list[Any]] = {}
        for pod in pods:
            by_function.setdefault(_labels(pod).get(FUNCTION_LABEL, ""), []).append(pod)
        statuses = []
        for dep in deployments:
            if NAME_ANNOTATION not in _annotations(dep):
                continue
            cm = self._config_map_of(dep)
            code = codes.get(cm) if cm else None
            statuses.append(self._status(dep, code, by_function.get(dep.metadata.name, ())))
        return sorted(statuses, key=lambda s: s.name)

    def scale(self, name: str, replicas: int) -> FunctionStatus:
        if replicas < 0:
            raise ValueError("replicas cannot be negative")
        obj = object_name(name)
        with self._lock(name):
            current = self._read_deployment(obj)
            if current is None or _annotations(current).get(NAME_ANNOTATION) != name:
                raise FunctionNotFound(name)
            code = self._read_code(current)
            spec = self._status(current, code, ()).spec.with_replicas(replicas)
            patch = {
                "metadata": {
                    "annotations": {
                        SPEC_ANNOTATION: json.dumps(spec.to_json(include_code=False), sort_keys=True),
                        UPDATED_ANNOTATION: f"{time.time():.3f}",
                    }
                },
                "spec": {"replicas": replicas},
            }
            try:
                dep = self._call(self.apps.patch_namespaced_deployment, obj, self.namespace, patch)
            except ApiException as exc:
                raise self._refused(exc, f"scale {name}") from None
            self._observe(dep)
            if replicas > 0:
                # Waking from zero: the gateway holds the first call until a replica is ready.
                try:
                    dep = self._await_rollout(spec, obj, dep.metadata.generation or 1, version=None)
                except DeployError as exc:
                    log.warning("scaling %s to %d: %s", name, replicas, exc)
            return self._status(dep, code, self._pods(obj))

    def endpoint(self, name: str) -> str:
        route = self._routes.get(name)
        if route is None:
            raise FunctionNotFound(name)
        if route.ready <= 0 or route.url is None:
            if route.replicas == 0:
                raise FunctionUnavailable(f"function {name!r} is scaled to zero", scaled_to_zero=True)
            # Kubernetes marks a replica not ready when it starts, fails its probe, or its node
            # stops answering; the caller learns at once rather than waiting on a dead address.
            since = route.unready_since
            raise FunctionUnavailable(
                f"function {name!r} has no ready replica: it is (re)starting, or its device is down",
                unready_for=time.monotonic() - since if since is not None else 0.0,
            )
        return route.url

    def nodes(self) -> list[NodeInfo]:
        try:
            nodes = self._call(self.core.list_node).items
            pods = self._call(
                self.core.list_namespaced_pod, self.namespace, label_selector=MANAGED_SELECTOR
            ).items
        except ApiException as exc:
            raise self._refused(exc, "list nodes") from None
        placed: dict[str, set[str]] = {}
        for pod in pods:
            if (
                pod.spec.node_name
                and (pod.status.phase or "") == "Running"
                and not pod.metadata.deletion_timestamp
            ):
                name = _annotations(pod).get(NAME_ANNOTATION)
                if name:
                    placed.setdefault(pod.spec.node_name, set()).add(name)
        return kubernetes_nodes.node_infos(nodes, placed)

    def node_removals(self) -> list[dict[str, Any]]:
        try:
            events = self._call(
                self.core.list_namespaced_event,
                kubernetes_nodes.REMOVALS_NAMESPACE,
                field_selector=kubernetes_nodes.REMOVALS_SELECTOR,
            ).items
        except ApiException as exc:
            raise self._refused(exc, "list the node authentication server's events") from None
        return kubernetes_nodes.removals(events)

    def logs(
        self, name: str, tail: int = 0, since: float | None = None, instance: str | None = None
    ) -> list[LogLine]:
        obj = object_name(name)
        if self._read_deployment(obj) is None:
            raise FunctionNotFound(name)
        lines: list[LogLine] = []
        for pod in self._pods(obj):
            if instance and pod.metadata.name != instance:
                continue
            # The kubelet selects too (fewer bytes); select_lines then cuts exactly across pods.
            selection: dict[str, Any] = {"tail_lines": tail} if tail > 0 else {}
            if since is not None:
                selection["since_seconds"] = max(1, math.ceil(time.time() - since))
            try:
                text = self._call(
                    self.core.read_namespaced_pod_log,
                    pod.metadata.name,
                    self.namespace,
                    timestamps=True,
                    **selection,
                )
            except ApiException:
                continue  # a pod that has not started has no log yet
            lines.extend(_stamped(pod.metadata.name, line) for line in str(text).splitlines() if line)
        return select_lines(lines, tail, since, instance)

    def namespaces(self) -> list[str]:
        return [self.namespace]

    def list_secrets(self) -> list[str]:
        try:
            found = self._call(
                self.core.list_namespaced_secret, self.namespace, label_selector=SECRET_SELECTOR
            )
        except ApiException as exc:
            raise self._refused(exc, "list secrets") from None
        return sorted(item.metadata.name for item in found.items)

    def create_secret(self, name: str, value: bytes) -> None:
        try:
            self._call(self.core.create_namespaced_secret, self.namespace, build_secret(name, value))
        except ApiException as exc:
            if exc.status == 409:
                raise SecretExists(name) from None
            raise self._refused(exc, f"create secret {name}") from None

    def update_secret(self, name: str, value: bytes) -> None:
        current = self._own_secret(name)
        body = build_secret(name, value)
        body["metadata"]["resourceVersion"] = current.metadata.resource_version
        try:
            self._call(self.core.replace_namespaced_secret, name, self.namespace, body)
        except ApiException as exc:
            if exc.status == 404:
                raise SecretNotFound(name) from None
            raise self._refused(exc, f"update secret {name}") from None

    def delete_secret(self, name: str) -> None:
        self._own_secret(name)
        try:
            self._call(self.core.delete_namespaced_secret, name, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                raise SecretNotFound(name) from None
            raise self._refused(exc, f"delete secret {name}") from None

    def _own_secret(self, name: str) -> Any:
        """The Secret ``name`` if /system/secrets made it, else SecretNotFound (never another's)."""
        try:
            secret = self._call(self.core.read_namespaced_secret, name, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                raise SecretNotFound(name) from None
            raise self._refused(exc, f"read secret {name}") from None
        if _labels(secret).get(SECRET_LABEL) != "true":
            raise SecretNotFound(name)
        return secret

    # -- the route table ---------------------------------------------------------------------

    def refresh(self) -> str | None:
        """Rebuild the route table from the cluster; the list's resourceVersion, to watch from."""
        try:
            deployments = self._call(
                self.apps.list_namespaced_deployment, self.namespace, label_selector=MANAGED_SELECTOR
            )
            services = self._call(
                self.core.list_namespaced_service, self.namespace, label_selector=MANAGED_SELECTOR
            ).items
        except ApiException as exc:
            raise self._refused(exc, "list functions") from None
        urls = {svc.metadata.name: self._service_url(svc) for svc in services}
        with self._routes_lock:
            routes: dict[str, _Route] = {}
            for dep in deployments.items:
                name = _annotations(dep).get(NAME_ANNOTATION)
                if name:
                    # A relist (the watch ends every minute) must not forget when an outage began.
                    route = self._route_of(dep, urls.get(dep.metadata.name))
                    routes[name] = route.carrying_outage(self._routes.get(name))
            self._routes = routes
        return getattr(deployments.metadata, "resource_version", None)

    def _watch(self) -> None:
        from kubernetes import watch

        while not self._stop.is_set():
            try:
                version = self.refresh()
                self._stream = watch.Watch()
                for event in self._stream.stream(
                    self.apps.list_namespaced_deployment,
                    self.namespace,
                    label_selector=MANAGED_SELECTOR,
                    resource_version=version,
                    timeout_seconds=self.watch_timeout,
                    _request_timeout=self.watch_timeout + 10,
                ):
                    if self._stop.is_set():
                        return
                    kind, dep = event.get("type"), event.get("object")
                    if kind == "ERROR" or dep is None or isinstance(dep, dict):
                        break  # e.g. 410 Gone: the version is too old; list again
                    if kind == "DELETED":
                        name = _annotations(dep).get(NAME_ANNOTATION)
                        if name:
                            self._drop_route(name)
                    else:
                        self._observe(dep)
            except Exception as exc:  # the watcher must outlive any API server outage
                if self._stop.is_set():
                    return
                log.warning("watching functions: %s; listing again in 1 s", exc)
                self._stop.wait(1.0)

    def _observe(self, dep: Any) -> None:
        name = _annotations(dep).get(NAME_ANNOTATION)
        if not name:
            return
        known = self._routes.get(name)
        url = known.url if known else None
        if url is None:
            with contextlib.suppress(ApiException, BackendError):
                url = self._service_url(
                    self._call(self.core.read_namespaced_service, dep.metadata.name, self.namespace)
                )
        with self._routes_lock:
            route = self._route_of(dep, url).carrying_outage(self._routes.get(name))
            self._routes = {**self._routes, name: route}

    def _set_route(self, name: str, url: str | None, replicas: int, ready: int) -> None:
        with self._routes_lock:
            route = _Route(url, replicas, ready).carrying_outage(self._routes.get(name))
            self._routes = {**self._routes, name: route}

    def _drop_route(self, name: str) -> None:
        with self._routes_lock:
            self._routes = {k: v for k, v in self._routes.items() if k != name}

    @staticmethod
    def _route_of(dep: Any, url: str | None) -> _Route:
        status = dep.status
        ready = (getattr(status, "ready_replicas", None) or 0) if status else 0
        return _Route(url, dep.spec.replicas or 0, ready)

    @staticmethod
    def _service_url(service: Any) -> str | None:
        ip = getattr(service.spec, "cluster_ip", None)
        if not ip or ip == "None":
            return None
        return f"http://[{ip}]:{PORT}" if ":" in ip else f"http://{ip}:{PORT}"

    # -- internals ---------------------------------------------------------------------------

    def _lock(self, name: str) -> threading.Lock:
        with self._locks_lock:
            return self._function_locks.setdefault(name, threading.Lock())

    def _call(self, method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """One API call with a timeout; an unreachable API server becomes a BackendError."""
        try:
            return method(*args, _request_timeout=self.request_timeout, **kwargs)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise BackendUnreachable(f"the Kubernetes API cannot be reached: {exc}") from exc

    def _refused(self, exc: ApiException, what: str) -> BackendError:
        message = _api_message(exc)
        if exc.status in (400, 422):
            return DeployError(f"Kubernetes refused to {what}: {message}")
        if exc.status in (401, 403):
            return BackendError(
                f"the gateway may not {what} in namespace {self.namespace}: {message} (check its RBAC)"
            )
        if exc.status in (500, 502, 503, 504):
            # The API server (re)starting answers these before it is ready.
            return BackendUnreachable(
                f"could not {what}: the Kubernetes API is not ready ({exc.status} {message})"
            )
        return BackendError(f"could not {what}: {exc.status} {message}")

    def _create(self, method: Callable[..., Any], body: dict[str, Any]) -> bool:
        """Create an object; False if one by that name exists (content-addressed: it is the same)."""
        try:
            self._call(method, self.namespace, body)
            return True
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise

    def _ensure_service(
        self, spec: FunctionSpec, obj: str, created: list[tuple[Callable[..., Any], str]]
    ) -> Any:
        try:
            service = self._call(
                self.core.create_namespaced_service, self.namespace, build_service(spec, obj)
            )
            created.append((self.core.delete_namespaced_service, obj))
            return service
        except ApiException as exc:
            if exc.status != 409:
                raise
        return self._call(self.core.read_namespaced_service, obj, self.namespace)

    def _undo(self, created: Iterable[tuple[Callable[..., Any], str]]) -> None:
        for delete, name in reversed(list(created)):
            try:
                self._call(delete, name, self.namespace)
            except (ApiException, BackendError) as exc:
                log.warning("cleaning up %s after a failed deploy: %s", name, exc)

    def _read_deployment(self, obj: str) -> Any:
        try:
            return self._call(self.apps.read_namespaced_deployment, obj, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise self._refused(exc, f"read deployment {obj}") from None

    @staticmethod
    def _config_map_of(dep: Any) -> str | None:
        for volume in dep.spec.template.spec.volumes or []:
            if volume.name == "code" and volume.config_map is not None:
                return str(volume.config_map.name)
        return None

    def _read_code(self, dep: Any) -> str | None:
        name = self._config_map_of(dep)
        if name is None:
            return None
        try:
            cm = self._call(self.core.read_namespaced_config_map, name, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise self._refused(exc, f"read ConfigMap {name}") from None
        return (cm.data or {}).get(CODE_FILE)

    def _delete_config_map(self, name: str | None) -> None:
        if name is None:
            return
        with contextlib.suppress(ApiException, BackendError):
            self._call(self.core.delete_namespaced_config_map, name, self.namespace)

    def _collect_config_maps(self, obj: str, keep: str | None) -> None:
        """Remove code versions nothing runs any more (pods still draining keep their copy)."""
        wanted = config_map_name(obj, keep) if keep else None
        try:
            items = self._call(
                self.core.list_namespaced_config_map, self.namespace, label_selector=f"{FUNCTION_LABEL}={obj}"
            ).items
        except (ApiException, BackendError) as exc:
            log.warning("listing old code of %s: %s", obj, exc)
            return
        for cm in items:
            if cm.metadata.name != wanted:
                self._delete_config_map(cm.metadata.name)

    def _pods(self, obj: str) -> list[Any]:
        try:
            return list(
                self._call(
                    self.core.list_namespaced_pod, self.namespace, label_selector=f"{FUNCTION_LABEL}={obj}"
                ).items
            )
        except ApiException as exc:
            raise self._refused(exc, f"list the pods of {obj}") from None

    def _check_placement(self, spec: FunctionSpec) -> None:
        """Refuse at once constraints no node has the labels for (a typo would wait forever)."""
        selector = node_selector(spec)
        if not selector:
            return
        try:
            nodes = self._call(self.core.list_node).items
        except ApiException as exc:
            raise self._refused(exc, "list nodes") from None
        if any(all(_labels(n).get(k) == v for k, v in selector.items()) for n in nodes):
            return
        profiles = ", ".join(f"{n.metadata.name} ({_labels(n).get(PROFILE_LABEL, '-')})" for n in nodes)
        wanted = ", ".join(f"{k}={v}" for k, v in selector.items())
        raise DeployError(f"no node satisfies constraints {wanted}: the nodes are {profiles or 'none'}")

    def _await_rollout(self, spec: FunctionSpec, obj: str, generation: int, version: int | None) -> Any:
        """Wait until every replica of ``version`` is ready and no older pod is left; DeployError if not."""
        deadline = time.monotonic() + self.start_timeout
        next_look = time.monotonic() + 1.0
        problem: _Problem | None = None
        want = spec.replicas
        while True:
            dep = self._read_deployment(obj)
            if dep is None:
                raise DeployError(f"{spec.name}: its Deployment disappeared while rolling out")
            self._observe(dep)
            status = dep.status
            if status is not None and (
                (status.observed_generation or 0) >= generation
                and (status.updated_replicas or 0) >= want
                and (status.available_replicas or 0) >= want
                and (status.replicas or 0) <= want
            ):
                return dep
            now = time.monotonic()
            if now >= next_look or now >= deadline:
                next_look = now + 1.0
                problem = self._pod_problem(obj, version)
                if problem is not None and problem.fatal:
                    raise DeployError(f"{spec.name} did not start: {problem.message}")
            if now >= deadline:
                why = f": {problem.message}" if problem else ""
                raise DeployError(f"{spec.name} was not ready within {self.start_timeout:g} s{why}")
            time.sleep(self.poll_interval)

    def _pod_problem(self, obj: str, version: int | None) -> _Problem | None:
        """Why the pods of ``version`` (any, if None) are not ready yet, if their state says."""
        try:
            pods = self._pods(obj)
        except BackendError:
            return None
        found: _Problem | None = None
        for pod in pods:
            if version is not None and _annotations(pod).get(VERSION_ANNOTATION) != str(version):
                continue
            where = f"pod {pod.metadata.name}" + (f" on {pod.spec.node_name}" if pod.spec.node_name else "")
            for cs in pod.status.container_statuses or []:
                waiting = cs.state.waiting if cs.state else None
                if waiting is not None and waiting.reason in _FATAL_WAITING:
                    return _Problem(f"{where}: {waiting.reason}: {waiting.message or ''}".rstrip(": "), True)
                ended = (cs.state.terminated if cs.state else None) or (
                    cs.last_state.terminated if cs.last_state else None
                )
                if ended is not None and ended.exit_code:
                    previous = cs.state is None or cs.state.terminated is None
                    tail = self._log_tail(pod.metadata.name, previous=previous)
                    return _Problem(f"{where} exited with status {ended.exit_code}: {tail}", True)
            for condition in pod.status.conditions or []:
                if condition.type == "PodScheduled" and condition.status == "False":
                    found = _Problem(
                        f"{where} is not scheduled: {condition.message or condition.reason}", False
                    )
        return found

    def _log_tail(self, pod: str, previous: bool) -> str:
        """The line that says why a pod failed: the runtime's last ERROR line, else the log's last lines."""
        try:
            text = self._call(
                self.core.read_namespaced_pod_log, pod, self.namespace, tail_lines=40, previous=previous
            )
        except (ApiException, BackendError):
            return "(no log)"
        lines = [line.strip() for line in str(text).splitlines() if line.strip()]
        errors = [line for line in lines if " ERROR " in line]
        return errors[-1] if errors else " | ".join(lines[-3:]) or "(empty log)"

    def _roll_back(self, old: FunctionStatus, obj: str) -> None:
        """Put the Deployment back as it was: Kubernetes finds the old ReplicaSet, whose pods never left."""
        if self._replace_as(old, obj):
            log.warning("%s: rolled back to version %d", old.name, old.version)

    def _gateway_env_of(self, dep: Any) -> dict[str, str]:
        containers = dep.spec.template.spec.containers or []
        env = containers[0].env if containers else None
        return {e.name: e.value or "" for e in env or [] if e.name in GATEWAY_ENV}

    def reconcile_gateway_env(self) -> list[str]:
        """Functions deployed by an earlier gateway (another URL, plain HTTP, another CA) made to
        call this one as it is now; the names rolled. Each keeps its version and spec."""
        wanted = {"EDGEFAAS_GATEWAY_URL": self.gateway_url}
        if self.gateway_ca:
            wanted["EDGEFAAS_GATEWAY_CA"] = self.gateway_ca
        try:
            deployments = self._call(
                self.apps.list_namespaced_deployment, self.namespace, label_selector=MANAGED_SELECTOR
            ).items
        except ApiException as exc:
            raise self._refused(exc, "list functions") from None
        rolled = []
        for dep in deployments:
            name = _annotations(dep).get(NAME_ANNOTATION)
            if not name or self._gateway_env_of(dep) == wanted:
                continue
            with self._lock(name):
                current = self._read_deployment(dep.metadata.name)
                if current is None or self._gateway_env_of(current) == wanted:
                    continue
                status = self._status(current, self._read_code(current), ())
                if self._replace_as(status, dep.metadata.name):
                    log.info("%s: now calls the gateway at %s", name, self.gateway_url)
                    rolled.append(name)
        return rolled

    def _replace_as(self, old: FunctionStatus, obj: str) -> bool:
        """Replace the Deployment by the manifest of `old` as this gateway builds it; whether it was."""
        manifest = build_deployment(
            old.spec,
            obj,
            runtime_image=self.runtime_image,
            gateway_url=self.gateway_url,
            gateway_ca=self.gateway_ca,
            version=old.version,
            created_at=old.created_at,
            updated_at=old.updated_at,
        )
        for _ in range(3):
            current = self._read_deployment(obj)
            if current is None:
                return
            manifest["metadata"]["resourceVersion"] = current.metadata.resource_version
            try:
                self._observe(
                    self._call(self.apps.replace_namespaced_deployment, obj, self.namespace, manifest)
                )
                return True
            except ApiException as exc:
                if exc.status != 409:  # 409: changed under us (status); read it again
                    log.error("replacing %s's Deployment failed: %s", old.name, _api_message(exc))
                    return False
        log.error("replacing %s's Deployment failed: it kept changing", old.name)
        return False

    def _status(self, dep: Any, code: str | None, pods: Iterable[Any]) -> FunctionStatus:
        annotations = _annotations(dep)
        try:
            saved = json.loads(annotations.get(SPEC_ANNOTATION, "{}"))
        except ValueError:
            saved = {}
        name = annotations.get(NAME_ANNOTATION, dep.metadata.name)
        saved = {**saved, "service": name, "replicas": dep.spec.replicas or 0}
        if saved.get("image") is None:
            # A function from code whose ConfigMap is gone still lists, with empty code.
            saved["code"] = code if code is not None else ""
        else:
            saved.pop("code", None)
        spec = FunctionSpec.from_json(saved)
        created = _timestamp(annotations.get(CREATED_ANNOTATION), dep.metadata.creation_timestamp)
        updated = _timestamp(annotations.get(UPDATED_ANNOTATION), None) or created
        ready_nodes: set[str] = set()
        restarts = 0
        for pod in pods:
            statuses = pod.status.container_statuses or []
            restarts += sum(cs.restart_count or 0 for cs in statuses)
            if pod.spec.node_name and statuses and all(cs.ready for cs in statuses):
                ready_nodes.add(pod.spec.node_name)
        status = dep.status
        return FunctionStatus(
            spec=spec,
            available_replicas=(getattr(status, "available_replicas", None) or 0) if status else 0,
            created_at=created,
            updated_at=updated,
            version=int(annotations.get(VERSION_ANNOTATION, "1") or 1),
            nodes=tuple(sorted(ready_nodes)),
            restarts=restarts,
        )


def _stamped(pod: str, line: str) -> LogLine:
    """A kubelet log line, "<RFC 3339 time, to the nanosecond> <text>", as a LogLine."""
    stamp, _, text = line.partition(" ")
    whole, dot, fraction = stamp.rstrip("Z").partition(".")
    try:
        moment = datetime.datetime.fromisoformat(whole).replace(tzinfo=datetime.UTC)
        seconds = moment.timestamp() + (float("0." + fraction) if dot and fraction.isdigit() else 0.0)
    except ValueError:
        return LogLine(pod, 0.0, line)
    return LogLine(pod, seconds, text)


def _timestamp(annotation: str | None, fallback: Any) -> float:
    if annotation:
        with contextlib.suppress(ValueError):
            return float(annotation)
    if fallback is not None and hasattr(fallback, "timestamp"):
        return float(fallback.timestamp())
    return 0.0
