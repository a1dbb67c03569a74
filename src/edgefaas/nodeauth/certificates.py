"""X.509 certificates for edge nodes, signed by keys that never leave Parsec.

The CA's signing key and each node's key are ECDSA P-256 keys generated inside a Parsec
service; only their public halves are ever exported. Certificates and PKCS#10 requests are
built by `cryptography`'s builders and signed through ParsecEcKey, which has Parsec sign.
`cryptography` is imported where it is used: `edgefaas --help` loads this module in function
pods, whose image does not install it.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterable, Sequence
from typing import Any

ORGANIZATION = "EdgeFaaS"
CA_KEY = "edgefaas-node-ca"
NODE_KEY = "edgefaas-node"


class CertificateRejected(Exception):
    """A presented certificate or request that must not be trusted; the message says why."""


def _name(common_name: str) -> Any:
    from cryptography import x509

    return x509.Name(
        [
            x509.NameAttribute(x509.NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(x509.NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_usage(is_ca: bool) -> Any:
    from cryptography import x509

    # keyCertSign + cRLSign for the CA; digitalSignature for nodes (they sign challenges).
    return x509.KeyUsage(
        digital_signature=not is_ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=is_ca,
        crl_sign=is_ca,
        encipher_only=False,
        decipher_only=False,
    )


def ensure_key(parsec: Any, name: str) -> bytes:
    """The public key (SubjectPublicKeyInfo DER) of Parsec key `name`, generating it on first use."""
    if name not in {key.name for key in parsec.list_keys()}:
        parsec.generate_ecc_sign_key(name)
    return parsec.export_public_key(name, "der")


def certificate_request(parsec: Any, common_name: str, key: str = NODE_KEY) -> bytes:
    """A PKCS#10 request for `common_name`, signed by the node's own Parsec key (proof of possession)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    from edgefaas.nodeauth.parsec_key import ParsecEcKey

    ensure_key(parsec, key)
    builder = x509.CertificateSigningRequestBuilder().subject_name(_name(common_name))
    request = builder.sign(ParsecEcKey(parsec, key), hashes.SHA256())
    return request.public_bytes(serialization.Encoding.DER)


def _signed_request(request: bytes) -> Any:
    """A PKCS#10 request whose signature proves its key, else CertificateRejected."""
    from cryptography import x509

    try:
        csr = x509.load_der_x509_csr(request)
    except ValueError as exc:
        raise CertificateRejected(f"malformed certificate request: {exc}") from None
    if not csr.is_signature_valid:
        raise CertificateRejected("the certificate request's signature does not verify")
    return csr


class CertificateAuthority:
    """Issues node certificates; its private key is Parsec key `key` and never leaves the service."""

    def __init__(self, parsec: Any, common_name: str = "EdgeFaaS node CA", key: str = CA_KEY) -> None:
        self.parsec = parsec
        self.key = key
        self.common_name = common_name
        self.public_key = ensure_key(parsec, key)

    def _certificate(
        self,
        subject: str,
        public_key: Any,
        is_ca: bool,
        days: float,
        now: dt.datetime | None,
        extensions: Iterable[Any] = (),
    ) -> bytes:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization

        from edgefaas.nodeauth.parsec_key import ParsecEcKey

        # Backdated: a verifier whose clock is a little behind accepts it at once.
        start = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0) - dt.timedelta(minutes=5)
        end = (start + dt.timedelta(days=days)).replace(microsecond=0)  # X.509 times are whole seconds
        builder = (
            x509.CertificateBuilder()
            .serial_number(secrets.randbits(63) | 1)
            .issuer_name(_name(self.common_name))
            .not_valid_before(start)
            .not_valid_after(end)
            .subject_name(_name(subject))
            .public_key(public_key)
            .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
            .add_extension(_key_usage(is_ca), critical=True)
        )
        for extension in extensions:
            builder = builder.add_extension(extension, critical=False)
        certificate = builder.sign(ParsecEcKey(self.parsec, self.key), hashes.SHA256())
        return certificate.public_bytes(serialization.Encoding.DER)

    def self_signed(self, days: float = 3650, now: dt.datetime | None = None) -> bytes:
        """The CA's own certificate (public: servers and agents trust nodes by it)."""
        from cryptography.hazmat.primitives import serialization

        public_key = serialization.load_der_public_key(self.public_key)
        return self._certificate(self.common_name, public_key, True, days, now)

    def issue(self, request: bytes, days: float = 365, now: dt.datetime | None = None) -> bytes:
        """A node certificate for a PKCS#10 request whose signature proves its key (else rejected)."""
        from cryptography import x509

        csr = _signed_request(request)
        names = csr.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        if len(names) != 1:
            raise CertificateRejected("the certificate request must name exactly one node (CN)")
        return self._certificate(str(names[0].value), csr.public_key(), False, days, now)

    def issue_server(
        self, public_key: Any, names: Sequence[str], days: float = 365, now: dt.datetime | None = None
    ) -> bytes:
        """A TLS server certificate for `public_key`, valid for `names` (IP addresses or DNS names).

        TLS clients (Go's among them) check the subjectAltName, not the CN, so every name goes there.
        """
        import ipaddress

        from cryptography import x509

        alt_names: list[Any] = []
        for name in names:
            try:
                alt_names.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                alt_names.append(x509.DNSName(name))
        if not alt_names:
            raise ValueError("a server certificate needs at least one name")
        extensions = [
            x509.SubjectAlternativeName(alt_names),
            x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]),
        ]
        return self._certificate(names[0], public_key, False, days, now, extensions)

    def issue_server_request(
        self, request: bytes, names: Sequence[str], days: float = 90, now: dt.datetime | None = None
    ) -> bytes:
        """A TLS server certificate for the key of a PKCS#10 request (its signature proves the
        key; the key itself never left its host), valid for `names` as the issuer decided them,
        not as the request claims."""
        csr = _signed_request(request)
        try:
            return self.issue_server(csr.public_key(), names, days=days, now=now)
        except ValueError as exc:
            raise CertificateRejected(str(exc)) from None


def check_certificate(
    certificate: bytes,
    ca_certificate: bytes,
    now: dt.datetime | None = None,
    revoked: Iterable[int] = (),
    node: str | None = None,
    check_not_before: bool = True,
) -> Any:
    """The node certificate if the CA issued it, untampered, now valid, not revoked (and for `node`).

    Raises CertificateRejected naming the first reason it fails. A node checking what its
    server just issued passes check_not_before=False: its clock may be behind the server's
    by more than the 5 minutes certificates are backdated, and the server, whose clock
    decides validity, has just issued it.
    """
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm

    try:
        cert = x509.load_der_x509_certificate(certificate)
        ca = x509.load_der_x509_certificate(ca_certificate)
    except ValueError as exc:
        raise CertificateRejected(f"malformed certificate: {exc}") from None
    if cert.issuer != ca.subject:
        raise CertificateRejected(f"not issued by this CA (issuer {cert.issuer.rfc4514_string()})")
    try:
        cert.verify_directly_issued_by(ca)
    except (InvalidSignature, UnsupportedAlgorithm, TypeError, ValueError):
        reason = "the CA's signature does not verify: tampered, or from another CA"
        raise CertificateRejected(reason) from None
    moment = now or dt.datetime.now(dt.UTC)
    if check_not_before and moment < cert.not_valid_before_utc:
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
