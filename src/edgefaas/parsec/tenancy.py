"""Parsec tenant isolation at admission: a pod in a tenant's namespace runs as that tenant's uid.

Tenants' pods reach the node's Parsec service with UnixPeerCredentials, so the uid a pod
runs as IS its Parsec identity: a pod that runs as another tenant's uid uses that tenant's
keys. K3S 1.25 has no ValidatingAdmissionPolicy, so the rule is a validating webhook
(served by the node authentication server, edgefaas.nodeauth.admission) scoped to the
namespaces labelled with a Parsec uid; deploys/parsec.py makes those namespaces.

The rule, for every container (init, regular and ephemeral), with the container's own
securityContext overriding the pod's:
  - runAsUser must be set (else the image's USER decides, which nobody reviewed),
  - it must not be 0 (root picks any uid),
  - it must equal the namespace's Parsec uid,
  - runAsNonRoot must not be false, privileged must not be true, and
    allowPrivilegeEscalation must be false (a setuid binary in the image would otherwise
    let the process become root and then any tenant).
A pod refused is answered with every rule it breaks, each naming the container.

No Kubernetes client here: the decision is plain dictionaries, so it is tested without a
cluster, and the webhook's manifest is built by the same module that knows the labels.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from typing import Any

TENANT_LABEL = "edgefaas.io/parsec-tenant"  # on a tenant namespace: the tenant's name
UID_LABEL = "edgefaas.io/parsec-uid"  # on a tenant namespace: its Parsec uid (decimal)
WEBHOOK_NAME = "parsec-tenant-uid.edgefaas.io"
CONFIGURATION_NAME = "edgefaas-parsec-tenants"
ADMIT_PATH = "/v1/admit"

CONTAINER_KINDS = (
    ("initContainers", "init container"),
    ("containers", "container"),
    ("ephemeralContainers", "ephemeral container"),
)


def tenant_problems(tenants: dict[str, int]) -> list[str]:
    """What is wrong with a namespace -> Parsec uid table (host data `parsec_tenants`)."""
    problems = []
    seen: dict[int, str] = {}
    for namespace, uid in tenants.items():
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", namespace):
            problems.append(f"{namespace!r} is not a Kubernetes namespace name")
        if not isinstance(uid, int) or isinstance(uid, bool) or uid <= 0:
            problems.append(f"{namespace}: uid {uid!r} must be a positive integer (never root)")
        elif uid in seen:
            problems.append(f"{namespace} and {seen[uid]} share uid {uid}: they would share Parsec keys")
        else:
            seen[uid] = namespace
    return problems


def namespace_uid(labels: dict[str, str] | None) -> int | None:
    """The Parsec uid a namespace's labels give it; None when it is no tenant namespace.

    A label that is not a positive decimal uid raises ValueError: the namespace claims to be
    a tenant's, so its pods are refused rather than let through.
    """
    value = (labels or {}).get(UID_LABEL)
    if value is None:
        return None
    if not value.isdigit() or int(value) == 0:
        raise ValueError(f"namespace label {UID_LABEL}={value!r} is not a non-root uid")
    return int(value)


def pod_violations(pod: dict[str, Any], uid: int) -> list[str]:
    """Every rule the pod breaks for a namespace whose Parsec uid is `uid` (empty: admit)."""
    spec = pod.get("spec") or {}
    pod_context = spec.get("securityContext") or {}
    problems = []
    for field, kind in CONTAINER_KINDS:
        for container in spec.get(field) or []:
            context = container.get("securityContext") or {}
            where = f"{kind} {container.get('name', '?')!r}"

            def effective(key: str, context: dict[str, Any] = context) -> Any:
                return context[key] if context.get(key) is not None else pod_context.get(key)

            run_as = effective("runAsUser")
            if run_as is None:
                problems.append(f"{where} sets no runAsUser: it must run as the tenant's uid {uid}")
            elif run_as == 0:
                problems.append(f"{where} runs as root (runAsUser 0): it must run as the tenant's uid {uid}")
            elif run_as != uid:
                problems.append(
                    f"{where} runs as uid {run_as}, another Parsec identity: "
                    f"this namespace's tenant is uid {uid}"
                )
            if effective("runAsNonRoot") is False:
                problems.append(f"{where} sets runAsNonRoot false")
            if context.get("privileged") is True:
                problems.append(f"{where} is privileged")
            if context.get("allowPrivilegeEscalation") is not False:
                problems.append(
                    f"{where} does not set allowPrivilegeEscalation false "
                    "(a setuid binary could change its uid)"
                )
    return problems


def review(admission_review: dict[str, Any], uid_of: Callable[[str], int | None]) -> dict[str, Any]:
    """The AdmissionReview (admission.k8s.io/v1) answer to one request.

    `uid_of(namespace)` gives the namespace's Parsec uid (None: not a tenant namespace; it
    may raise ValueError for a malformed label). Raises ValueError for a body that is no
    AdmissionReview request (the server answers 400).
    """
    request = admission_review.get("request") if isinstance(admission_review, dict) else None
    if not isinstance(request, dict) or not isinstance(request.get("uid"), str):
        raise ValueError("expected an AdmissionReview with a request and its uid")
    response: dict[str, Any] = {"uid": request["uid"], "allowed": True}
    kind = (request.get("kind") or {}).get("kind")
    pod = request.get("object")
    if kind == "Pod" and isinstance(pod, dict):
        namespace = request.get("namespace") or (pod.get("metadata") or {}).get("namespace") or ""
        try:
            uid = uid_of(namespace)
        except ValueError as exc:
            problems = [str(exc)]
        else:
            problems = pod_violations(pod, uid) if uid is not None else []
        if problems:
            message = f"Parsec tenant isolation (namespace {namespace}): " + "; ".join(problems)
            response.update(allowed=False, status={"code": 403, "reason": "Forbidden", "message": message})
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}


def webhook_configuration(ca_certificate_pem: bytes, url: str, timeout_s: int = 5) -> dict[str, Any]:
    """The ValidatingWebhookConfiguration: tenant namespaces only, failing closed.

    failurePolicy Fail: a tenant pod is not admitted unchecked while the webhook is down;
    the namespaceSelector keeps every other namespace (kube-system above all) independent
    of it, so a down webhook never blocks the cluster itself.
    """
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": CONFIGURATION_NAME, "labels": {"app.kubernetes.io/part-of": "edgefaas"}},
        "webhooks": [
            {
                "name": WEBHOOK_NAME,
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Fail",
                "matchPolicy": "Equivalent",
                "timeoutSeconds": timeout_s,
                "namespaceSelector": {"matchExpressions": [{"key": UID_LABEL, "operator": "Exists"}]},
                "rules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["pods"],
                        "scope": "Namespaced",
                    },
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["UPDATE"],
                        "resources": ["pods/ephemeralcontainers"],
                        "scope": "Namespaced",
                    },
                ],
                "clientConfig": {"url": url, "caBundle": base64.b64encode(ca_certificate_pem).decode()},
            }
        ],
    }
