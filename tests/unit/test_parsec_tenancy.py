"""Parsec tenant isolation at admission: who a pod in a tenant namespace may run as, and the
webhook that says so over HTTPS with a certificate from the Parsec-held CA."""

from __future__ import annotations

import copy
import json
import socket
import ssl
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from edgefaas.nodeauth.admission import serve_admission
from edgefaas.nodeauth.certificates import CertificateAuthority
from edgefaas.nodeauth.tls import ServerTls, server_credentials
from edgefaas.parsec.tenancy import (
    ADMIT_PATH,
    UID_LABEL,
    namespace_uid,
    pod_violations,
    review,
    tenant_problems,
    webhook_configuration,
)

from .parsec_fakes import FakeParsec

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
TENANT = 20001
SAFE = {"runAsNonRoot": True, "allowPrivilegeEscalation": False}


def pod(pod_context=None, **containers) -> dict:
    """A pod; containers given as field=[(name, securityContext), ...]."""
    spec: dict = {"securityContext": pod_context or {}}
    for field, items in containers.items():
        spec[field] = [{"name": name, "image": "x", "securityContext": ctx} for name, ctx in items]
    return {"metadata": {"name": "p", "namespace": "tenant-a"}, "spec": spec}


def own_pod() -> dict:
    return pod(
        {"runAsUser": TENANT, "runAsNonRoot": True}, containers=[("c", {"allowPrivilegeEscalation": False})]
    )


def admission(obj: dict, namespace: str = "tenant-a", kind: str = "Pod") -> dict:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {"uid": "u-1", "kind": {"kind": kind}, "namespace": namespace, "object": obj},
    }


def test_the_tenants_own_pod_is_admitted():
    assert pod_violations(own_pod(), TENANT) == []


def test_a_pod_claiming_another_tenants_uid_is_refused_naming_both_uids():
    claimed = own_pod()
    claimed["spec"]["securityContext"]["runAsUser"] = 20002
    (problem,) = pod_violations(claimed, TENANT)
    assert "container 'c'" in problem and "20002" in problem and "uid 20001" in problem


def test_a_container_overrides_the_pods_uid_and_is_judged_by_its_own():
    sneaky = own_pod()
    sneaky["spec"]["containers"].append({"name": "side", "securityContext": {**SAFE, "runAsUser": 20002}})
    (problem,) = pod_violations(sneaky, TENANT)
    assert "'side'" in problem and "20002" in problem
    # ... and a container that sets the tenant's uid itself is fine under a pod that sets none.
    fine = pod({}, containers=[("c", {**SAFE, "runAsUser": TENANT})])
    assert pod_violations(fine, TENANT) == []


@pytest.mark.parametrize(
    ("context", "words"),
    [
        ({"allowPrivilegeEscalation": False}, "sets no runAsUser"),
        ({"allowPrivilegeEscalation": False, "runAsUser": 0}, "runs as root"),
        (
            {"allowPrivilegeEscalation": False, "runAsUser": TENANT, "runAsNonRoot": False},
            "runAsNonRoot false",
        ),
        ({"allowPrivilegeEscalation": False, "runAsUser": TENANT, "privileged": True}, "is privileged"),
        ({"runAsUser": TENANT}, "allowPrivilegeEscalation"),
    ],
)
def test_root_no_uid_and_ways_to_change_uid_are_refused(context, words):
    problems = pod_violations(pod({}, containers=[("c", context)]), TENANT)
    assert len(problems) == 1 and words in problems[0], problems


@pytest.mark.parametrize("field", ["initContainers", "ephemeralContainers"])
def test_init_and_ephemeral_containers_are_checked_too(field):
    sneaky = own_pod()
    sneaky["spec"][field] = [{"name": "x", "securityContext": {**SAFE, "runAsUser": 0}}]
    (problem,) = pod_violations(sneaky, TENANT)
    assert problem.startswith(("init container 'x'", "ephemeral container 'x'")) and "root" in problem


