"""Just enough DER to turn Parsec's exported public keys and signatures into standard formats.

Parsec exports an RSA public key as a PKCS#1 ``RSAPublicKey`` and an EC public
key as the bare uncompressed point. Most tools (openssl, TLS stacks, JWT
libraries) want a ``SubjectPublicKeyInfo``; wrapping takes a handful of TLVs.
Hand-written because the Parsec client runs in function pods, whose image has no
``cryptography``; X.509 certificates are built with it (edgefaas.nodeauth).
"""

from __future__ import annotations

import base64

from .attributes import EccFamily, KeyAttributes
from .errors import InvalidArgument, MalformedResponse, NotSupported

OID_RSA_ENCRYPTION = "1.2.840.113549.1.1.1"
OID_EC_PUBLIC_KEY = "1.2.840.10045.2.1"
OID_X25519 = "1.3.101.110"
OID_X448 = "1.3.101.111"

#: (curve family, key bits) -> namedCurve OID
CURVE_OIDS: dict[tuple[int, int], str] = {
    (EccFamily.SECP_R1, 192): "1.2.840.10045.3.1.1",
    (EccFamily.SECP_R1, 224): "1.3.132.0.33",
    (EccFamily.SECP_R1, 256): "1.2.840.10045.3.1.7",
    (EccFamily.SECP_R1, 384): "1.3.132.0.34",
    (EccFamily.SECP_R1, 521): "1.3.132.0.35",
    (EccFamily.SECP_K1, 256): "1.3.132.0.10",
    (EccFamily.BRAINPOOL_P_R1, 256): "1.3.36.3.3.2.8.1.1.7",
    (EccFamily.BRAINPOOL_P_R1, 384): "1.3.36.3.3.2.8.1.1.11",
    (EccFamily.BRAINPOOL_P_R1, 512): "1.3.36.3.3.2.8.1.1.13",
}
MONTGOMERY_OIDS: dict[int, str] = {255: OID_X25519, 448: OID_X448}


def der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    octets = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(octets)]) + octets


def der_tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + der_length(len(content)) + content


def der_sequence(*items: bytes) -> bytes:
    return der_tlv(0x30, b"".join(items))


