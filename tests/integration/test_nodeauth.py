"""Edge-node certification through Parsec (Scenario 2, Demo 1), on the real services of the lab.

    pytest -m lab tests/integration/test_nodeauth.py [--inventory inventories/mylab.py]

First the pieces on the real Parsec service (a CA in Parsec, the challenge flow, no private
key on disk), then what deploys/nodeauth.py runs: the authentication server on the K3S
server and an agent on every K3S agent. A device leaves the cluster and joins again (its
K3S agent stopped, its node deleted, its K3S agent started: K3S registers it as a new
node), and the tests watch what the server does: a device with its certificate is
certified within 5 s, an impostor is removed within 10 s with an Event saying why, a
revoked device is removed, and a server restarted while a device joins certifies it once.
Every test leaves each device certified and in the cluster, as it found it.
"""

from __future__ import annotations

import datetime as dt
import json
import shlex
import time
import uuid

import pytest
import yaml

from tests.integration.conftest import Device, connect
from tests.integration.support import (
    certified_after_join,
    events,
    is_certified,
    kubectl_json,
    node,
    rejoin,
    server_status,
    wait_for,
)

CA_PEM = "/etc/edgefaas/ca.pem"
STATE_DIR = "/var/lib/edgefaas/nodeauth"
SERVER_UNIT = "edgefaas-nodeauth-server"
AGENT_UNIT = "edgefaas-nodeauth-agent"

SCRIPT = """
import datetime as dt, json
from edgefaas.parsec.client import ParsecClient
from edgefaas.nodeauth.certificates import (
    CertificateAuthority, CertificateRejected, certificate_request, check_certificate)
parsec = ParsecClient()
ca = CertificateAuthority(parsec, key="itest-node-ca")
ca_cert = ca.self_signed()
cert = ca.issue(certificate_request(parsec, "itest-node", key="itest-node-key"))
check_certificate(cert, ca_cert, node="itest-node")
tampered = bytearray(cert)
tampered[tampered.index(b"itest-node")] ^= 1
try:
    check_certificate(bytes(tampered), ca_cert)
    rejected = ""
except CertificateRejected as exc:
    rejected = str(exc)
keys = sorted(k.name for k in parsec.list_keys())
for name in ("itest-node-ca", "itest-node-key"):
    parsec.destroy_key(name)
print(json.dumps({"keys": keys, "rejected": rejected, "cert_bytes": len(cert)}))
"""


@pytest.mark.devices("sonic")
def test_a_ca_in_parsec_issues_a_certificate_that_checks_and_a_tampered_one_is_rejected(device):
    python = f"{device.data.get('edgefaas_venv') or '/opt/edgefaas/venv'}/bin/python"
    out = device.host.check_output(f"{python} -c {shlex.quote(SCRIPT)}")
    result = json.loads(out.strip().splitlines()[-1])
    assert {"itest-node-ca", "itest-node-key"} <= set(result["keys"])
    assert result["cert_bytes"] > 300
    assert "signature" in result["rejected"] or "malformed" in result["rejected"]


@pytest.mark.devices("sonic")
def test_no_private_key_is_left_readable_on_disk(device):
    # Parsec keeps its key store under /var/lib/parsec, readable by the service user alone.
    store = device.host.file("/var/lib/parsec")
    assert store.user == "parsec" and store.mode & 0o077 == 0, (
        f"/var/lib/parsec is {store.user}'s with mode {store.mode:o}: parsec's alone, say 700"
    )
    # Every PEM private key file outside package test data: ours must not exist at all (their
    # keys live in Parsec), and what others keep (the SSH daemon's host keys, K3S's own CA)
    # must be readable by root alone.
    found = device.host.check_output(
        "grep -rlIsE '^-----BEGIN ([A-Z]+ )?PRIVATE KEY-----$' /etc /opt /var/lib /root /home "
        "--exclude-dir=site-packages --exclude-dir=parsec 2>/dev/null || true"
    ).split()
    ours = [path for path in found if "edgefaas" in path]
    assert ours == [], f"EdgeFaaS private keys on disk: {ours}"
    with device.host.sudo("nobody"):  # tried as an unprivileged user: directory modes count too
        readable = [path for path in found if device.host.run("test -r %s", path).rc == 0]
    assert readable == [], f"private keys readable beyond root: {readable}"