def test_namespace_labels_give_the_uid_and_a_bad_label_is_no_free_pass():
    assert namespace_uid({UID_LABEL: "20001"}) == 20001
    assert namespace_uid({"other": "x"}) is None and namespace_uid(None) is None
    for bad in ("0", "-5", "alice", ""):
        with pytest.raises(ValueError, match=UID_LABEL):
            namespace_uid({UID_LABEL: bad})


def test_review_answers_with_the_request_uid_and_the_reason():
    refused = copy.deepcopy(own_pod())
    refused["spec"]["securityContext"]["runAsUser"] = 20002
    answer = review(admission(refused), lambda ns: TENANT)
    response = answer["response"]
    assert answer["kind"] == "AdmissionReview" and response["uid"] == "u-1"
    assert response["allowed"] is False and response["status"]["code"] == 403
    assert "Parsec tenant isolation (namespace tenant-a)" in response["status"]["message"]
    assert review(admission(own_pod()), lambda ns: TENANT)["response"] == {"uid": "u-1", "allowed": True}


def test_review_leaves_other_namespaces_and_kinds_alone_and_refuses_on_a_bad_label():
    root_pod = pod({"runAsUser": 0}, containers=[("c", {})])
    assert review(admission(root_pod), lambda ns: None)["response"]["allowed"] is True
    assert review(admission({}, kind="Service"), lambda ns: TENANT)["response"]["allowed"] is True

    def bad_label(ns):
        raise ValueError("namespace label edgefaas.io/parsec-uid='x' is not a non-root uid")

    response = review(admission(own_pod()), bad_label)["response"]
    assert response["allowed"] is False and "parsec-uid" in response["status"]["message"]


@pytest.mark.parametrize("body", [{}, {"request": {}}, [], {"request": {"uid": 5}}])
def test_review_rejects_what_is_no_admission_review(body):
    with pytest.raises(ValueError, match="AdmissionReview"):
        review(body, lambda ns: TENANT)


def test_the_webhook_configuration_fails_closed_on_tenant_namespaces_only():
    (hook,) = webhook_configuration(b"PEM", "https://127.0.0.1:8473/v1/admit")["webhooks"]
    assert hook["failurePolicy"] == "Fail" and hook["sideEffects"] == "None"
    assert hook["namespaceSelector"] == {"matchExpressions": [{"key": UID_LABEL, "operator": "Exists"}]}
    resources = {(r["operations"][0], r["resources"][0]) for r in hook["rules"]}
    assert resources == {("CREATE", "pods"), ("UPDATE", "pods/ephemeralcontainers")}
    assert hook["clientConfig"]["caBundle"] == "UEVN"


@pytest.fixture
def webhook(tmp_path):
    """The webhook served over HTTPS with a key certified by a Parsec-held CA; (url, CA PEM)."""
    ca = CertificateAuthority(FakeParsec())
    ca_pem = x509.load_der_x509_certificate(ca.self_signed()).public_bytes(serialization.Encoding.PEM)
    tls = ServerTls(ca, ["127.0.0.1"])
    assert not list(tmp_path.rglob("*")), "the webhook's key is held in memory, never written"
    server = serve_admission(lambda ns: TENANT if ns == "tenant-a" else None, "127.0.0.1", 0, tls)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}", ca_pem, tls
    server.shutdown()
    server.server_close()


