"""What one function is in the cluster: the manifests the kubernetes backend sends.

Pure functions of a FunctionSpec, with no API call and no kubernetes client: plain dicts,
which any client version sends as they are. All objects live in one namespace
(``edgefaas-fn`` by default):

- ConfigMap ``<obj>-<code sha256[:10]>``, immutable: the source, mounted read-only at
  /code/handler.py into the generic runtime image, so deploying or updating a function
  needs no image build and no registry. Named after its content: an update with new code
  makes a new one, going back to old code finds the old one again.
- Deployment ``<obj>``: the runtime image (``imagePullPolicy: Never``: it arrives as a
  tarball imported into every node's containerd), or the function's own image, pulled from
  its registry (``IfNotPresent``: a node pulls a tag once, as OpenFaaS's faas-netes does);
  the runtime's settings in EDGEFAAS_* variables, readiness on /_/ready and liveness on
  /_/health (an image function: both on /_/health, which OpenFaaS's classic watchdog and
  of-watchdog both serve, unless faas-netes's probe-path annotations say otherwise), uid
  10001 with no privileges, limits/requests from the spec,
  constraints as a nodeSelector (``edgefaas.io/profile=jetson``). The spec itself (less
  the code), the version and the times are annotations, so ``list``/``get`` rebuild
  everything from the cluster alone and a restarted gateway needs no state of its own.
  Rolling updates use maxUnavailable 0 and maxSurge 1, and the pod template carries the
  version and the code hash, so every update rolls.
- Service ``<obj>`` (ClusterIP, port 8080): where the gateway calls the function.

``<obj>`` is the function's name as a DNS label: function names are case-sensitive and
may hold ``_``, object names may not, so ``FuncA`` becomes ``funca-<8 hex of
sha256("FuncA")>`` (``funca`` and ``FuncA`` stay apart); the real name is an annotation.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from edgefaas.runtime.server import HEALTH_PATH, READY_PATH

from .base import DeployError, FunctionSpec, Unsupported

DEFAULT_NAMESPACE = "edgefaas-fn"
PORT = 8080
RUNTIME_UID = 10001
CODE_DIR = "/code"
CODE_FILE = "handler.py"
SECRETS_DIR = "/var/openfaas/secrets"  # where OpenFaaS functions look for their secrets
# OpenFaaS's watchdog contract for image functions: both watchdogs answer here (only of-watchdog
# has /_/ready too), and faas-netes probes it for readiness and liveness alike.
WATCHDOG_HEALTH_PATH = "/_/health"
# faas-netes's annotations that move an image function's probes to a path of its own.
HEALTH_PATH_ANNOTATION = "com.openfaas.health.http.path"
READY_PATH_ANNOTATION = "com.openfaas.ready.http.path"

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "edgefaas"
MANAGED_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY}"
FUNCTION_LABEL = "edgefaas.io/function"  # the object name: always a valid label value
NAME_ANNOTATION = "edgefaas.io/function-name"  # the real, case-sensitive name
SPEC_ANNOTATION = "edgefaas.io/spec"
VERSION_ANNOTATION = "edgefaas.io/version"
CREATED_ANNOTATION = "edgefaas.io/created-at"
UPDATED_ANNOTATION = "edgefaas.io/updated-at"
CODE_HASH_ANNOTATION = "edgefaas.io/code-sha256"
# Labels a user may not set: the Deployment and the Service select pods by them.
# Secrets made through /system/secrets carry it: only they are listed, updated or removed
# there (the namespace holds other Secrets, the gateway's own token among them).
SECRET_LABEL = "edgefaas.io/secret"
SECRET_SELECTOR = f"{SECRET_LABEL}=true"

_RESERVED_LABELS = frozenset({MANAGED_BY_LABEL, FUNCTION_LABEL, "pod-template-hash"})

# A leaving pod keeps serving this long before SIGTERM: time for the endpoints controller
# and kube-proxy to stop sending it new connections.
PRE_STOP_SECONDS = 2


def object_name(function: str) -> str:
    """The DNS label (and DNS-1035 Service name) for a function name: ``FuncA`` -> ``funca-<hash>``."""
    digest = hashlib.sha256(function.encode()).hexdigest()[:8]
    # Function names start with a letter, so the stem does too; 54 + 1 + 8 = 63, a label's limit.
    stem = re.sub(r"[^a-z0-9-]+", "-", function.lower())[:54].strip("-") or "fn"
    return f"{stem}-{digest}"


def config_map_name(obj: str, code_sha256: str) -> str:
    return f"{obj}-{code_sha256[:10]}"


def node_selector(spec: FunctionSpec) -> dict[str, str]:
    """Constraints as a nodeSelector; DeployError when two of them ask one label for two values."""
    selector: dict[str, str] = {}
    for constraint in spec.parsed_constraints:
        if selector.get(constraint.key, constraint.value) != constraint.value:
            raise DeployError(
                f"constraints {constraint.key}={selector[constraint.key]} and {constraint} cannot both hold"
            )
        selector[constraint.key] = constraint.value
    return selector


def _drain_seconds(spec: FunctionSpec) -> int:
    """How long a leaving pod may take to finish its calls: the runtime's exec timeout and a margin."""
    return int(spec.exec_timeout) + 5


