"""A P-256 private key held in Parsec, in the shape `cryptography`'s X.509 builders sign with.

The builders accept any `EllipticCurvePrivateKey` and call its `sign`; this one asks Parsec
to sign the SHA-256 of the data, so certificates and requests are built by the library while
the key itself never leaves the service. Everything that would need the private value refuses.
"""

from __future__ import annotations

import hashlib
from typing import Any, NoReturn

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

P256_SIGNATURE_BYTES = 64  # PSA's r || s, 32 bytes each


class ParsecEcKey(ec.EllipticCurvePrivateKey):
    """ECDSA P-256 key `name` in the Parsec service `parsec` (a ParsecClient or a stand-in)."""

    def __init__(self, parsec: Any, name: str) -> None:
        self.parsec = parsec
        self.name = name
        self._public: ec.EllipticCurvePublicKey | None = None

    def _refuse(self, what: str) -> NoReturn:
        raise TypeError(f"{what}: the private key {self.name!r} lives in Parsec and never leaves it")

    @property
    def curve(self) -> ec.EllipticCurve:
        return ec.SECP256R1()

    @property
    def key_size(self) -> int:
        return 256

    def public_key(self) -> ec.EllipticCurvePublicKey:
        if self._public is None:
            public = serialization.load_der_public_key(self.parsec.export_public_key(self.name, "der"))
            if not isinstance(public, ec.EllipticCurvePublicKey) or public.curve.name != "secp256r1":
                raise TypeError(f"Parsec key {self.name!r} is not a P-256 ECDSA key")
            self._public = public
        return self._public

    def sign(self, data: bytes, signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:
        """The DER ECDSA signature of SHA-256(`data`), made by Parsec (which answers r || s)."""
        if not (
            isinstance(signature_algorithm, ec.ECDSA)
            and isinstance(signature_algorithm.algorithm, hashes.SHA256)
        ):
            raise TypeError(f"Parsec key {self.name!r} signs ECDSA with SHA-256 only")
        raw = self.parsec.sign_hash(self.name, hashlib.sha256(data).digest())
        if len(raw) != P256_SIGNATURE_BYTES:
            raise ValueError(f"Parsec returned a {len(raw)}-byte signature, not a P-256 r || s")
        half = P256_SIGNATURE_BYTES // 2
        return encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))

    def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
        self._refuse("no ECDH with a signing key")

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        self._refuse("no private numbers")

    def private_bytes(
        self,
        encoding: serialization.Encoding,
        format: serialization.PrivateFormat,
        encryption_algorithm: serialization.KeySerializationEncryption,
    ) -> bytes:
        self._refuse("no private bytes")

    # A handle names the key and caches only its public half: a copy is the same key.
    def __copy__(self) -> ParsecEcKey:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> ParsecEcKey:
        return self
