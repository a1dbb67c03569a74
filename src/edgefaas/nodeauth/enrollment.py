"""Admitting and revoking devices: enrollment secrets, the CA's records, the agent's enrollment.

How a device is admitted: the operator (the deploy, for every device in the inventory)
gives it an enrollment secret, HMAC-SHA256(enrollment key, node name). The enrollment key
stays with the operator and on the authentication server; a device only ever holds its own
secret, which is good for its own name and nothing else. The device's agent sends a
certificate request signed by its Parsec-held node key together with the secret; the
server checks the secret, that the name is not revoked and that the request names that
node, and issues a certificate. A device that lost its certificate enrolls again the same
way.

How a device is revoked: `edgefaas nodeauth revoke NODE` on the server adds the node's name
and every serial issued to it to the revocation list; the server removes the node at its
next review, refuses its certificates from then on, and refuses to enroll the name again
until `edgefaas nodeauth admit NODE` lifts the ban (the old serials stay revoked).

The records live in the server's state directory as small JSON files, written atomically,
so the CLI and the running server can share them without a database.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import os
import ssl
import tempfile
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgefaas.nodeauth.certificates import CertificateAuthority, CertificateRejected, check_certificate

ENROLL_PORT = 8472
CA_FILE = "ca.der"
CERTIFICATE_FILE = "node.crt"
ISSUED_FILE = "issued.json"
REVOKED_FILE = "revoked.json"


class EnrollmentRefused(Exception):
    """An enrollment the server will not grant; the message says why (sent back as a 403)."""


def enrollment_secret(key: bytes, node: str) -> str:
    """The secret that admits `node` (and no other name)."""
    return hmac.new(key, b"edgefaas-enroll:" + node.encode(), hashlib.sha256).hexdigest()


def ca_proof(secret: str, ca_certificate: bytes) -> str:
    """What proves to a device holding `secret` that the server that sent `ca_certificate` knows
    the enrollment key: the device trusts a CA it never saw only with this."""
    return hmac.new(secret.encode(), b"edgefaas-ca:" + ca_certificate, hashlib.sha256).hexdigest()


def _write_atomically(path: Path, data: bytes, mode: int = 0o644) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return default
    except ValueError as exc:
        raise RuntimeError(f"{path} is not valid JSON ({exc}): fix or remove it") from None


@dataclass(frozen=True)
class Revocations:
    serials: frozenset[int]
    nodes: frozenset[str]


class Records:
    """The server's records in `state_dir`: issued serials per node, and revocations."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir
        self.issued_file = state_dir / ISSUED_FILE
        self.revoked_file = state_dir / REVOKED_FILE
        # Enrollments arrive on concurrent HTTP threads: one read-modify-write of issued.json at a time.
        self._lock = threading.Lock()

    def issued(self) -> dict[str, list[str]]:
        return _read_json(self.issued_file, {})

    def revocations(self) -> Revocations:
        # Read afresh each time (a few hundred bytes): the CLI rewrites it beside the server.
        data = _read_json(self.revoked_file, {})
        return Revocations(
            frozenset(int(s, 16) for s in data.get("serials", [])), frozenset(data.get("nodes", []))
        )

    def revocations_stamp(self) -> float:
        """Changes whenever the revocation list is written (the server rereads it then)."""
        try:
            return self.revoked_file.stat().st_mtime_ns
        except FileNotFoundError:
            return 0.0

    def record_issue(self, node: str, serial: int) -> None:
        with self._lock:
            issued = self.issued()
            issued.setdefault(node, []).append(f"{serial:x}")
            _write_atomically(self.issued_file, json.dumps(issued, indent=1, sort_keys=True).encode())

    def _write_revocations(self, serials: set[int], nodes: set[str]) -> None:
        data = {"serials": sorted(f"{s:x}" for s in serials), "nodes": sorted(nodes)}
        _write_atomically(self.revoked_file, json.dumps(data, indent=1).encode())

    def revoke(self, node: str) -> list[str]:
        """Ban `node` and revoke every certificate issued to it; the serials revoked."""
        current = self.revocations()
        serials = [int(s, 16) for s in self.issued().get(node, [])]
        self._write_revocations(set(current.serials) | set(serials), set(current.nodes) | {node})
        return [f"{s:x}" for s in serials]

    def admit(self, node: str) -> bool:
        """Lift the ban on `node` (its old certificates stay revoked); False if it was not banned."""
        current = self.revocations()
        if node not in current.nodes:
            return False
        self._write_revocations(set(current.serials), set(current.nodes) - {node})
        return True