@pytest.mark.devices("jetson")
def test_parsec_runs_on_jetsons_too_for_their_node_keys(device):
    if not device.data.get("parsec_service"):
        pytest.skip(f"{device.name}: parsec_service is off in the inventory")
    assert device.host.service("parsec").is_running
    assert "wire protocol 1.0" in device.host.check_output("/usr/local/bin/edgefaas parsec ping")


FLOW = """
import json
from edgefaas.parsec.client import ParsecClient
from edgefaas.nodeauth.certificates import CertificateAuthority, certificate_request
from edgefaas.nodeauth import flow
parsec = ParsecClient()
ca = CertificateAuthority(parsec, key="itest-flow-ca")
ca_cert = ca.self_signed()
cert = ca.issue(certificate_request(parsec, "itest-node", key="itest-flow-node"))
challenge = flow.new_challenge("itest-node", flow.server_public_key(parsec))
reply = flow.answer(parsec, challenge, cert, node_key="itest-flow-node")
good = flow.judge(parsec, challenge, reply, ca_cert)
replay = flow.judge(parsec, flow.new_challenge("itest-node", flow.server_public_key(parsec)), reply, ca_cert)
for key in parsec.list_keys():
    if key.name.startswith(("itest-flow", "edgefaas-nodeauth")):
        parsec.destroy_key(key.name)
print(json.dumps({"good": [good.certified, good.reason], "replay": [replay.certified, replay.reason]}))
"""


@pytest.mark.devices("sonic")
def test_the_challenge_flow_runs_on_the_real_parsec(device):
    python = f"{device.data.get('edgefaas_venv') or '/opt/edgefaas/venv'}/bin/python"
    out = device.host.check_output(f"{python} -c {shlex.quote(FLOW)}")
    result = json.loads(out.strip().splitlines()[-1])
    assert result["good"][0] is True, result
    assert result["replay"] == [False, "the challenge came back wrong"]


# -- the deployed services --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def joiner(inventory) -> Device:
    """The device that leaves and joins again: a Jetson, as in Demo 1, else any K3S agent."""
    agents = inventory.get_group("k3s_agent")
    if not agents:
        pytest.skip("the inventory has no K3S agent")
    host = next((h for h in agents if "jetson" in h.groups), agents[0])
    return connect(host.name, host.data, host.groups)


def test_the_authentication_server_runs_on_the_k3s_server_as_its_own_user(server):
    service = server.host.service(SERVER_UNIT)
    assert service.is_running and service.is_enabled, f"{SERVER_UNIT} is not active and enabled"
    user = service.systemd_properties.get("User", "")
    assert user == "edgefaas-nodeauth", f"{SERVER_UNIT} runs as {user or 'root (no User=)'}"
    key = server.host.file("/etc/edgefaas/nodeauth/enrollment.key")
    assert key.user == "root" and key.group == "edgefaas-nodeauth" and key.mode == 0o640, (
        f"enrollment.key is {key.user}:{key.group} {key.mode:o}, not root:edgefaas-nodeauth 640"
    )


@pytest.mark.devices("k3s_agent")
def test_every_agent_holds_a_certificate_from_the_ca_and_runs_its_agent(device):
    agent = device.host.service(AGENT_UNIT)
    assert agent.is_running and agent.is_enabled, f"{AGENT_UNIT} is not active and enabled"
    verified = device.host.check_output(
        f"openssl x509 -inform der -in {STATE_DIR}/ca.der -out /tmp/itest-ca.pem && "
        f"openssl x509 -inform der -in {STATE_DIR}/node.crt -out /tmp/itest-node.pem && "
        "openssl verify -CAfile /tmp/itest-ca.pem /tmp/itest-node.pem; "
        "rm -f /tmp/itest-ca.pem /tmp/itest-node.pem"
    )
    assert verified.endswith(": OK"), f"the node certificate does not check against the CA: {verified}"
    subject = device.host.check_output(f"openssl x509 -inform der -in {STATE_DIR}/node.crt -noout -subject")
    assert subject.endswith(f"CN = {device.name}"), f"the node certificate is for {subject}"
    # The node key is in Parsec: no key file beside the certificate.
    kept = sorted(device.host.file(STATE_DIR).listdir())
    assert kept == ["ca.der", "node.crt"], f"{STATE_DIR} holds {kept}"