def probe_paths(spec: FunctionSpec) -> tuple[str, str]:
    """(readiness, liveness) paths: the runtime's for source; an image's from OpenFaaS's watchdog."""
    if spec.code is not None:
        return READY_PATH, HEALTH_PATH
    health = spec.annotations.get(HEALTH_PATH_ANNOTATION) or WATCHDOG_HEALTH_PATH
    return spec.annotations.get(READY_PATH_ANNOTATION) or health, health


def pull_policy(spec: FunctionSpec) -> str:
    """Never for the runtime image (no registry holds it: every node imported it), IfNotPresent for
    an image function's own: pulled once per node and tag, and a node that has it starts without
    the registry. A moving tag (``latest``) is therefore not re-pulled: deploy a new tag to roll."""
    return "Never" if spec.code is not None else "IfNotPresent"


def _user_labels(labels: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in labels.items() if k not in _RESERVED_LABELS}


def _user_annotations(annotations: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in annotations.items() if not k.startswith("edgefaas.io/")}


def build_config_map(spec: FunctionSpec, obj: str) -> dict[str, Any]:
    if spec.code is None or spec.code_sha256 is None:
        raise ValueError("only a function deployed from code has a ConfigMap")
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": config_map_name(obj, spec.code_sha256),
            "labels": {MANAGED_BY_LABEL: MANAGED_BY, FUNCTION_LABEL: obj},
            "annotations": {NAME_ANNOTATION: spec.name, CODE_HASH_ANNOTATION: spec.code_sha256},
        },
        # Immutable: the kubelet need not watch it, and a version can never change under a pod.
        "immutable": True,
        "data": {CODE_FILE: spec.code},
    }


