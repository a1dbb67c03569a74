"""License tokens, the bearer credentials callers present: JWS compact tokens (RFC 7515).

A token is ``base64url(header).base64url(claims).base64url(signature)``, with header
``{"alg", "kid", "typ": "JWT"}`` and the registered JWT claims ``sub`` (the license id) and
``iat`` (when it was issued), so any JWT library verifies one with the signer's exported
public key (ES256) or the shared key (HS256). Licenses do not expire (they are revoked), so
there is no ``exp``.

The signature is made by a TokenSigner: ParsecSigner (ES256, an ECDSA P-256 key held in
Parsec, so the private key never exists outside the service) where the gateway runs next to
Parsec, as on a SONiC switch, or HmacSigner (HS256, a random key in the data dir)
elsewhere. A verifier accepts only its own algorithm, so a token cannot pick a weaker one
(or ``none``), and tokens made by one signer do not verify under the other.

The JWS is put together here rather than by a JWT library: the ES256 signature has to come
from Parsec (a sign-hash call on the service), which a library's signing step cannot hand
off, and what remains is three base64url parts. The unit tests check that PyJWT verifies
what this module makes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

# The refusal of anything that is not three base64url parts with a JOSE header, tokens of an
# earlier format included: it tells the caller what a token looks like and what to do.
NOT_JWS = "not a JWS compact token (header.payload.signature); re-issue it"


class InvalidToken(Exception):
    pass


class TokenSigner(ABC):
    algorithm: str  # the JWS "alg" written into every token; a verifier refuses any other
    key_id: str  # the JWS "kid"

    @abstractmethod
    def sign(self, message: bytes) -> bytes:
        """The JWS signature of ``message`` (the token's ``header.claims`` ASCII bytes)."""

    @abstractmethod
    def verify(self, message: bytes, signature: bytes) -> bool: ...


class HmacSigner(TokenSigner):
    algorithm = "HS256"

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("an HMAC license key must be at least 32 bytes")
        self._key = key
        self.key_id = hashlib.sha256(b"edgefaas-license-key:" + key).hexdigest()[:12]

    def sign(self, message: bytes) -> bytes:
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def verify(self, message: bytes, signature: bytes) -> bool:
        return hmac.compare_digest(self.sign(message), signature)


class Es256Verifier:
    """Verifies ES256 signatures with one public key (DER SubjectPublicKeyInfo).

    A token is verified in full the first time it is seen; the exact bytes that verified are
    then remembered (a bounded LRU), so a caller's repeated calls cost a dictionary lookup and
    any edited token is a different key and is verified afresh.
    """

    algorithm = "ES256"
    CACHE_SIZE = 4096
    SIGNATURE_BYTES = 64  # r || s, 32 bytes each on P-256

    def __init__(self, spki: bytes) -> None:
        from cryptography.hazmat.primitives.serialization import load_der_public_key

        self.spki = spki
        self._public = load_der_public_key(spki)
        self.key_id = hashlib.sha256(spki).hexdigest()[:12]
        self._verified: dict[bytes, None] = {}
        self._lock = threading.Lock()

    def verify(self, message: bytes, signature: bytes) -> bool:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

        if len(signature) != self.SIGNATURE_BYTES:
            return False
        seen = message + b"." + signature
        with self._lock:
            if seen in self._verified:
                self._verified[seen] = self._verified.pop(seen)  # most recently used last
                return True
        half = self.SIGNATURE_BYTES // 2
        der = encode_dss_signature(
            int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big")
        )
        try:
            self._public.verify(der, message, ec.ECDSA(hashes.SHA256()))  # type: ignore[call-arg, union-attr]
        except InvalidSignature:
            return False
        with self._lock:
            self._verified[seen] = None
            while len(self._verified) > self.CACHE_SIZE:
                self._verified.pop(next(iter(self._verified)))
        return True


class ParsecSigner(TokenSigner):
    """ES256 (ECDSA P-256, SHA-256) with the private key held in Parsec: it never leaves the service.

    The key (`key_name`, made on first use) belongs to the gateway's own Parsec identity (its
    Unix user under the UnixPeerCredentials authenticator). Signing asks Parsec; verifying
    needs only the public key, exported once, so a call costs no round trip to the service.
    Each gateway has a key of its own: the others verify its tokens by their kid with the
    public key it published in the shared store (``LicenseAuthority``).
    """

    algorithm = "ES256"
    SIGNATURE_BYTES = Es256Verifier.SIGNATURE_BYTES

    def __init__(self, client: Any, key_name: str = "edgefaas-license") -> None:
        from edgefaas.parsec.errors import ParsecError

        self._client = client
        self._key = key_name
        if key_name not in {key.name for key in client.list_keys()}:
            try:
                client.generate_ecc_sign_key(key_name)
            except ParsecError:  # another replica made it first: use that one
                if key_name not in {key.name for key in client.list_keys()}:
                    raise
        self.verifier = Es256Verifier(client.export_public_key(key_name, "der"))
        self.public_key = self.verifier.spki
        self.key_id = self.verifier.key_id

    def sign(self, message: bytes) -> bytes:
        # Parsec signs in PSA's format, r || s, which is JWS ES256's own: no DER to undo.
        signature = self._client.sign_hash(self._key, hashlib.sha256(message).digest())
        if len(signature) != self.SIGNATURE_BYTES:
            raise ValueError(f"Parsec returned a {len(signature)}-byte ECDSA signature, not r || s")
        return signature

    def verify(self, message: bytes, signature: bytes) -> bool:
        return self.verifier.verify(message, signature)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str, what: str) -> bytes:
    """base64url without padding, in its one canonical spelling (a token cannot be re-spelt)."""
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise InvalidToken(f"malformed token {what}") from None
    if _b64(data) != text:
        raise InvalidToken(f"malformed token {what}")
    return data


