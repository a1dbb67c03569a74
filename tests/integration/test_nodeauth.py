"""Edge-node certification through Parsec (issue 7), what is built so far, on the real service.

    pytest -m lab tests/integration/test_nodeauth.py [--inventory inventories/mylab.py]

The CA's signing key and a node's key are generated inside the real Parsec service of a
SONiC device; a certificate request and a certificate are signed there and checked, and
the device's disk is searched for any private key left in the clear.
"""

from __future__ import annotations

import json
import shlex

import pytest

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
    assert store.user == "parsec" and store.mode & 0o077 == 0
    # Every PEM private key file outside package test data: ours must not exist at all (their
    # keys live in Parsec), and what others keep (the SSH daemon's host keys, K3S's own CA)
    # must be readable by root alone.
    found = device.host.check_output(
        "grep -rlIsE '^-----BEGIN ([A-Z]+ )?PRIVATE KEY-----$' /etc /opt /var/lib /root /home "
        "--exclude-dir=site-packages --exclude-dir=parsec 2>/dev/null || true"
    ).split()
    assert [path for path in found if "edgefaas" in path] == []
    for path in found:  # tried as an unprivileged user: directory modes count too
        assert device.host.run(f"sudo -u nobody test -r {path}").rc != 0, f"{path} is readable beyond root"


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