def build_service(spec: FunctionSpec, obj: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": obj,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY, FUNCTION_LABEL: obj},
            "annotations": {NAME_ANNOTATION: spec.name},
        },
        "spec": {
            "type": "ClusterIP",
            "selector": {FUNCTION_LABEL: obj},
            "ports": [{"name": "http", "port": PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def build_deployment(
    spec: FunctionSpec,
    obj: str,
    *,
    runtime_image: str | None,
    gateway_url: str,
    version: int,
    created_at: float,
    updated_at: float,
    gateway_ca: str = "",
) -> dict[str, Any]:
    """The Deployment manifest for ``spec`` (a plain dict: any client version sends it as is)."""
    if spec.code is not None and not runtime_image:
        raise Unsupported("no runtime image is configured (--runtime-image): functions from code need one")
    image = spec.image or runtime_image
    ours = {
        "EDGEFAAS_PORT": str(PORT),
        "EDGEFAAS_FUNCTION_NAME": spec.name,
        "EDGEFAAS_GATEWAY_URL": gateway_url,
        "PYTHONUNBUFFERED": "1",
    }
    if gateway_ca:
        ours["EDGEFAAS_GATEWAY_CA"] = gateway_ca
    if spec.code is not None:
        ours["EDGEFAAS_CODE"] = f"{CODE_DIR}/{CODE_FILE}"
    if spec.env_process:
        ours["fprocess"] = spec.env_process  # OpenFaaS's watchdog reads the command to run here
    env = [{"name": k, "value": v} for k, v in spec.env_vars.items() if k not in ours]
    env += [{"name": k, "value": v} for k, v in ours.items()]
    # Which device the pod landed on: a function that can offload (face-expression) starts
    # from its own device's services.
    env += [
        {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}
        for name, path in (("EDGEFAAS_NODE_NAME", "spec.nodeName"), ("EDGEFAAS_NODE_IP", "status.hostIP"))
        if name not in spec.env_vars
    ]

    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    if spec.code is not None and spec.code_sha256 is not None:
        volumes.append(
            {
                "name": "code",
                "configMap": {
                    "name": config_map_name(obj, spec.code_sha256),
                    "items": [{"key": CODE_FILE, "path": CODE_FILE}],
                    "defaultMode": 0o444,
                },
            }
        )
        mounts.append({"name": "code", "mountPath": CODE_DIR, "readOnly": True})
    if spec.secrets:
        volumes.append(
            {
                "name": "secrets",
                "projected": {"sources": [{"secret": {"name": name}} for name in spec.secrets]},
            }
        )
        mounts.append({"name": "secrets", "mountPath": SECRETS_DIR, "readOnly": True})
    if spec.read_only_root_filesystem or spec.image is not None:
        # Python and most libraries still want a writable temporary directory, and OpenFaaS's
        # classic watchdog writes its health lock file there: an image built FROM scratch has none.
        volumes.append({"name": "tmp", "emptyDir": {}})
        mounts.append({"name": "tmp", "mountPath": "/tmp"})

    resources = {
        key: dict(value) for key, value in (("limits", spec.limits), ("requests", spec.requests)) if value
    }
    labels = {**_user_labels(spec.labels), MANAGED_BY_LABEL: MANAGED_BY, FUNCTION_LABEL: obj}
    pod_annotations = {
        **_user_annotations(spec.annotations),
        NAME_ANNOTATION: spec.name,
        VERSION_ANNOTATION: str(version),
        # A new version or new code changes the pod template, which is what makes Kubernetes roll.
        CODE_HASH_ANNOTATION: spec.code_sha256 or "",
    }
    drain = _drain_seconds(spec)
    ready_path, health_path = probe_paths(spec)
    container = {
        "name": "function",
        "image": image,
        "imagePullPolicy": pull_policy(spec),
        "env": env,
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "readinessProbe": {
            "httpGet": {"path": ready_path, "port": "http"},
            # Every second: this is what decides how soon a new pod takes calls (cold start).
            "periodSeconds": 1,
            "timeoutSeconds": 1,
            "failureThreshold": 2,
        },
        "livenessProbe": {
            "httpGet": {"path": health_path, "port": "http"},
            "initialDelaySeconds": 5,
            "periodSeconds": 10,
            "timeoutSeconds": 2,
            "failureThreshold": 3,
        },
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(PRE_STOP_SECONDS)]}}},
        "securityContext": {
            "runAsUser": RUNTIME_UID,
            "runAsGroup": RUNTIME_UID,
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": spec.read_only_root_filesystem,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": mounts,
    }
    if resources:
        container["resources"] = resources
    if spec.code is not None:
        container["workingDir"] = CODE_DIR
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "volumes": volumes,
        # Functions call each other through the gateway, never the Kubernetes API.
        "automountServiceAccountToken": False,
        # No Service variables: nothing uses them, and with many functions they crowd the environment.
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": PRE_STOP_SECONDS + drain + 3,
    }
    selector = node_selector(spec)
    if selector:
        pod_spec["nodeSelector"] = selector
    annotations = {
        **_user_annotations(spec.annotations),
        NAME_ANNOTATION: spec.name,
        SPEC_ANNOTATION: json.dumps(spec.to_json(include_code=False), sort_keys=True),
        VERSION_ANNOTATION: str(version),
        CREATED_ANNOTATION: f"{created_at:.3f}",
        UPDATED_ANNOTATION: f"{updated_at:.3f}",
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": obj, "labels": labels, "annotations": annotations},
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": {FUNCTION_LABEL: obj}},
            # Zero failed calls: never fewer ready pods than asked for, one extra while rolling.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "revisionHistoryLimit": 2,
            "progressDeadlineSeconds": 120,
            "template": {"metadata": {"labels": labels, "annotations": pod_annotations}, "spec": pod_spec},
        },
    }


def build_secret(name: str, value: bytes) -> dict[str, Any]:
    """A user's secret, its value under the key ``name``, so the function's projected volume
    holds it at SECRETS_DIR/<name>, as OpenFaaS mounts secrets."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": name, "labels": {MANAGED_BY_LABEL: MANAGED_BY, SECRET_LABEL: "true"}},
        "data": {name: base64.b64encode(value).decode("ascii")},
    }
