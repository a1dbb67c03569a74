"""TLS server certificates for the blueprint's own services (the gateway first), from its CA.

A service host makes its key itself (a file, 0600, that never leaves the host), sends the
authentication server a certificate request signed by it with the names it serves at, and
a secret that admits that host as a server: HMAC(enrollment key, "server:" + host), given by
the deploy like a node's enrollment secret (a node's secret cannot get a server certificate,
nor the reverse). The server answers with a certificate from the Parsec-held CA for those
names. The host asks again whenever `renewal_reason` says so: before expiry (the last third
of its life), when its names or its key change, or when the CA is another.
"""

from __future__ import annotations

import base64
import datetime as dt
import hmac
import os
import ssl
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgefaas.nodeauth.certificates import CertificateAuthority, CertificateRejected, check_certificate
from edgefaas.nodeauth.enrollment import EnrollmentRefused, enrollment_secret, post_json

CERTIFICATE_DAYS = 90
RENEW_FRACTION = 1 / 3  # renewed once less than this share of its life is left


def server_secret(key: bytes, host: str) -> str:
    """The secret that admits `host` to TLS server certificates (and nothing else)."""
    return enrollment_secret(key, f"server:{host}")


def certificate_names(cert: Any) -> list[str]:
    """A certificate's subjectAltNames, as text (addresses and DNS names)."""
    from cryptography import x509

    try:
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(ip) for ip in alt.get_values_for_type(x509.IPAddress)] + alt.get_values_for_type(x509.DNSName)


def _normal(names: Sequence[str]) -> set[str]:
    import ipaddress

    normal = set()
    for name in names:
        try:
            normal.add(str(ipaddress.ip_address(name)))
        except ValueError:
            normal.add(name.lower())
    return normal


def renewal_reason(
    certificate_pem: bytes | None,
    key_pem: bytes | None,
    names: Sequence[str],
    ca_certificate: bytes,
    now: dt.datetime | None = None,
) -> str | None:
    """Why the held certificate must be replaced, or None when it serves `names` well for a while yet."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    if not certificate_pem or not key_pem:
        return "no certificate yet"
    moment = now or dt.datetime.now(dt.UTC)
    try:
        cert = x509.load_pem_x509_certificate(certificate_pem)
        der = cert.public_bytes(serialization.Encoding.DER)
        check_certificate(der, ca_certificate, now=moment)
    except (ValueError, CertificateRejected) as exc:
        return f"the certificate held does not check against the CA: {exc}"
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    if cert.not_valid_after_utc - moment < life * RENEW_FRACTION:
        return f"it expires at {cert.not_valid_after_utc.isoformat()}"
    if _normal(certificate_names(cert)) != _normal(names):
        return f"it names {sorted(certificate_names(cert))}, not {sorted(names)}"
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        return f"the key held is unreadable: {exc}"
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*spki) != cert.public_key().public_bytes(*spki):
        return "it is not for the key held"
    return None


class ServerCertificates:
    """The authentication server's side: checks a host's secret and issues for its request."""

    def __init__(self, ca: CertificateAuthority, key: bytes, days: float = CERTIFICATE_DAYS) -> None:
        self.ca, self.key, self.days = ca, key, days

    def issue(self, host: str, request: bytes, names: Sequence[str], secret: str) -> bytes:
        """A certificate for `names`, or EnrollmentRefused naming why not."""
        if not hmac.compare_digest(secret.encode(), server_secret(self.key, host).encode()):
            raise EnrollmentRefused(f"wrong server-certificate secret for host {host!r}")
        if not names or not all(isinstance(n, str) and n and len(n) <= 253 for n in names):
            raise EnrollmentRefused('"names" must list the addresses and DNS names the host serves at')
        try:
            return self.ca.issue_server_request(request, list(names), days=self.days)
        except CertificateRejected as exc:
            raise EnrollmentRefused(str(exc)) from None


def _write(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)  # a server reloading it never reads half a file
    except BaseException:
        os.unlink(tmp)
        raise


def make_key(key_path: Path) -> bytes:
    """The host's key (PEM), made once, 0600."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    if key_path.exists():
        return key_path.read_bytes()
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write(key_path, pem, 0o600)
    return pem


def ensure_server_certificate(
    server_url: str,
    host: str,
    secret: str,
    names: Sequence[str],
    key_path: Path,
    certificate_path: Path,
    ca_certificate: bytes,
    context: ssl.SSLContext,
    timeout: float = 10.0,
) -> str | None:
    """Make sure `certificate_path` holds a good certificate for `names` and the key at `key_path`;
    why one was issued now, or None when the one held is kept."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    held = certificate_path.read_bytes() if certificate_path.exists() else None
    key_pem = key_path.read_bytes() if key_path.exists() else None
    reason = renewal_reason(held, key_pem, names, ca_certificate)
    if reason is None:
        return None
    key = serialization.load_pem_private_key(make_key(key_path), password=None)
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, names[0])])
    request = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())  # type: ignore[arg-type]
    reply = post_json(
        f"{server_url}/v1/server-certificate",
        {
            "host": host,
            "names": list(names),
            "request": base64.b64encode(request.public_bytes(serialization.Encoding.DER)).decode(),
            "secret": secret,
        },
        timeout,
        context,
    )
    der = base64.b64decode(reply["certificate"])
    pem = x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)
    problem = renewal_reason(pem, key_path.read_bytes(), names, ca_certificate)
    if problem is not None:  # the server's answer is checked too
        raise EnrollmentRefused(f"the certificate {server_url} issued is unusable: {problem}")
    _write(certificate_path, pem, 0o644)
    return reason
