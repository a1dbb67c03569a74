"""Node certificates from a CA whose key lives in Parsec: issued, checked, and refused when wrong."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess

import pytest
from cryptography import x509

from edgefaas.nodeauth.certificates import (
    CertificateAuthority,
    CertificateRejected,
    certificate_request,
    check_certificate,
)
from edgefaas.parsec.der import pem

from .parsec_fakes import FakeParsec

pytestmark = pytest.mark.unit
NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def ca() -> CertificateAuthority:
    return CertificateAuthority(FakeParsec())


def node_certificate(ca: CertificateAuthority, name: str = "jetson-1", **kw) -> bytes:
    return ca.issue(certificate_request(FakeParsec(), name), now=NOW, **kw)


def test_the_ca_certificate_is_a_self_signed_ca(ca):
    cert = x509.load_der_x509_certificate(ca.self_signed(now=NOW))
    assert cert.issuer == cert.subject
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert list(ca.parsec.keys) == ["edgefaas-node-ca"]  # the only key, made in "Parsec"


def test_a_node_certificate_from_a_request_passes_the_check(ca):
    cert = check_certificate(node_certificate(ca), ca.self_signed(now=NOW), now=NOW, node="jetson-1")
    assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "jetson-1"
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False


@pytest.mark.skipif(not shutil.which("openssl"), reason="no openssl to cross-check with")
def test_openssl_verifies_the_chain(ca, tmp_path):
    (tmp_path / "ca.pem").write_text(pem(ca.self_signed(), "CERTIFICATE"))
    node = ca.issue(certificate_request(FakeParsec(), "sonic-2"))
    (tmp_path / "node.pem").write_text(pem(node, "CERTIFICATE"))
    done = subprocess.run(
        ["openssl", "verify", "-CAfile", str(tmp_path / "ca.pem"), str(tmp_path / "node.pem")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_tampered_certificate_is_rejected(ca):
    cert = bytearray(node_certificate(ca))
    cert[cert.index(b"jetson-1")] ^= 0x01  # the name, inside the signed part
    with pytest.raises(CertificateRejected, match=r"signature|malformed"):
        check_certificate(bytes(cert), ca.self_signed(now=NOW), now=NOW)


def test_a_certificate_with_a_forged_signature_is_rejected(ca):
    cert = node_certificate(ca)
    signature = x509.load_der_x509_certificate(cert).signature
    forged = cert[: -len(signature)] + signature[:-1] + bytes([signature[-1] ^ 0x01])
    with pytest.raises(CertificateRejected, match="signature does not verify"):
        check_certificate(forged, ca.self_signed(now=NOW), now=NOW)


def test_certificates_carry_the_names_times_and_critical_extensions_of_their_role(ca):
    ca_cert = x509.load_der_x509_certificate(ca.self_signed(days=3650, now=NOW))
    node = x509.load_der_x509_certificate(node_certificate(ca, days=365))
    start = NOW - dt.timedelta(minutes=5)
    assert ca_cert.subject.rfc4514_string() == "CN=EdgeFaaS node CA,O=EdgeFaaS"
    assert node.subject.rfc4514_string() == "CN=jetson-1,O=EdgeFaaS"
    assert node.issuer == ca_cert.subject
    for cert, days in ((ca_cert, 3650), (node, 365)):
        assert cert.version is x509.Version.v3
        assert cert.signature_algorithm_oid == x509.SignatureAlgorithmOID.ECDSA_WITH_SHA256
        assert (cert.not_valid_before_utc, cert.not_valid_after_utc) == (start, start + dt.timedelta(days))
        assert cert.serial_number & 1 and cert.serial_number < 2**63
        assert [e.critical for e in cert.extensions] == [True, True]
    assert ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length is None
    ca_usage = ca_cert.extensions.get_extension_for_class(x509.KeyUsage).value
    node_usage = node.extensions.get_extension_for_class(x509.KeyUsage).value
    assert (ca_usage.key_cert_sign, ca_usage.crl_sign, ca_usage.digital_signature) == (True, True, False)
    assert (node_usage.key_cert_sign, node_usage.crl_sign, node_usage.digital_signature) == (
        False,
        False,
        True,
    )


def test_a_request_is_signed_by_the_node_key_in_parsec():
    parsec = FakeParsec()
    request = x509.load_der_x509_csr(certificate_request(parsec, "jetson-1"))
    assert request.is_signature_valid
    assert request.public_key() == parsec.keys["edgefaas-node"].public_key()
    assert parsec.signed == 1


def test_a_certificate_from_another_ca_is_rejected(ca):
    impostor_ca = CertificateAuthority(FakeParsec())  # same name, different key
    with pytest.raises(CertificateRejected, match="another CA"):
        check_certificate(node_certificate(impostor_ca), ca.self_signed(now=NOW), now=NOW)
    stranger = CertificateAuthority(FakeParsec(), common_name="Somebody else's CA")
    with pytest.raises(CertificateRejected, match="not issued by this CA"):
        check_certificate(node_certificate(stranger), ca.self_signed(now=NOW), now=NOW)


def test_expired_revoked_and_misnamed_certificates_are_rejected(ca):
    ca_cert = ca.self_signed(now=NOW)
    short = node_certificate(ca, days=1)
    with pytest.raises(CertificateRejected, match="expired"):
        check_certificate(short, ca_cert, now=NOW + dt.timedelta(days=2))
    cert = node_certificate(ca)
    serial = x509.load_der_x509_certificate(cert).serial_number
    with pytest.raises(CertificateRejected, match="revoked"):
        check_certificate(cert, ca_cert, now=NOW, revoked={serial})
    with pytest.raises(CertificateRejected, match="not to node 'sonic-2'"):
        check_certificate(cert, ca_cert, now=NOW, node="sonic-2")


def test_a_request_whose_signature_does_not_verify_gets_no_certificate(ca):
    request = bytearray(certificate_request(FakeParsec(), "jetson-1"))
    request[request.index(b"jetson-1")] ^= 0x01
    with pytest.raises(CertificateRejected, match="signature"):
        ca.issue(bytes(request))
    with pytest.raises(CertificateRejected, match="malformed"):
        ca.issue(b"\x30\x03garbage")