def load_or_make_ca_certificate(ca: CertificateAuthority, state_dir: Path) -> bytes:
    """The CA certificate kept in `state_dir`, made once; remade only if Parsec holds a new CA key.

    A new CA key (Parsec's store was wiped) invalidates every certificate issued before: the
    devices have to enroll again, which the next deploy does.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    path = state_dir / CA_FILE
    if path.exists():
        cert = x509.load_der_x509_certificate(path.read_bytes())
        spki = cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if spki == ca.public_key:
            return path.read_bytes()
    # Valid from a day back: a TLS client whose clock is behind still takes a CA made just now.
    certificate = ca.self_signed(days=3651, now=dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
    _write_atomically(path, certificate)
    return certificate


class Enroller:
    """The server's side of enrollment: checks a request and issues the certificate."""

    def __init__(self, ca: CertificateAuthority, ca_certificate: bytes, key: bytes, records: Records) -> None:
        self.ca, self.ca_certificate, self.key, self.records = ca, ca_certificate, key, records

    def enroll(self, node: str, request: bytes, secret: str) -> bytes:
        """A certificate for `node`, or EnrollmentRefused naming why not."""
        from cryptography import x509

        if not hmac.compare_digest(secret.encode(), enrollment_secret(self.key, node).encode()):
            raise EnrollmentRefused(f"wrong enrollment secret for node {node!r}")
        if node in self.records.revocations().nodes:
            raise EnrollmentRefused(f"node {node!r} is revoked: `edgefaas nodeauth admit {node}` lifts that")
        try:
            certificate = self.ca.issue(request)
        except CertificateRejected as exc:
            raise EnrollmentRefused(str(exc)) from None
        cert = x509.load_der_x509_certificate(certificate)
        names = [a.value for a in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
        if names != [node]:
            raise EnrollmentRefused(f"the certificate request names {names}, not node {node!r}")
        self.records.record_issue(node, cert.serial_number)
        return certificate


# -- the agent's side ---------------------------------------------------------------------------


def _opener(context: ssl.SSLContext | None) -> urllib.request.OpenerDirector:
    handlers: list[Any] = [urllib.request.ProxyHandler({})]
    if context is not None:
        handlers.append(urllib.request.HTTPSHandler(context=context))
    return urllib.request.build_opener(*handlers)


def post_json(url: str, body: dict[str, Any], timeout: float, context: ssl.SSLContext) -> dict[str, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with _opener(context).open(request, timeout=timeout) as reply:
            return json.loads(reply.read(256 * 1024))
    except urllib.error.HTTPError as exc:
        try:
            reason = json.loads(exc.read(64 * 1024)).get("error", "")
        except ValueError:
            reason = ""
        raise EnrollmentRefused(f"{url} answered {exc.code}: {reason or exc.reason}") from None


def fetch_ca(server_url: str, context: ssl.SSLContext, timeout: float = 10.0) -> tuple[bytes, frozenset[int]]:
    """The server's CA certificate and its revoked serials (public, like a CRL), over a TLS
    connection `context` verifies."""
    with _opener(context).open(f"{server_url}/v1/ca", timeout=timeout) as reply:
        data = json.loads(reply.read(1024 * 1024))
    return base64.b64decode(data["certificate"]), frozenset(int(s, 16) for s in data.get("revoked", []))


def bootstrap_ca(server_url: str, node: str, secret: str, timeout: float = 10.0) -> bytes:
    """The server's CA certificate, for a device that trusts none yet.

    The one request made without checking the server's certificate (there is nothing yet to
    check it against) sends no secret; what it brings back is trusted only if it carries the
    proof that the server knows the enrollment key behind this device's `secret`. Every later
    request verifies the server against the CA this returns.
    """
    import urllib.parse

    unverified = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE  # authenticated below by the proof, not by TLS
    url = f"{server_url}/v1/ca?{urllib.parse.urlencode({'node': node})}"
    with _opener(unverified).open(url, timeout=timeout) as reply:
        data = json.loads(reply.read(1024 * 1024))
    certificate = base64.b64decode(data["certificate"])
    if not hmac.compare_digest(str(data.get("proof", "")), ca_proof(secret, certificate)):
        raise EnrollmentRefused(
            f"the CA certificate from {server_url} carries no valid proof for {node!r}: "
            "not our authentication server, or another enrollment key"
        )
    return certificate


def holds_valid_certificate(
    parsec: Any, state_dir: Path, node: str, ca: tuple[bytes, frozenset[int]], margin_days: int = 30
) -> bool:
    """Whether `state_dir` holds a certificate from CA `ca` (certificate, revoked serials) for
    `node` and the node key now in its Parsec, unrevoked and valid `margin_days` more."""
    import datetime as dt

    from cryptography.hazmat.primitives import serialization

    from edgefaas.nodeauth.certificates import NODE_KEY, ensure_key

    certificate_file = state_dir / CERTIFICATE_FILE
    if not certificate_file.exists():  # asked before Parsec is: a check makes no key
        return False
    ca_certificate, revoked = ca
    try:
        cert = check_certificate(
            certificate_file.read_bytes(), ca_certificate, node=node, revoked=revoked, check_not_before=False
        )
    except CertificateRejected:
        return False
    if cert.not_valid_after_utc < dt.datetime.now(dt.UTC) + dt.timedelta(days=margin_days):
        return False
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return spki == ensure_key(parsec, NODE_KEY)  # else Parsec holds a new node key (its store was wiped)


def enroll(
    parsec: Any,
    server_url: str,
    node: str,
    secret: str,
    state_dir: Path,
    context: ssl.SSLContext,
    timeout: float = 10.0,
) -> bool:
    """Make sure `state_dir` holds a valid certificate for this node; True if one was issued now.

    `context` trusts the blueprint's CA: the secret travels only to a server it certified.
    """
    from edgefaas.nodeauth.certificates import certificate_request

    ca = fetch_ca(server_url, context, timeout)
    ca_certificate = ca[0]
    if holds_valid_certificate(parsec, state_dir, node, ca):
        _write_atomically(state_dir / CA_FILE, ca_certificate)
        return False
    request = certificate_request(parsec, node)
    reply = post_json(
        f"{server_url}/v1/enroll",
        {"node": node, "request": base64.b64encode(request).decode(), "secret": secret},
        timeout,
        context,
    )
    certificate = base64.b64decode(reply["certificate"])
    # The server's answer is checked too, but not against this node's clock's idea of "not yet".
    check_certificate(certificate, ca_certificate, node=node, check_not_before=False)
    _write_atomically(state_dir / CERTIFICATE_FILE, certificate)
    _write_atomically(state_dir / CA_FILE, ca_certificate)
    return True