def test_every_node_trusts_the_published_ca_and_enrollment_is_https_only(server, inventory):
    """The CA certificate is published at /etc/edgefaas/ca.pem on every K3S node, the same one the
    server certifies with; the enrollment endpoint (where secrets travel) answers HTTPS verified by
    it, and nothing over plain HTTP."""
    ca = server.host.check_output(f"openssl x509 -inform der -in {STATE_DIR}/ca.der -outform pem")
    for host in inventory.get_group("k3s_server") + inventory.get_group("k3s_agent"):
        device = connect(host.name, host.data, host.groups)
        published = device.host.file(CA_PEM)
        assert published.exists and published.mode == 0o644, f"{host.name}: no {CA_PEM} (0644)"
        assert published.content_string.strip() == ca.strip(), f"{host.name}: {CA_PEM} is not the server's CA"
        verified = device.host.run(f"curl -fsS -m 5 --cacert {CA_PEM} https://{server.address}:8472/v1/ca")
        assert verified.rc == 0, f"{host.name}: the server does not verify by {CA_PEM}: {verified.stderr}"
    plain = server.host.run(
        f"curl -sS -m 5 -o /dev/null -w '%{{http_code}}' http://{server.address}:8472/v1/ca"
    )
    assert plain.rc != 0 and plain.stdout in ("", "000"), f"plain HTTP answered {plain.stdout}"


def test_every_agent_node_is_certified_and_the_server_is_exempt(server, inventory):
    nodes = {n["metadata"]["name"]: n for n in kubectl_json(server, "get nodes")["items"]}
    for host in inventory.get_group("k3s_agent"):
        labels = nodes[host.name]["metadata"]["labels"]
        assert labels.get("edgefaas.io/certified") == "true", f"{host.name} is not certified"
        assert not nodes[host.name]["spec"].get("unschedulable"), f"{host.name} is still cordoned"
    assert "edgefaas.io/certified" not in nodes[server.name]["metadata"]["labels"]


@pytest.mark.devices("k3s_agent")
def test_an_agent_answers_the_authentication_server_alone(device):
    # Asked from the machine running the tests, not the server: refused (403), or on SONiC
    # not even reachable, since the ACL opens the port to the server's address alone.
    answer = device.host.backend.run_local(
        f"curl -sS -m 3 -o /dev/null -w '%{{http_code}}' -X POST -d '{{}}' http://{device.address}:8471/v1/challenge"
    )
    if device.data.get("sonic_config_db"):
        assert answer.rc != 0 and answer.stdout in ("", "000")
    else:
        assert answer.stdout == "403"


def test_a_device_that_joins_is_certified_within_5_s(server, joiner):
    since = rejoin(server, joiner)
    latency = certified_after_join(server, joiner.name)
    assert latency <= 5, f"{joiner.name} certified {latency:.1f} s after it joined"
    certified = wait_for(
        lambda: events(server, joiner.name, "Certified", since), 10, "a Certified event", interval=0.25
    )
    assert "certified: serial" in certified[0]["message"]


IMPOSTOR = """
import sys
from pathlib import Path
from edgefaas.nodeauth.agent import Agent, serve
from edgefaas.nodeauth.certificates import CertificateAuthority, certificate_request
from edgefaas.parsec.client import ParsecClient
node, server, path = sys.argv[1:4]
parsec = ParsecClient()
# A certificate for this node's name from a CA the server never trusted, for a key in Parsec.
rogue = CertificateAuthority(parsec, common_name="EdgeFaaS node CA", key="itest-rogue-ca")
open(path, "wb").write(rogue.issue(certificate_request(parsec, node, key="itest-rogue-node")))
serve(Agent(parsec, Path(path), [server], "itest-rogue-node"), "0.0.0.0", 8471).serve_forever()
"""

FORGET_IMPOSTOR = """
from edgefaas.parsec.client import ParsecClient
parsec = ParsecClient()
for key in parsec.list_keys():
    if key.name.startswith(("itest-rogue-", "edgefaas-nodeauth-server-")):
        parsec.destroy_key(key.name)
"""


