"""Admitting, enrolling and revoking devices, and the running server's endpoint and review loop."""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.error
import urllib.request

import pytest

from edgefaas.nodeauth.agent import Agent
from edgefaas.nodeauth.agent import serve as serve_agent
from edgefaas.nodeauth.certificates import NODE_KEY, CertificateAuthority, certificate_request
from edgefaas.nodeauth.enrollment import (
    CERTIFICATE_FILE,
    Enroller,
    EnrollmentRefused,
    Records,
    bootstrap_ca,
    enroll,
    enrollment_secret,
    fetch_ca,
    load_or_make_ca_certificate,
)
from edgefaas.nodeauth.marks import CERTIFIED_LABEL
from edgefaas.nodeauth.server import Node, ask_agent
from edgefaas.nodeauth.service import NodeAuthService, serve
from edgefaas.nodeauth.tls import ServerTls, client_context

from .parsec_fakes import FakeParsecWithRsa
from .test_nodeauth_services import FakeNodes, running

KEY = b"k" * 32


@pytest.fixture
def enroller(tmp_path):
    parsec = FakeParsecWithRsa()
    ca = CertificateAuthority(parsec)
    records = Records(tmp_path)
    return Enroller(ca, load_or_make_ca_certificate(ca, tmp_path), KEY, records), records


def request_for(node: str) -> bytes:
    return certificate_request(FakeParsecWithRsa(), node)


def test_a_secret_admits_its_own_node_only():
    assert enrollment_secret(KEY, "jetson-1") != enrollment_secret(KEY, "jetson-2")
    assert enrollment_secret(KEY, "jetson-1") != enrollment_secret(b"x" * 32, "jetson-1")


def test_enrollment_issues_a_certificate_for_the_named_node_and_records_it(enroller):
    issuing, records = enroller
    from cryptography import x509

    cert = x509.load_der_x509_certificate(
        issuing.enroll("jetson-1", request_for("jetson-1"), enrollment_secret(KEY, "jetson-1"))
    )
    assert cert.subject.rfc4514_string().startswith("CN=jetson-1")
    assert records.issued() == {"jetson-1": [f"{cert.serial_number:x}"]}


@pytest.mark.parametrize(
    ("node", "requested", "secret_for", "reason"),
    [
        ("jetson-1", "jetson-1", "jetson-2", "wrong enrollment secret"),  # another node's secret
        ("jetson-1", "sonic-1", "jetson-1", "names ['sonic-1']"),  # a request for another name
    ],
)
def test_enrollment_is_refused_with_the_reason(enroller, node, requested, secret_for, reason):
    issuing, records = enroller
    with pytest.raises(EnrollmentRefused, match=reason.replace("[", r"\[")):
        issuing.enroll(node, request_for(requested), enrollment_secret(KEY, secret_for))
    assert records.issued() == {}


def test_a_revoked_node_cannot_enroll_until_admitted_and_its_old_serials_stay_revoked(enroller):
    issuing, records = enroller
    secret = enrollment_secret(KEY, "jetson-1")
    issuing.enroll("jetson-1", request_for("jetson-1"), secret)
    revoked = records.revoke("jetson-1")
    assert len(revoked) == 1 and {int(revoked[0], 16)} == records.revocations().serials
    with pytest.raises(EnrollmentRefused, match="revoked"):
        issuing.enroll("jetson-1", request_for("jetson-1"), secret)
    assert records.admit("jetson-1") and not records.admit("jetson-1")
    issuing.enroll("jetson-1", request_for("jetson-1"), secret)
    assert {int(revoked[0], 16)} == records.revocations().serials


def test_the_ca_certificate_is_kept_and_remade_only_for_a_new_ca_key(tmp_path):
    parsec = FakeParsecWithRsa()
    first = load_or_make_ca_certificate(CertificateAuthority(parsec), tmp_path)
    assert load_or_make_ca_certificate(CertificateAuthority(parsec), tmp_path) == first
    parsec.destroy_key("edgefaas-node-ca")  # Parsec's store wiped: a new CA key
    assert load_or_make_ca_certificate(CertificateAuthority(parsec), tmp_path) != first


@pytest.fixture
def service(tmp_path):
    nodes = FakeNodes([])
    svc = NodeAuthService(
        FakeParsecWithRsa(), nodes, tmp_path / "server", KEY, {"sonic-1"}, 0, interval=0.05, recheck=3600
    )
    tls = ServerTls(svc.ca, ["127.0.0.1"])
    port = running(serve(svc, "127.0.0.1", 0, tls.context))
    return svc, nodes, f"https://127.0.0.1:{port}"


def trusting(svc: NodeAuthService):
    """A client context that trusts the service's CA alone."""
    return client_context(svc.ca_certificate)


def test_an_agent_enrolls_over_https_once_and_again_only_when_its_key_changes(tmp_path, service):
    svc, _, url = service
    node_parsec, context = FakeParsecWithRsa(), trusting(svc)
    state = tmp_path / "agent"
    state.mkdir()
    secret = enrollment_secret(KEY, "jetson-1")
    assert enroll(node_parsec, url, "jetson-1", secret, state, context) is True
    assert enroll(node_parsec, url, "jetson-1", secret, state, context) is False  # a re-run: nothing to do
    assert enroll(FakeParsecWithRsa(), url, "jetson-1", secret, state, context) is True  # Parsec store wiped
    svc.records.revoke("jetson-1")
    with pytest.raises(EnrollmentRefused, match="revoked"):
        enroll(node_parsec, url, "jetson-1", secret, state, context)
    svc.records.admit("jetson-1")  # readmitted: its revoked certificate is replaced
    assert enroll(node_parsec, url, "jetson-1", secret, state, context) is True
    with pytest.raises(EnrollmentRefused, match="403: wrong enrollment secret"):
        enroll(FakeParsecWithRsa(), url, "jetson-2", secret, tmp_path, context)