def _json_object(text: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(_unb64(text, what))
    except ValueError:  # not JSON, or not UTF-8
        raise InvalidToken(f"malformed token {what}") from None
    if not isinstance(value, dict):
        raise InvalidToken(f"malformed token {what}")
    return value


def _compact_json(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


def make_token(signer: TokenSigner, license_id: str, issued_at: float | None = None) -> str:
    """A JWS compact token naming ``license_id`` (``sub``), signed by ``signer``."""
    header = {"alg": signer.algorithm, "kid": signer.key_id, "typ": "JWT"}
    claims = {"sub": license_id, "iat": int(time.time() if issued_at is None else issued_at)}
    signing_input = f"{_b64(_compact_json(header))}.{_b64(_compact_json(claims))}"
    return f"{signing_input}.{_b64(signer.sign(signing_input.encode('ascii')))}"


def read_token(
    signer: TokenSigner, token: str, peer: Callable[[str], Es256Verifier | None] | None = None
) -> str:
    """The license id in a genuine token; InvalidToken for anything forged, edited or malformed.

    ``peer``: for an ES256 token whose kid is not this signer's, the verifier of the gateway
    that made it (None: no gateway published that kid, and the token is refused).
    """
    parts = token.split(".")
    if len(parts) != 3 or not token.isascii():
        raise InvalidToken(NOT_JWS)
    try:
        header = _json_object(parts[0], "header")
    except InvalidToken:
        raise InvalidToken(NOT_JWS) from None
    if "alg" not in header:
        raise InvalidToken(NOT_JWS)
    if header["alg"] != signer.algorithm:
        raise InvalidToken(
            f"the token is signed {header['alg']!r}; this gateway accepts {signer.algorithm} only"
        )
    if "crit" in header:  # RFC 7515: extensions a verifier does not know make the token invalid
        raise InvalidToken("the token's header names extensions (crit) this gateway does not implement")
    signature = _unb64(parts[2], "signature")
    verifier: TokenSigner | Es256Verifier = signer
    kid = header.get("kid")
    if peer is not None and signer.algorithm == "ES256" and kid != signer.key_id:
        found = peer(kid) if isinstance(kid, str) else None
        if found is None:
            raise InvalidToken(f"the token is signed by key {kid!r}, which no gateway of this site published")
        verifier = found
    if not verifier.verify(f"{parts[0]}.{parts[1]}".encode("ascii"), signature):
        raise InvalidToken("token signature does not verify")
    claims = _json_object(parts[1], "claims")
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise InvalidToken("token claims are not acceptable: no license id (sub)")
    return claims["sub"]
