"""The small DER helpers used for public key export and ECDSA signature forms."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgefaas.parsec.der import (
    der_length,
    der_oid,
    ec_spki,
    ecdsa_der_to_raw,
    ecdsa_raw_to_der,
    pem,
    rsa_spki,
)
from edgefaas.parsec.errors import InvalidArgument, MalformedResponse, NotSupported, ParsecError

pytestmark = pytest.mark.unit


def test_oid_encoding_known_values() -> None:
    assert der_oid("1.2.840.10045.3.1.7").hex() == "06082a8648ce3d030107"  # prime256v1
    assert der_oid("1.2.840.113549.1.1.1").hex() == "06092a864886f70d010101"  # rsaEncryption
    assert der_oid("1.3.132.0.34").hex() == "06052b81040022"  # secp384r1


@pytest.mark.parametrize(
    ("length", "encoded"), [(0, "00"), (127, "7f"), (128, "8180"), (255, "81ff"), (256, "820100")]
)
def test_der_length(length: int, encoded: str) -> None:
    assert der_length(length).hex() == encoded


@given(
    r=st.integers(1, 2**256 - 1),
    s=st.integers(1, 2**256 - 1),
)
def test_ecdsa_raw_der_roundtrip_matches_cryptography(r: int, s: int) -> None:
    utils = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.utils")
    raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    der = ecdsa_raw_to_der(raw)
    assert der == utils.encode_dss_signature(r, s)
    assert ecdsa_der_to_raw(der, 256) == raw


@given(st.binary(max_size=80))
def test_ecdsa_der_to_raw_rejects_garbage_with_parsec_error(data: bytes) -> None:
    try:
        raw = ecdsa_der_to_raw(data, 256)
    except ParsecError:
        return
    assert len(raw) == 64  # whatever parsed must be a well-formed r||s


def test_ecdsa_der_to_raw_rejects_oversize_integers() -> None:
    der = ecdsa_raw_to_der(b"\xff" * 48 + b"\x01" * 48)  # a P-384 signature
    with pytest.raises(InvalidArgument):
        ecdsa_der_to_raw(der, 256)


def test_odd_raw_signature_rejected() -> None:
    with pytest.raises(InvalidArgument):
        ecdsa_raw_to_der(b"\x01" * 63)


def test_spki_rejects_wrong_shapes() -> None:
    with pytest.raises(MalformedResponse):
        rsa_spki(b"\x30\x05\x02\x01")  # length says 5, only 2 follow
    with pytest.raises(MalformedResponse):
        ec_spki(b"\x04" + b"\x01" * 63, 2, 256)  # one byte short
    with pytest.raises(NotSupported):
        ec_spki(b"\x04" + b"\x01" * 64, 8, 256)  # FRP curves have no mapping


def test_x25519_spki_matches_cryptography() -> None:
    x25519 = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.x25519")
    serialization = pytest.importorskip("cryptography.hazmat.primitives.serialization")
    key = x25519.X25519PrivateKey.generate().public_key()
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert ec_spki(raw, 9, 255) == key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_pem_wraps_at_64_columns() -> None:
    text = pem(bytes(100), "PUBLIC KEY")
    lines = text.splitlines()
    assert lines[0] == "-----BEGIN PUBLIC KEY-----" and lines[-1] == "-----END PUBLIC KEY-----"
    assert [len(line) for line in lines[1:-1]] == [64, 64, 8]  # 100 bytes -> 136 base64 chars
    assert text.endswith("-----\n")
