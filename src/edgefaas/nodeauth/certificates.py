"""X.509 certificates for edge nodes, signed by keys that never leave Parsec.

The CA's signing key and each node's key are ECDSA P-256 keys generated inside a Parsec
service; only their public halves are ever exported. Certificates and certificate
requests are ordinary X.509 v3 / PKCS#10 in DER (openssl and the `cryptography` package
load them): the to-be-signed part is built here and its SHA-256 is signed by Parsec, since
X.509 libraries want a private key object that a Parsec-held key cannot be.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Iterable
from typing import Any

from edgefaas.parsec.der import der_bit_string, der_oid, der_sequence, der_tlv, ecdsa_raw_to_der

OID_ECDSA_SHA256 = "1.2.840.10045.4.3.2"
OID_COMMON_NAME = "2.5.4.3"
OID_ORGANIZATION = "2.5.4.10"
OID_BASIC_CONSTRAINTS = "2.5.29.19"
OID_KEY_USAGE = "2.5.29.15"
ORGANIZATION = "EdgeFaaS"
CA_KEY = "edgefaas-node-ca"
NODE_KEY = "edgefaas-node"


class CertificateRejected(Exception):
    """A presented certificate or request that must not be trusted; the message says why."""


def _integer(value: int) -> bytes:
    raw = value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big")  # a leading 0: positive
    return der_tlv(0x02, raw)


def _name(common_name: str) -> bytes:
    def attribute(oid: str, text: str) -> bytes:
        return der_tlv(0x31, der_sequence(der_oid(oid), der_tlv(0x0C, text.encode())))

    return der_sequence(attribute(OID_ORGANIZATION, ORGANIZATION), attribute(OID_COMMON_NAME, common_name))


def _time(when: dt.datetime) -> bytes:
    when = when.astimezone(dt.UTC)
    if when.year < 2050:  # RFC 5280: UTCTime through 2049, GeneralizedTime after
        return der_tlv(0x17, when.strftime("%y%m%d%H%M%SZ").encode())
    return der_tlv(0x18, when.strftime("%Y%m%d%H%M%SZ").encode())


def _extensions(is_ca: bool) -> bytes:
    true = b"\x01\x01\xff"
    basic = der_sequence(true) if is_ca else der_sequence()
    # keyCertSign + cRLSign for the CA; digitalSignature for nodes (they sign challenges).
    usage = der_tlv(0x03, b"\x01\x06") if is_ca else der_tlv(0x03, b"\x07\x80")
    extensions = der_sequence(
        der_sequence(der_oid(OID_BASIC_CONSTRAINTS), true, der_tlv(0x04, basic)),
        der_sequence(der_oid(OID_KEY_USAGE), true, der_tlv(0x04, usage)),
    )
    return der_tlv(0xA3, extensions)


def _signed(parsec: Any, key: str, to_be_signed: bytes) -> bytes:
    raw = parsec.sign_hash(key, hashlib.sha256(to_be_signed).digest())
    algorithm = der_sequence(der_oid(OID_ECDSA_SHA256))
    return der_sequence(to_be_signed, algorithm, der_bit_string(ecdsa_raw_to_der(raw)))


def ensure_key(parsec: Any, name: str) -> bytes:
    """The public key (SubjectPublicKeyInfo DER) of Parsec key `name`, generating it on first use."""
    if name not in {key.name for key in parsec.list_keys()}:
        parsec.generate_ecc_sign_key(name)
    return parsec.export_public_key(name, "der")


def certificate_request(parsec: Any, common_name: str, key: str = NODE_KEY) -> bytes:
    """A PKCS#10 request for `common_name`, signed by the node's own Parsec key (proof of possession)."""
    spki = ensure_key(parsec, key)
    info = der_sequence(_integer(0), _name(common_name), spki, der_tlv(0xA0, b""))
    return _signed(parsec, key, info)


class CertificateAuthority:
    """Issues node certificates; its private key is Parsec key `key` and never leaves the service."""

    def __init__(self, parsec: Any, common_name: str = "EdgeFaaS node CA", key: str = CA_KEY) -> None:
        self.parsec = parsec
        self.key = key
        self.common_name = common_name
        self.public_key = ensure_key(parsec, key)

    def _certificate(
        self, subject: str, spki: bytes, is_ca: bool, days: float, now: dt.datetime | None, serial: int | None
    ) -> bytes:
        start = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0) - dt.timedelta(minutes=5)
        tbs = der_sequence(
            der_tlv(0xA0, _integer(2)),  # v3
            _integer(serial if serial is not None else secrets.randbits(63) | 1),
            der_sequence(der_oid(OID_ECDSA_SHA256)),
            _name(self.common_name),
            der_sequence(_time(start), _time(start + dt.timedelta(days=days))),
            _name(subject),
            spki,
            _extensions(is_ca),
        )
        return _signed(self.parsec, self.key, tbs)

    def self_signed(self, days: float = 3650, now: dt.datetime | None = None) -> bytes:
        """The CA's own certificate (public: servers and agents trust nodes by it)."""
        return self._certificate(self.common_name, self.public_key, True, days, now, None)

    def issue(self, request: bytes, days: float = 365, now: dt.datetime | None = None) -> bytes:
        """A node certificate for a PKCS#10 request whose signature proves its key (else rejected)."""
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        try:
            csr = x509.load_der_x509_csr(request)
        except ValueError as exc:
            raise CertificateRejected(f"malformed certificate request: {exc}") from None
        if not csr.is_signature_valid:
            raise CertificateRejected("the certificate request's signature does not verify")
        names = csr.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        if len(names) != 1:
            raise CertificateRejected("the certificate request must name exactly one node (CN)")
        spki = csr.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return self._certificate(str(names[0].value), spki, False, days, now, None)


def check_certificate(
    certificate: bytes,
    ca_certificate: bytes,
    now: dt.datetime | None = None,
    revoked: Iterable[int] = (),
    node: str | None = None,
) -> Any:
    """The node certificate if the CA issued it, untampered, now valid, not revoked (and for `node`).

    Raises CertificateRejected naming the first reason it fails.
    """
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        cert = x509.load_der_x509_certificate(certificate)
        ca = x509.load_der_x509_certificate(ca_certificate)
    except ValueError as exc:
        raise CertificateRejected(f"malformed certificate: {exc}") from None
    if cert.issuer != ca.subject:
        raise CertificateRejected(f"not issued by this CA (issuer {cert.issuer.rfc4514_string()})")
    try:
        ca.public_key().verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, TypeError, ValueError):
        reason = "the CA's signature does not verify: tampered, or from another CA"
        raise CertificateRejected(reason) from None
    moment = now or dt.datetime.now(dt.UTC)
    if moment < cert.not_valid_before_utc:
        raise CertificateRejected(f"not valid before {cert.not_valid_before_utc.isoformat()}")
    if moment > cert.not_valid_after_utc:
        raise CertificateRejected(f"expired at {cert.not_valid_after_utc.isoformat()}")
    if cert.serial_number in set(revoked):
        raise CertificateRejected(f"revoked (serial {cert.serial_number:x})")
    if node is not None:
        names = [a.value for a in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
        if names != [node]:
            raise CertificateRejected(f"issued to {names}, not to node {node!r}")
    return cert