def test_an_impostor_is_removed_within_10_s_with_an_event_naming_the_reason(server, joiner):
    python = f"{joiner.data.get('edgefaas_venv') or '/opt/edgefaas/venv'}/bin/python"
    joiner.host.check_output(f"systemctl stop {AGENT_UNIT}")
    try:
        joiner.host.check_output(
            f"systemd-run --unit itest-impostor --collect {python} -c {shlex.quote(IMPOSTOR)} "
            f"{joiner.name} {server.address} /run/itest-impostor.crt"
        )
        wait_for(
            lambda: joiner.host.socket("tcp://0.0.0.0:8471").is_listening,
            30,
            "the impostor to listen",
            interval=0.25,
        )
        since = rejoin(server, joiner)
        removed = wait_for(
            lambda: events(server, joiner.name, "CertificationFailed", since),
            60,
            "the impostor's removal",
            interval=0.25,
        )
        assert "certificate rejected" in removed[0]["message"] and "another CA" in removed[0]["message"]
        decision = server_status(server)["nodes"][joiner.name]
        assert decision["action"] == "removed" and decision["after_join_s"] <= 10, decision
        assert node(server, joiner.name) is None
    finally:
        joiner.host.run("systemctl stop itest-impostor")
        joiner.host.run(f"{python} -c {shlex.quote(FORGET_IMPOSTOR)}; rm -f /run/itest-impostor.crt")
        joiner.host.check_output(f"systemctl start {AGENT_UNIT}")
    rejoin(server, joiner)  # the real device comes back
    certified_after_join(server, joiner.name)


def test_a_revoked_device_is_removed_and_comes_back_once_admitted(server, joiner):
    since = dt.datetime.now(dt.UTC).replace(microsecond=0)
    revoked = server.host.check_output(f"/usr/local/bin/edgefaas nodeauth revoke {joiner.name}")
    assert revoked.startswith(f"revoked {joiner.name}: serials ")
    try:
        removal = wait_for(
            lambda: events(server, joiner.name, "CertificationFailed", since),
            30,
            "the revoked node's removal",
            interval=0.25,
        )
        assert "revoked" in removal[0]["message"]
        assert node(server, joiner.name) is None
        # Revoked, it cannot get a new certificate either.
        refused = joiner.host.run(enroll_command(joiner, server))
        assert refused.rc == 1 and "is revoked" in refused.stderr
    finally:
        server.host.check_output(f"/usr/local/bin/edgefaas nodeauth admit {joiner.name}")
    assert joiner.host.check_output(enroll_command(joiner, server)) == "enrolled"  # a new certificate
    rejoin(server, joiner)
    certified_after_join(server, joiner.name)


def enroll_command(device: Device, server: Device) -> str:
    venv = device.data.get("edgefaas_venv") or "/opt/edgefaas/venv"
    return (
        f"runuser -u edgefaas-nodeauth -- {venv}/bin/edgefaas nodeauth enroll "
        f"--server-url https://{server.address}:8472 --secret-file /etc/edgefaas/nodeauth/enrollment.secret "
        f"--node {device.name} --state-dir {STATE_DIR} --ca-file /etc/edgefaas/ca.pem"
    )


def _certifications(server: Device, name: str) -> dict[str, int]:
    """Each Certified Event of node `name` (uid) and how many times it happened (its count)."""
    everything = dt.datetime.min.replace(tzinfo=dt.UTC)
    return {e["metadata"]["uid"]: e.get("count") or 1 for e in events(server, name, "Certified", everything)}


def test_a_server_restarted_while_a_device_joins_certifies_it_once(server, joiner, inventory):
    # Counted against what was there before, not by time: Event times have whole seconds, and
    # the previous test's certification can share this one's first second.
    before = _certifications(server, joiner.name)
    server.host.check_output(f"systemctl stop {SERVER_UNIT}")
    try:
        since = rejoin(server, joiner)
        wait_for(lambda: node(server, joiner.name), 60, f"{joiner.name} to register", interval=0.25)
        assert not is_certified(server, joiner.name)  # nobody certified it meanwhile
    finally:
        server.host.check_output(f"systemctl start {SERVER_UNIT}")
    certified_after_join(server, joiner.name)
    time.sleep(3)  # a few more reviews: it stays certified, and is not certified again
    after = _certifications(server, joiner.name)
    new = sum(count - before.get(uid, 0) for uid, count in after.items())
    assert new == 1, (
        f"{joiner.name} certified {new} times after one join (Events before {before}, after {after})"
    )
    assert not events(server, joiner.name, "CertificationFailed", since)
    for host in inventory.get_group("k3s_agent"):  # nobody else was lost on the way
        assert is_certified(server, host.name), f"{host.name} lost its certification"