def der_oid(dotted: str) -> bytes:
    arcs = [int(arc) for arc in dotted.split(".")]
    body = bytearray([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body.extend(reversed(chunk))
    return der_tlv(0x06, bytes(body))


DER_NULL = b"\x05\x00"


def der_bit_string(data: bytes) -> bytes:
    return der_tlv(0x03, b"\x00" + data)  # no unused bits


RSA_KEY_TYPES = ("rsa_key_pair", "rsa_public_key")


def check_rsa_public_key(data: bytes) -> None:
    """Raise MalformedResponse unless ``data`` is one DER SEQUENCE (an RSAPublicKey's shape)."""
    _check_single_sequence(data)


def _check_single_sequence(data: bytes) -> None:
    """Raise unless ``data`` is exactly one DER SEQUENCE (what an RSAPublicKey is)."""
    if len(data) < 2 or data[0] != 0x30:
        raise MalformedResponse("exported RSA key is not a DER SEQUENCE")
    first = data[1]
    if first < 0x80:
        length, header = first, 2
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or len(data) < 2 + count:
            raise MalformedResponse("exported RSA key has a bad DER length")
        length, header = int.from_bytes(data[2 : 2 + count], "big"), 2 + count
    if header + length != len(data):
        raise MalformedResponse("exported RSA key length does not match its DER header")


def rsa_spki(rsa_public_key: bytes) -> bytes:
    """Wrap a PKCS#1 RSAPublicKey into a SubjectPublicKeyInfo."""
    _check_single_sequence(rsa_public_key)
    algorithm = der_sequence(der_oid(OID_RSA_ENCRYPTION), DER_NULL)
    return der_sequence(algorithm, der_bit_string(rsa_public_key))


def ec_spki(point: bytes, family: int, bits: int) -> bytes:
    """Wrap an uncompressed EC point (or a Montgomery u-coordinate) into SPKI."""
    if family == EccFamily.MONTGOMERY:
        oid = MONTGOMERY_OIDS.get(bits)
        if oid is None:
            raise NotSupported(f"no SubjectPublicKeyInfo mapping for Montgomery {bits}-bit keys")
        if len(point) != (bits + 7) // 8:
            raise MalformedResponse(f"exported {bits}-bit Montgomery key is {len(point)} bytes")
        return der_sequence(der_sequence(der_oid(oid)), der_bit_string(point))
    oid = CURVE_OIDS.get((family, bits))
    if oid is None:
        raise NotSupported(f"no SubjectPublicKeyInfo mapping for curve family {family} with {bits} bits")
    coordinate = (bits + 7) // 8
    if len(point) != 1 + 2 * coordinate or point[0] != 0x04:
        raise MalformedResponse(
            f"exported EC key is not an uncompressed {bits}-bit point ({len(point)} bytes)"
        )
    algorithm = der_sequence(der_oid(OID_EC_PUBLIC_KEY), der_oid(oid))
    return der_sequence(algorithm, der_bit_string(point))


def public_key_spki(attributes: KeyAttributes, data: bytes) -> bytes:
    """SubjectPublicKeyInfo DER for ``data`` as exported for a key with ``attributes``."""
    which = attributes.key_type.WhichOneof("variant")
    if which in RSA_KEY_TYPES:
        return rsa_spki(data)
    if which in ("ecc_key_pair", "ecc_public_key"):
        family = getattr(attributes.key_type, which).curve_family
        return ec_spki(data, family, attributes.key_bits)
    raise NotSupported(f"cannot express a {which or 'untyped'} key as SubjectPublicKeyInfo")


def _der_integer(value: bytes) -> bytes:
    value = value.lstrip(b"\0") or b"\0"
    if value[0] & 0x80:
        value = b"\0" + value  # keep it positive
    return der_tlv(0x02, value)


def ecdsa_raw_to_der(signature: bytes) -> bytes:
    """PSA ECDSA signature ``r || s`` -> DER ``SEQUENCE { r INTEGER, s INTEGER }``.

    openssl, ``cryptography`` and parsec-tool's ``sign`` output use the DER form.
    """
    if not signature or len(signature) % 2:
        raise InvalidArgument(f"an r||s ECDSA signature has even length, got {len(signature)}")
    half = len(signature) // 2
    return der_sequence(_der_integer(signature[:half]), _der_integer(signature[half:]))


def ecdsa_der_to_raw(signature: bytes, key_bits: int) -> bytes:
    """DER ``SEQUENCE { r, s }`` -> PSA ``r || s`` for a ``key_bits`` curve."""
    size = (key_bits + 7) // 8
    bad = InvalidArgument("not a DER ECDSA signature (SEQUENCE of two INTEGERs)")
    try:
        _check_single_sequence(signature)
    except MalformedResponse:
        raise bad from None
    body = signature[2 + (signature[1] & 0x7F if signature[1] & 0x80 else 0) :]
    numbers: list[int] = []
    while body:
        if body[0] != 0x02 or len(body) < 2 or body[1] >= 0x80:
            raise bad
        length = body[1]
        if len(body) < 2 + length or length == 0:
            raise bad
        numbers.append(int.from_bytes(body[2 : 2 + length], "big"))
        body = body[2 + length :]
    if len(numbers) != 2 or any(n.bit_length() > 8 * size for n in numbers):
        raise bad
    return b"".join(n.to_bytes(size, "big") for n in numbers)


def pem(der: bytes, label: str = "PUBLIC KEY") -> str:
    """PEM armour (RFC 7468): base64 in 64-column lines between BEGIN/END labels."""
    b64 = base64.b64encode(der).decode("ascii")
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    return "\n".join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----", ""])
