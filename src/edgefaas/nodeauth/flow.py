"""The authentication flow of the seed slides, one challenge at a time, with Parsec on both ends.

Server: picks a random challenge and sends it with its public encryption key (an RSA key
held in its Parsec). Agent: encrypts the challenge to that key through its own Parsec,
signs it with its node key (also in its Parsec) and returns both with its certificate.
Server: decrypts through Parsec and compares (the slides' check), then checks that the
certificate comes from its CA, is valid, not revoked and issued to this node, and that
the node key signed this very challenge. Anything else (garbage, a wrong answer, another
node's certificate) is a refusal with the reason, never an exception.

The transport (HTTP between the services) and the Kubernetes side (labelling, removing
nodes) are separate: this module only decides.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass
from typing import Any

from edgefaas.nodeauth.certificates import NODE_KEY, CertificateRejected, check_certificate

SERVER_KEY = "edgefaas-nodeauth"
CHALLENGE_BYTES = 32
RSA_BITS = 2048


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise ValueError(f"{what} is missing or not a string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{what} is not base64") from None


def _signed_message(node: str, nonce: bytes) -> bytes:
    # The node name is bound in: a signature made for one node's challenge cannot be replayed.
    return hashlib.sha256(b"edgefaas-nodeauth:" + node.encode() + b":" + nonce).digest()


def server_public_key(parsec: Any) -> bytes:
    """The server's RSA public key (PKCS#1 DER), made in its Parsec on first use."""
    from edgefaas.parsec.attributes import Hash

    if SERVER_KEY not in {key.name for key in parsec.list_keys()}:
        parsec.generate_rsa_encrypt_key(SERVER_KEY, RSA_BITS, oaep_hash=Hash.SHA_256)
    return parsec.export_public_key(SERVER_KEY, "raw")


def new_challenge(node: str, public_key: bytes) -> dict[str, str]:
    return {"node": node, "nonce": _b64(os.urandom(CHALLENGE_BYTES)), "server_key": _b64(public_key)}


def answer(
    parsec: Any, challenge: dict[str, Any], certificate: bytes, node_key: str = NODE_KEY
) -> dict[str, str]:
    """The agent's answer: the challenge encrypted to the server, signed by the node key."""
    from edgefaas.parsec.attributes import Hash, rsa_public_encrypt_key_attributes

    nonce = _unb64(challenge.get("nonce"), "nonce")
    public = _unb64(challenge.get("server_key"), "server_key")
    node = str(challenge.get("node", ""))
    imported = f"edgefaas-nodeauth-server-{hashlib.sha256(public).hexdigest()[:12]}"
    if imported not in {key.name for key in parsec.list_keys()}:
        parsec.import_key(imported, rsa_public_encrypt_key_attributes(RSA_BITS, Hash.SHA_256), public)
    return {
        "node": node,
        "ciphertext": _b64(parsec.asymmetric_encrypt(imported, nonce)),
        "signature": _b64(parsec.sign_hash(node_key, _signed_message(node, nonce))),
        "certificate": _b64(certificate),
    }


@dataclass(frozen=True)
class Verdict:
    certified: bool
    reason: str
    serial: int | None = None


def judge(
    parsec: Any,
    challenge: dict[str, str],
    reply: Any,
    ca_certificate: bytes,
    revoked: set[int] | frozenset[int] = frozenset(),
) -> Verdict:
    """Whether `reply` certifies the node `challenge` was sent to; the reason either way."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature

    from edgefaas.parsec.errors import ParsecError

    node = challenge["node"]
    nonce = base64.b64decode(challenge["nonce"])
    if not isinstance(reply, dict):
        return Verdict(False, f"malformed answer: expected a JSON object, got {type(reply).__name__}")
    try:
        ciphertext = _unb64(reply.get("ciphertext"), "ciphertext")
        signature = _unb64(reply.get("signature"), "signature")
        certificate = _unb64(reply.get("certificate"), "certificate")
    except ValueError as exc:
        return Verdict(False, f"malformed answer: {exc}")
    try:
        decrypted = parsec.asymmetric_decrypt(SERVER_KEY, ciphertext)
    except ParsecError as exc:
        return Verdict(False, f"the challenge did not decrypt: {exc}")
    if decrypted != nonce:
        return Verdict(False, "the challenge came back wrong")
    try:
        cert = check_certificate(certificate, ca_certificate, revoked=revoked, node=node)
    except CertificateRejected as exc:
        return Verdict(False, f"certificate rejected: {exc}")
    if len(signature) != 64:
        return Verdict(False, "the node's signature is not a P-256 signature", cert.serial_number)
    der_signature = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    try:
        cert.public_key().verify(
            der_signature, _signed_message(node, nonce), ec.ECDSA(Prehashed(hashes.SHA256()))
        )
    except (InvalidSignature, TypeError, ValueError):
        return Verdict(False, "the node key did not sign this challenge", cert.serial_number)
    return Verdict(
        True, f"certificate {cert.serial_number:x} from the CA, challenge answered", cert.serial_number
    )