def tenant_pod(name: str, uid: int | None, **container_context) -> dict:
    """A pod manifest as a tenant would send it (it need not run: admission is what is tested)."""
    pod_context = {"runAsNonRoot": True} | ({"runAsUser": uid} if uid is not None else {})
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": pod_context,
            "containers": [
                {
                    "name": "client",
                    "image": "edgefaas-test/not-pulled:0",
                    "imagePullPolicy": "Never",
                    "securityContext": {"allowPrivilegeEscalation": False, **container_context},
                }
            ],
        },
    }


def test_a_pod_claiming_another_tenants_uid_is_refused_at_admission(inventory):
    """Issue 18: in a tenant namespace only the tenant's own Parsec uid is admitted.

    Here, not in the Parsec suite: the authentication server serves the webhook and
    deploys/nodeauth.py registers it, after deploys/parsec.py made the tenant namespaces.
    """
    if not inventory.get_group("k3s_server"):
        pytest.skip("no K3S in this inventory")
    import jinja2
    from kubernetes import client as k8s
    from kubernetes.client.rest import ApiException

    from edgefaas.parsec.tenancy import CONFIGURATION_NAME, TENANT_LABEL, UID_LABEL
    from tests.integration.conftest import REPO, server_device
    from tests.integration.support import kubernetes_api

    core, api_client = kubernetes_api(inventory)
    # Registered as deployed: failing closed, on the uid-labelled namespaces alone, so nothing
    # outside them (kube-system above all) waits on it.
    try:
        config = k8s.AdmissionregistrationV1Api(api_client).read_validating_webhook_configuration(
            CONFIGURATION_NAME
        )
    except ApiException as exc:
        pytest.fail(
            f"no webhook configuration {CONFIGURATION_NAME} ({exc.status}): deploys/nodeauth.py registers it"
        )
    (hook,) = config.webhooks
    assert hook.failure_policy == "Fail"
    assert [(e.key, e.operator) for e in hook.namespace_selector.match_expressions] == [(UID_LABEL, "Exists")]
    # The deploy's tenant namespaces carry their uids.
    wanted = server_device(inventory).data.get("parsec_tenants") or {}
    template = jinja2.Template((REPO / "templates/parsec/client-pod.yaml.j2").read_text())
    for namespace, uid in wanted.items():
        assert core.read_namespace(namespace).metadata.labels.get(UID_LABEL) == str(uid), namespace
        # The blueprint's own client Job, as its tenant: its pod is admitted (a dry run leaves nothing).
        job = yaml.safe_load(
            template.render(tenant="t", uid=uid, node="n", image="i", ops=1, namespace=namespace)
        )
        pod_manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client"}}
        pod_manifest["spec"] = job["spec"]["template"]["spec"]
        core.create_namespaced_pod(namespace, pod_manifest, dry_run="All")

    namespace, uid, other = f"edgefaas-test-tenant-{uuid.uuid4().hex[:6]}", 20901, 20902
    labels = {TENANT_LABEL: namespace, UID_LABEL: str(uid)}
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=namespace, labels=labels)))
    try:
        refusals = {
            "another tenant's uid": (tenant_pod("claims-other", other), f"runs as uid {other}"),
            "root": (tenant_pod("claims-root", 0, runAsNonRoot=False), "runs as root"),
            "no runAsUser": (tenant_pod("claims-nothing", None), "sets no runAsUser"),
        }
        for what, (manifest, words) in refusals.items():
            with pytest.raises(ApiException) as refused:
                core.create_namespaced_pod(namespace, manifest)
            assert refused.value.status == 403, (what, refused.value.body)
            message = json.loads(refused.value.body)["message"]
            assert "Parsec tenant isolation" in message and words in message, (what, message)
        admitted = core.create_namespaced_pod(namespace, tenant_pod("own-uid", uid), dry_run="All")
        assert admitted.spec.security_context.run_as_user == uid
        assert core.list_namespaced_pod(namespace).items == []
    finally:
        core.delete_namespace(namespace)
