"""TLS with the blueprint's CA: server keys certified by the Parsec-held CA, clients that trust it.

A TLS server needs its private key in hand (the ssl module cannot sign through Parsec), so a
server's key is an ordinary key file made on its own host, 0600, certified by the CA; the CA's
own key never leaves Parsec. Clients trust the CA certificate alone: the deploy publishes it
at CA_PEM on every device (`edgefaas lab ca` prints the lab's).
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
from pathlib import Path

from edgefaas.nodeauth.certificates import CertificateAuthority

CA_PEM = Path("/etc/edgefaas/ca.pem")
CERTIFICATE_DAYS = 30
RENEW_DAYS = 10
RETRY_SECONDS = 60.0  # a renewal that failed (Parsec restarting) is tried again this soon
log = logging.getLogger("edgefaas.nodeauth.tls")


def pem_certificate(der: bytes) -> bytes:
    """A DER certificate as PEM (what curl, browsers' tools and ssl's cafile read)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)


def client_context(ca: bytes | Path) -> ssl.SSLContext:
    """A client context that trusts the CA alone (PEM or DER bytes, or a PEM file) and checks names."""
    if isinstance(ca, Path):
        return ssl.create_default_context(cafile=str(ca))
    cadata = ca.decode() if ca.lstrip().startswith(b"-----BEGIN") else ca
    return ssl.create_default_context(cadata=cadata)


def write_server_credentials(
    ca: CertificateAuthority, directory: Path, names: list[str], days: float = CERTIFICATE_DAYS
) -> tuple[Path, Path]:
    """A new key (0600) and its certificate from `ca` for `names`, in `directory`; their paths."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    der = ca.issue_server(key.public_key(), names, days=days)
    key_path, cert_path = directory / "tls.key", directory / "tls.crt"
    pem_key = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem_key)
    cert_path.write_bytes(pem_certificate(der))
    return cert_path, key_path


class ServerTls:
    """A server's TLS context, whose key and certificate `renew` replaces in place (connections
    made after it get the new certificate; those open keep theirs)."""

    def __init__(self, ca: CertificateAuthority, directory: Path, names: list[str]) -> None:
        self.ca, self.directory, self.names = ca, directory, names
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.renew()

    def renew(self) -> None:
        certificate, key = write_server_credentials(self.ca, self.directory, self.names)
        self.context.load_cert_chain(certificate, key)

    def keep_renewed(self, stop: threading.Event, every_s: float = RENEW_DAYS * 86400.0) -> None:
        """Renew every `every_s` seconds until `stop` is set; a failure is logged and retried."""
        wait = every_s
        while not stop.wait(wait):
            try:
                self.renew()
                wait = every_s
            except Exception as exc:  # Parsec away: the current certificate is good for days yet
                log.warning("renewing the TLS certificate failed, retrying: %s: %s", type(exc).__name__, exc)
                wait = RETRY_SECONDS