def post(url: str, ca_pem: bytes, body: bytes) -> tuple[int, dict]:
    context = ssl.create_default_context(cadata=ca_pem.decode())
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
    )
    try:
        with opener.open(request, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_webhook_speaks_https_verified_by_the_ca_and_refuses_with_the_reason(webhook):
    url, ca_pem, _ = webhook
    claimed = own_pod()
    claimed["spec"]["securityContext"]["runAsUser"] = 20002
    status, answer = post(url + ADMIT_PATH, ca_pem, json.dumps(admission(claimed)).encode())
    assert status == 200 and answer["response"]["allowed"] is False
    assert "20002" in answer["response"]["status"]["message"]
    status, answer = post(url + ADMIT_PATH, ca_pem, json.dumps(admission(own_pod())).encode())
    assert status == 200 and answer["response"]["allowed"] is True
    assert post(url + ADMIT_PATH, ca_pem, b"not json")[0] == 400
    assert post(url + "/elsewhere", ca_pem, b"{}")[0] == 404


def test_a_client_that_does_not_trust_the_ca_is_not_served(webhook):
    url, _, _ = webhook
    other = CertificateAuthority(FakeParsec())
    other_pem = x509.load_der_x509_certificate(other.self_signed()).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        post(url + ADMIT_PATH, other_pem, b"{}")
    # ... and the failed handshake leaves the server serving the next client.
    url_ok, ca_pem, _ = webhook
    assert post(url_ok + ADMIT_PATH, ca_pem, json.dumps(admission(own_pod())).encode())[0] == 200


def test_the_server_certificate_names_its_address_for_tls_server_auth(tmp_path):
    ca = CertificateAuthority(FakeParsec())
    certificate, _ = server_credentials(ca, ["127.0.0.1", "nodeauth.local"])
    cert = x509.load_pem_x509_certificate(certificate)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert names.get_values_for_type(x509.DNSName) == ["nodeauth.local"]
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [x509.ExtendedKeyUsageOID.SERVER_AUTH]
    assert cert.issuer == x509.load_der_x509_certificate(ca.self_signed()).subject


def test_the_tenant_table_refuses_shared_root_and_malformed_entries():
    assert tenant_problems({"edgefaas-tenant-a": 20001, "edgefaas-tenant-b": 20002}) == []
    problems = tenant_problems({"a": 20001, "b": 20001, "c": 0, "Bad_Name": 5, "d": True})
    assert any("share uid 20001" in p for p in problems)
    assert any("c: uid 0" in p for p in problems) and any("d: uid True" in p for p in problems)
    assert any("'Bad_Name' is not a Kubernetes namespace name" in p for p in problems)


def test_the_blueprints_own_client_pod_passes_as_its_tenant_and_no_other():
    import jinja2
    import yaml

    template = jinja2.Template((REPO / "templates/parsec/client-pod.yaml.j2").read_text())
    job = yaml.safe_load(template.render(tenant="a", uid=TENANT, node="n", image="i", ops=1, namespace="ns"))
    client = {"spec": job["spec"]["template"]["spec"]}
    assert pod_violations(client, TENANT) == []
    assert pod_violations(client, TENANT + 1) != []


def served_certificate(url: str, ca_pem: bytes) -> x509.Certificate:
    host, port = url.removeprefix("https://").split(":")
    context = ssl.create_default_context(cadata=ca_pem.decode())
    with (
        socket.create_connection((host, int(port)), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def test_a_renewed_certificate_is_served_to_the_next_connection_without_a_restart(webhook):
    url, ca_pem, tls = webhook
    before = served_certificate(url, ca_pem)
    tls.renew()
    after = served_certificate(url, ca_pem)
    assert after.serial_number != before.serial_number and after.public_key() != before.public_key()
    assert post(url + ADMIT_PATH, ca_pem, json.dumps(admission(own_pod())).encode())[0] == 200


def test_a_failed_renewal_keeps_the_served_certificate_and_is_retried(webhook, monkeypatch):
    import edgefaas.nodeauth.tls as tls_module

    url, ca_pem, tls = webhook
    before = served_certificate(url, ca_pem)
    calls = []
    stop = threading.Event()

    def failing_then_stop() -> None:
        calls.append(1)
        if len(calls) == 2:
            stop.set()
        raise ConnectionError("Parsec restarting")

    monkeypatch.setattr(tls_module, "RETRY_SECONDS", 0.01)
    monkeypatch.setattr(tls, "renew", failing_then_stop)
    tls.keep_renewed(stop, every_s=0.01)
    assert len(calls) == 2
    assert served_certificate(url, ca_pem).serial_number == before.serial_number
