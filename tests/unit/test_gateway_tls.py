"""The gateway on HTTPS with a certificate from the blueprint's CA: how a host gets one for the
names it serves at (its key never sent), when it is renewed, and a gateway that answers HTTPS
verified by the CA and nothing in plain HTTP."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
import time

import httpx
import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from edgefaas.gateway.sync import Gateway
from edgefaas.gateway.tls import CertificateReloader, server_context
from edgefaas.nodeauth.certificates import CertificateAuthority, CertificateRejected
from edgefaas.nodeauth.enrollment import EnrollmentRefused, enrollment_secret
from edgefaas.nodeauth.server_certificates import (
    certificate_names,
    ensure_server_certificate,
    renewal_reason,
    server_secret,
)
from edgefaas.nodeauth.service import NodeAuthService, serve
from edgefaas.nodeauth.tls import ServerTls, client_context, pem_certificate
from edgefaas.sonic.announce import GatewayProbe

from .live_gateway import free_port
from .parsec_fakes import FakeParsecWithRsa
from .test_nodeauth_services import FakeNodes, running

pytestmark = pytest.mark.unit

KEY = b"k" * 32
NAMES = ["10.77.0.11", "sonic-1", "10.99.0.1", "10.99.1.0"]  # its address, name, anycast, a pool address


@pytest.fixture
def authority(tmp_path):
    """The authentication server on HTTPS (its CA in a fake Parsec): (url, CA DER, client context)."""
    svc = NodeAuthService(
        FakeParsecWithRsa(), FakeNodes([]), tmp_path / "server", KEY, set(), 0, recheck=3600
    )
    tls = ServerTls(svc.ca, ["127.0.0.1"])
    port = running(serve(svc, "127.0.0.1", 0, tls.context))
    return f"https://127.0.0.1:{port}", svc.ca_certificate, client_context(svc.ca_certificate)


def issue(authority, tmp_path, names=NAMES, secret=None):
    url, ca, context = authority
    secret = secret or server_secret(KEY, "sonic-1")
    cert, key = tmp_path / "gw" / "tls.crt", tmp_path / "gw" / "tls.key"
    return ensure_server_certificate(url, "sonic-1", secret, names, key, cert, ca, context), cert, key


def test_a_gateway_gets_a_certificate_for_every_name_it_serves_at_and_keeps_its_key(authority, tmp_path):
    reason, cert_path, key_path = issue(authority, tmp_path)
    assert reason == "no certificate yet"
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert sorted(certificate_names(cert)) == sorted(NAMES)
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [x509.ExtendedKeyUsageOID.SERVER_AUTH]
    assert oct(key_path.stat().st_mode & 0o777) == "0o600"
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    assert key.public_key().public_bytes(*spki) == cert.public_key().public_bytes(*spki)
    first = cert_path.read_bytes()
    assert issue(authority, tmp_path)[0] is None and cert_path.read_bytes() == first  # a re-run keeps it
    # A new pool address: a new certificate, for the same key.
    reason, _, _ = issue(authority, tmp_path, [*NAMES, "10.99.1.1"])
    assert reason is not None and "not" in reason and cert_path.read_bytes() != first
    assert key_path.read_bytes() == key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def test_only_the_host_s_server_secret_gets_a_certificate(authority, tmp_path):
    node_secret = enrollment_secret(KEY, "sonic-1")  # a node's enrollment secret is not a server's
    with pytest.raises(EnrollmentRefused, match="403: wrong server-certificate secret"):
        issue(authority, tmp_path, secret=node_secret)
    with pytest.raises(EnrollmentRefused, match="403: wrong server-certificate secret"):
        issue(authority, tmp_path, secret=server_secret(KEY, "sonic-2"))
    assert not (tmp_path / "gw" / "tls.crt").exists()


def _held(ca: CertificateAuthority, names, days: float, now: dt.datetime):
    key = ec.generate_private_key(ec.SECP256R1())
    cert = pem_certificate(ca.issue_server(key.public_key(), names, days=days, now=now))
    pem_key = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert, pem_key


def test_renewal_comes_in_the_last_third_of_the_life_and_for_other_names_keys_or_cas():
    ca = CertificateAuthority(FakeParsecWithRsa())
    ca_der = ca.self_signed()
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    cert, key = _held(ca, NAMES, 90, start)
    assert renewal_reason(cert, key, list(reversed(NAMES)), ca_der, start + dt.timedelta(days=1)) is None
    assert renewal_reason(cert, key, NAMES, ca_der, start + dt.timedelta(days=59)) is None
    assert "expires" in renewal_reason(cert, key, NAMES, ca_der, start + dt.timedelta(days=61))
    assert "expired" in renewal_reason(cert, key, NAMES, ca_der, start + dt.timedelta(days=91))
    assert "names" in renewal_reason(cert, key, NAMES[:2], ca_der, start + dt.timedelta(days=1))
    _, other_key = _held(ca, NAMES, 90, start)
    assert "not for the key" in renewal_reason(cert, other_key, NAMES, ca_der, start + dt.timedelta(days=1))
    other_ca = CertificateAuthority(FakeParsecWithRsa()).self_signed()
    assert "CA" in renewal_reason(cert, key, NAMES, other_ca, start + dt.timedelta(days=1))
    assert renewal_reason(None, key, NAMES, ca_der) == "no certificate yet"


def test_the_ca_refuses_a_request_whose_signature_does_not_prove_the_key():
    ca = CertificateAuthority(FakeParsecWithRsa())
    with pytest.raises(CertificateRejected, match="malformed"):
        ca.issue_server_request(b"not a request", NAMES)


@pytest.fixture
def credentials(tmp_path):
    """A CA and a gateway key and certificate from it for 127.0.0.1: (CA DER, cert path, key path)."""
    ca = CertificateAuthority(FakeParsecWithRsa())
    cert, key = _held(ca, ["127.0.0.1", "localhost"], 90, dt.datetime.now(dt.UTC))
    (tmp_path / "tls.crt").write_bytes(cert)
    (tmp_path / "tls.key").write_bytes(key)
    os.chmod(tmp_path / "tls.key", 0o600)
    return ca, tmp_path / "tls.crt", tmp_path / "tls.key"


CALLER = """
def handle(event, context):
    return {"below": context.call("Callee", json={"n": 1}).json()}
