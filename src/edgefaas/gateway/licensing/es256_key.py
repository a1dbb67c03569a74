"""An ES256 signer whose P-256 key is a file in the data dir: the fallback where no Parsec runs.

The license signer's own fallback is HMAC, which only a holder of the same secret can verify.
What the cloud signs for other sites (the function catalogue) must verify with a public key
alone, so without Parsec the key is an ECDSA key in a 0600 file instead. On a SONiC switch the
ParsecSigner takes its place and the private key never exists outside the Parsec service.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from ..auth import write_secret_file
from .tokens import Es256Verifier, TokenSigner


class LocalEs256Signer(TokenSigner):
    """ES256 (ECDSA P-256, SHA-256), signatures r || s as JWS writes them; the key in ``path``."""

    algorithm = "ES256"

    def __init__(self, path: Path) -> None:
        if not path.exists():
            key = ec.generate_private_key(ec.SECP256R1())
            pem = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            write_secret_file(path, pem)  # a second process starting at once keeps the first's key
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey) or loaded.curve.name != "secp256r1":
            raise ValueError(f"{path} is not an ECDSA P-256 private key")
        self._key = loaded
        self.public_key = loaded.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.verifier = Es256Verifier(self.public_key)
        self.key_id = self.verifier.key_id

    def sign(self, message: bytes) -> bytes:
        r, s = decode_dss_signature(self._key.sign(message, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def verify(self, message: bytes, signature: bytes) -> bool:
        return self.verifier.verify(message, signature)


def public_pem(spki: bytes) -> str:
    """A DER SubjectPublicKeyInfo as PEM (what an edge is given to verify the cloud with)."""
    key = serialization.load_der_public_key(spki)
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def spki_from_pem(pem: bytes) -> bytes:
    """The DER SubjectPublicKeyInfo of a PEM public key; ValueError if it is not an ECDSA P-256 key."""
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ValueError("not an ECDSA P-256 public key")
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