def test_the_secret_never_goes_to_a_server_the_ca_did_not_certify(tmp_path, service):
    _, _, url = service
    other = client_context(CertificateAuthority(FakeParsecWithRsa()).self_signed())
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        enroll(FakeParsecWithRsa(), url, "jetson-1", enrollment_secret(KEY, "jetson-1"), tmp_path, other)
    assert not (tmp_path / CERTIFICATE_FILE).exists()


def test_plain_http_gets_no_answer_from_the_enrollment_endpoint(service):
    _, _, url = service
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(url.replace("https://", "http://") + "/v1/ca", timeout=5)


def test_a_new_device_trusts_the_ca_only_with_the_proof_its_secret_checks(service):
    svc, _, url = service
    assert bootstrap_ca(url, "jetson-1", enrollment_secret(KEY, "jetson-1")) == svc.ca_certificate
    # Another enrollment key (not our server): the CA it sends is not trusted.
    with pytest.raises(EnrollmentRefused, match="no valid proof"):
        bootstrap_ca(url, "jetson-1", enrollment_secret(b"x" * 32, "jetson-1"))
    with pytest.raises(EnrollmentRefused, match="no valid proof"):
        bootstrap_ca(url, "jetson-2", enrollment_secret(KEY, "jetson-1"))  # another node's secret
    # What it trusts then verifies the server: the CA's own certificate names no server.
    assert fetch_ca(url, client_context(svc.ca_certificate))[0] == svc.ca_certificate


def post(url: str, body: bytes, context=None) -> tuple[int, dict]:
    request = urllib.request.Request(f"{url}/v1/enroll", data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b"not json", 400, "bad enrollment"),
        (b"[1]", 400, "JSON object"),
        (b'{"node": "jetson-1"}', 400, "non-empty strings"),
        (b'{"node": "jetson-1", "secret": "s", "request": "%%"}', 400, "bad enrollment"),
        (b'{"node": "jetson-1", "secret": "s", "request": "AAAA"}', 403, "wrong enrollment secret"),
        (b"x" * 70_000, 413, "Content-Length"),
    ],
)
def test_bad_enrollments_get_a_4xx_that_says_why(service, body, status, words):
    got, answer = post(service[2], body, trusting(service[0]))
    assert got == status and words in answer["error"]


def test_the_ca_endpoint_serves_the_certificate_agents_check_against(service):
    svc, _, url = service
    with urllib.request.urlopen(f"{url}/v1/ca", timeout=5, context=trusting(svc)) as reply:
        assert base64.b64decode(json.loads(reply.read())["certificate"]) == svc.ca_certificate


def test_the_loop_certifies_a_new_node_and_removes_it_as_soon_as_it_is_revoked(tmp_path, service):
    svc, nodes, url = service
    node_parsec, state = FakeParsecWithRsa(), tmp_path / "agent"
    state.mkdir()
    enroll(node_parsec, url, "jetson-1", enrollment_secret(KEY, "jetson-1"), state, trusting(svc))
    agent = running(serve_agent(Agent(node_parsec, state / CERTIFICATE_FILE, (), NODE_KEY), "127.0.0.1", 0))
    svc.certifier.ask = ask_agent(agent)
    stop = threading.Event()
    threading.Thread(target=svc.run, args=(stop,), daemon=True).start()
    try:
        nodes.current["jetson-1"] = Node("jetson-1", "127.0.0.1", {})  # the node joins
        assert wait_for(lambda: nodes.current["jetson-1"].labels.get(CERTIFIED_LABEL) == "true")
        assert svc.status()["nodes"]["jetson-1"]["action"] == "certified"
        svc.records.revoke("jetson-1")  # recheck is an hour away: the new list triggers a review
        assert wait_for(lambda: "jetson-1" in nodes.removed)
        assert "revoked" in nodes.removed["jetson-1"]
    finally:
        stop.set()


def test_the_loop_survives_a_cluster_that_fails(service):
    svc, nodes, _ = service
    failures = 0

    def broken() -> list[Node]:
        nonlocal failures
        failures += 1
        raise ConnectionError("the Kubernetes API is restarting")

    nodes.nodes = broken
    stop = threading.Event()
    thread = threading.Thread(target=svc.run, args=(stop,), daemon=True)
    thread.start()
    assert wait_for(lambda: failures >= 3)  # it kept trying
    stop.set()
    thread.join(5)
    assert not thread.is_alive()


def wait_for(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_concurrent_enrollments_each_have_their_serial_recorded(enroller):
    issuing, records = enroller
    nodes = [f"jetson-{i}" for i in range(16)]
    requests = {node: request_for(node) for node in nodes}
    start = threading.Barrier(len(nodes))

    def enroll_one(node: str) -> None:
        start.wait()
        issuing.enroll(node, requests[node], enrollment_secret(KEY, node))

    threads = [threading.Thread(target=enroll_one, args=(node,)) for node in nodes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Revoking needs every serial: none may be lost to a concurrent rewrite of the record.
    assert sorted(records.issued()) == sorted(nodes)
