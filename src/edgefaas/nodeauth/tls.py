"""TLS with the blueprint's CA: server keys certified by the Parsec-held CA, clients that trust it.

A TLS server needs its private key in hand (the ssl module cannot sign through Parsec), so a
server's key is made in its own process, certified by the CA and kept in memory only (never a
file: a restart makes a new one); the CA's own key never leaves Parsec. Clients trust the CA
certificate alone: the deploy publishes it at CA_PEM on every device (`edgefaas lab ca`
prints the lab's).
"""

from __future__ import annotations

import datetime as dt
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
    if not ca.strip():
        # Python's ssl takes empty data for "none given" and trusts the system's store instead.
        raise ValueError("no CA certificate given (empty): refusing to trust the system's store instead")
    cadata = ca.decode() if ca.lstrip().startswith(b"-----BEGIN") else ca
    return ssl.create_default_context(cadata=cadata)


def server_credentials(
    ca: CertificateAuthority, names: list[str], days: float = CERTIFICATE_DAYS
) -> tuple[bytes, bytes]:
    """A new key and its certificate from `ca` for `names`: (certificate PEM, key PEM)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    # Valid from a day back: a client whose clock is behind the server's still verifies it.
    since = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    der = ca.issue_server(key.public_key(), names, days=days + 1, now=since)
    pem_key = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem_certificate(der), pem_key


def load_in_memory(context: ssl.SSLContext, certificate: bytes, key: bytes) -> None:
    """Load a certificate and its key into `context` without writing the key to any disk.

    The ssl module reads keys from paths only: an anonymous memory file gives it one
    (/proc/self/fd/N), gone when closed, so no key file is ever left behind.
    """
    fd = os.memfd_create("edgefaas-tls", os.MFD_CLOEXEC)
    try:
        os.write(fd, certificate + key)
        context.load_cert_chain(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


class ServerTls:
    """A server's TLS context, whose key and certificate `renew` replaces in place (connections
    made after it get the new certificate; those open keep theirs)."""

    def __init__(self, ca: CertificateAuthority, names: list[str]) -> None:
        self.ca, self.names = ca, names
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.renew()

    def renew(self) -> None:
        self.certificate, key = server_credentials(self.ca, self.names)
        load_in_memory(self.context, self.certificate, key)

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
