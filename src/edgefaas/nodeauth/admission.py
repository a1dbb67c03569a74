"""The Parsec tenant webhook's HTTPS endpoint, inside the node authentication server.

The authentication server already runs on the K3S server with the blueprint's CA (its key
in Parsec) and a Kubernetes account, so it serves the admission webhook too
(edgefaas.parsec.tenancy decides). The API server calls it on loopback: the endpoint binds
127.0.0.1 only and no ACL opens it.

Its TLS key is an ordinary key file made afresh at every start and every RENEW_DAYS after
(the ssl module needs the private key in hand, which a Parsec key never is), certified by the
Parsec-held CA for 127.0.0.1 for CERTIFICATE_DAYS; the webhook configuration's caBundle is
that CA's certificate, so the API server trusts each new key without a change to the
configuration, and a server that runs for months never serves an expired certificate.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import threading
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from edgefaas.nodeauth.certificates import CertificateAuthority
from edgefaas.nodeauth.http import json_service
from edgefaas.parsec.tenancy import ADMIT_PATH, namespace_uid, review

ADMISSION_PORT = 8473
TLS_DIR = "admission-tls"
CERTIFICATE_DAYS = 30
RENEW_DAYS = 10
RETRY_SECONDS = 60.0  # a renewal that failed (Parsec restarting) is tried again this soon
log = logging.getLogger("edgefaas.nodeauth.admission")


def write_server_credentials(
    ca: CertificateAuthority, directory: Path, names: list[str], days: float = CERTIFICATE_DAYS
) -> tuple[Path, Path]:
    """A new key (0600) and its certificate from `ca` for `names`, in `directory`; their paths."""
    from cryptography import x509
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
    cert_path.write_bytes(x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


class ServerTls:
    """The webhook's TLS context, whose key and certificate `renew` replaces in place (connections
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
                log.warning(
                    "renewing the webhook's certificate failed, retrying: %s: %s", type(exc).__name__, exc
                )
                wait = RETRY_SECONDS


def namespace_uids(api_client: Any) -> Callable[[str], int | None]:
    """uid_of(namespace) read from the namespace's labels at each request (admissions are rare)."""
    from kubernetes import client

    core = client.CoreV1Api(api_client)

    def uid_of(namespace: str) -> int | None:
        return namespace_uid(core.read_namespace(namespace).metadata.labels)

    return uid_of


def responder(
    uid_of: Callable[[str], int | None],
) -> Callable[[str, str, str, bytes], tuple[int, dict[str, Any]]]:
    """The endpoint's (peer, method, path, body) -> (status, answer); a lookup failure is a 503,
    which the API server treats as the webhook failing (failurePolicy Fail: refused)."""

    def respond(peer: str, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        if (method, path.split("?")[0]) != ("POST", ADMIT_PATH):
            return 404, {"error": f"no {method} {path}: POST {ADMIT_PATH} an AdmissionReview"}
        try:
            answer = review(json.loads(body), uid_of)
        except ValueError as exc:  # json.JSONDecodeError is one
            return 400, {"error": f"bad AdmissionReview: {exc}"}
        if not answer["response"]["allowed"]:
            log.warning("refused: %s", answer["response"]["status"]["message"])
        return 200, answer

    return respond


def serve_admission(
    uid_of: Callable[[str], int | None], host: str, port: int, tls: ServerTls
) -> ThreadingHTTPServer:
    """A started HTTPS server for the webhook (call serve_forever); port 0 picks a free one."""
    return json_service(responder(uid_of), host, port, log, tls=tls.context)