"""
CALLEE = """
def handle(event, context):
    return {"n": event.json()["n"] + 1}
"""


def test_the_gateway_serves_https_verified_by_the_ca_and_nothing_in_plain_http(tmp_path, credentials):
    ca, cert, key = credentials
    port = free_port()
    (tmp_path / "ca.pem").write_bytes(pem_certificate(ca.self_signed()))
    env = {**os.environ, "EDGEFAAS_ADMIN_PASSWORD": "s3cret-admin"}
    command = [sys.executable, "-c", "from edgefaas.cli import main; main()", "gateway", "--backend", "local"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--data-dir", str(tmp_path / "data")]
    command += ["--tls-cert", str(cert), "--tls-key", str(key), "--log-level", "warning"]
    # Functions get the CA, and verify the gateway by it when they call each other.
    command += ["--ca-file", str(tmp_path / "ca.pem")]
    gateway = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    trusting = client_context(ca.self_signed())
    try:
        deadline, answer = time.monotonic() + 30, None
        while time.monotonic() < deadline and gateway.poll() is None:
            try:
                answer = httpx.get(f"https://127.0.0.1:{port}/healthz", verify=trusting, trust_env=False)
                break
            except httpx.ConnectError:
                time.sleep(0.2)
        output = gateway.stdout.read(4000) if gateway.poll() is not None else b""
        assert answer is not None, f"the gateway did not answer HTTPS: {output!r}"
        assert answer.status_code == 200
        admin = httpx.get(
            f"https://127.0.0.1:{port}/system/functions",
            auth=("admin", "s3cret-admin"),
            verify=trusting,
            trust_env=False,
        )
        assert admin.status_code == 200
        with httpx.Client(
            base_url=f"https://127.0.0.1:{port}", auth=("admin", "s3cret-admin"), verify=trusting, timeout=60
        ) as client:
            for name, code in (("Callee", CALLEE), ("Caller", CALLER)):
                deployed = client.post(
                    "/system/functions", json={"service": name, "code": code, "public": True}
                )
                assert deployed.status_code in (200, 202), deployed.text
            chained = client.post("/function/Caller", json={})
            assert chained.status_code == 200, chained.text
            assert chained.json() == {"below": {"n": 2}}
        # The switch's own clients verify the gateway by the CA: the announcer's health probe...
        assert GatewayProbe(port, 5.0, ca_file=str(tmp_path / "ca.pem")).healthy() == (True, "")
        (tmp_path / "other.pem").write_bytes(
            pem_certificate(CertificateAuthority(FakeParsecWithRsa()).self_signed())
        )
        healthy, why = GatewayProbe(port, 5.0, ca_file=str(tmp_path / "other.pem")).healthy()
        assert not healthy and "CERTIFICATE_VERIFY_FAILED" in why
        # ...and the deploy's check of the functions through the admin API.
        (tmp_path / "password").write_text("s3cret-admin\n")
        wanted = Gateway(f"https://127.0.0.1:{port}", tmp_path / "password", tmp_path / "ca.pem")
        assert wanted.request("GET", "/system/functions")[0] == 200
        # Plain HTTP: no answer at all, so a password sent that way is never read.
        with pytest.raises(httpx.TransportError):
            httpx.get(
                f"http://127.0.0.1:{port}/system/functions", auth=("admin", "s3cret-admin"), trust_env=False
            )
        # A client that trusts another CA refuses the gateway.
        other = client_context(CertificateAuthority(FakeParsecWithRsa()).self_signed())
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"https://127.0.0.1:{port}/healthz", verify=other, trust_env=False)
        # SIGTERM with a keep-alive client idle on it: the gateway stops as soon as its calls are
        # done, not after the 30 s a TLS connection waits for the peer's close_notify (systemd's
        # stop timeout, which would end it with SIGKILL).
        with httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=trusting, trust_env=False) as idle:
            assert idle.get("/healthz").status_code == 200
            gateway.terminate()
            try:
                gateway.wait(20)
            except subprocess.TimeoutExpired:
                pytest.fail("the gateway on TLS did not stop within 20 s of SIGTERM with an idle client")
    finally:
        if gateway.poll() is None:
            gateway.kill()
        gateway.wait(15)


def test_a_ca_file_that_holds_no_certificate_is_refused_naming_it(tmp_path, credentials):
    from click.testing import CliRunner

    from edgefaas.cli import main

    _, cert, key = credentials
    (tmp_path / "empty.pem").write_text("")
    for bad in (tmp_path / "empty.pem", tmp_path / "absent.pem"):
        result = CliRunner().invoke(
            main,
            [
                "gateway",
                "--backend",
                "local",
                "--tls-cert",
                str(cert),
                "--tls-key",
                str(key),
                "--ca-file",
                str(bad),
            ],
        )
        assert result.exit_code != 0 and str(bad) in result.output and "--ca-file" in result.output


def test_certificate_check_says_what_the_deploy_would_renew_without_asking_anyone(tmp_path, credentials):
    from click.testing import CliRunner

    from edgefaas.cli import main

    ca, cert, key = credentials
    (tmp_path / "ca.pem").write_bytes(pem_certificate(ca.self_signed()))
    base = ["gateway", "certificate", "--check", "--ca-file", str(tmp_path / "ca.pem"), "--key", str(key)]
    held = CliRunner().invoke(
        main, [*base, "--cert", str(cert), "--name", "127.0.0.1", "--name", "localhost"]
    )
    assert held.exit_code == 0 and held.output.strip() == "current"
    more = CliRunner().invoke(
        main, [*base, "--cert", str(cert), "--name", "127.0.0.1", "--name", "10.255.1.9"]
    )
    assert more.exit_code == 0 and more.output.startswith("renew: it names")
    none = CliRunner().invoke(main, [*base, "--cert", str(tmp_path / "no.crt"), "--name", "127.0.0.1"])
    assert none.output.strip() == "renew: no certificate yet"
    # Asking for one needs the server, the secret and the host: refused naming what is missing.
    ask = CliRunner().invoke(main, [*base[:2], *base[3:], "--cert", str(cert), "--name", "127.0.0.1"])
    assert ask.exit_code != 0 and "--server-url, --secret-file, --host needed" in ask.output


def test_half_the_tls_options_is_refused_with_the_reason(tmp_path, credentials):
    from click.testing import CliRunner

    from edgefaas.cli import main

    _, cert, _ = credentials
    result = CliRunner().invoke(main, ["gateway", "--backend", "local", "--tls-cert", str(cert)])
    assert result.exit_code != 0 and "--tls-cert and --tls-key go together" in result.output
    result = CliRunner().invoke(
        main, ["gateway", "--backend", "local", "--tls-cert", str(cert), "--tls-key", str(tmp_path / "none")]
    )
    assert result.exit_code != 0 and "cannot serve HTTPS" in result.output


def _served_serial(port: int, ca_der: bytes) -> int:
    import socket

    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        client_context(ca_der).wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)).serial_number


def test_a_renewed_certificate_is_served_to_new_connections_without_a_restart(tmp_path, credentials):
    ca, cert, key = credentials
    context = server_context(cert, key)
    reloader = CertificateReloader(context, cert, key)
    port = free_port()

    async def app(scope, receive, send):  # the TLS layer is what is tested; any ASGI app serves
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})

    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    config.load()
    config.ssl = context
    server = uvicorn.Server(config)
    threading.Thread(target=server.run, daemon=True).start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        ca_der = ca.self_signed()
        before = _served_serial(port, ca_der)
        assert not reloader.check()  # nothing changed
        renewed, renewed_key = _held(ca, ["127.0.0.1"], 90, dt.datetime.now(dt.UTC))
        key.write_bytes(renewed_key)
        (tmp_path / "new.crt").write_bytes(renewed)
        os.replace(tmp_path / "new.crt", cert)  # as the renewal writes it
        assert reloader.check()
        after = _served_serial(port, ca_der)
        assert after != before
        assert after == x509.load_pem_x509_certificate(renewed).serial_number
    finally:
        server.should_exit = True
