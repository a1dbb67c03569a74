"""ParsecEcKey: cryptography's X.509 builders sign with a key that Parsec holds."""

from __future__ import annotations

import copy
import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from edgefaas.nodeauth.parsec_key import ParsecEcKey

from .parsec_fakes import FakeParsec

pytestmark = pytest.mark.unit
NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)
NAME = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "jetson-1")])


@pytest.fixture
def key() -> ParsecEcKey:
    parsec = FakeParsec()
    parsec.generate_ecc_sign_key("ca")
    return ParsecEcKey(parsec, "ca")


def test_the_builders_sign_a_certificate_and_a_request_through_parsec(key):
    cert = (
        x509.CertificateBuilder()
        .subject_name(NAME)
        .issuer_name(NAME)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(NOW)
        .not_valid_after(NOW + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    request = x509.CertificateSigningRequestBuilder().subject_name(NAME).sign(key, hashes.SHA256())
    assert key.parsec.signed == 2  # both signatures were made by "Parsec"
    cert.verify_directly_issued_by(cert)
    real_public = key.parsec.keys["ca"].public_key()
    real_public.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256()))
    assert request.is_signature_valid
    assert request.public_key() == real_public


def test_the_key_is_p256_and_its_public_half_is_parsecs(key):
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.curve.name == "secp256r1" and key.key_size == 256
    assert key.public_key() == key.parsec.keys["ca"].public_key()
    assert copy.copy(key) is key and copy.deepcopy(key) is key


def test_the_private_half_is_refused_with_the_reason(key):
    with pytest.raises(TypeError, match="'ca' lives in Parsec"):
        key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    with pytest.raises(TypeError, match="lives in Parsec"):
        key.private_numbers()
    with pytest.raises(TypeError, match="lives in Parsec"):
        key.exchange(ec.ECDH(), key.public_key())


def test_only_ecdsa_with_sha256_is_signed(key):
    with pytest.raises(TypeError, match="SHA-256 only"):
        key.sign(b"data", ec.ECDSA(hashes.SHA384()))
    assert key.parsec.signed == 0


def test_a_signature_that_is_not_p256_r_s_is_refused(key):
    key.parsec.sign_hash = lambda name, digest: b"\x01" * 63
    with pytest.raises(ValueError, match="63-byte signature"):
        key.sign(b"data", ec.ECDSA(hashes.SHA256()))


def test_a_key_that_is_not_p256_is_refused():
    parsec = FakeParsec()
    parsec.keys["p384"] = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(TypeError, match="not a P-256"):
        ParsecEcKey(parsec, "p384").public_key()
