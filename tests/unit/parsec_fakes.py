"""A stand-in for the Parsec client in unit tests: the operations signers and CAs use, real keys."""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature


class FakeParsec:
    """What ParsecSigner asks of the service, with a real P-256 key that never leaves this object."""

    def __init__(self) -> None:
        self.keys: dict[str, ec.EllipticCurvePrivateKey] = {}
        self.signed = 0

    def list_keys(self):
        return [type("Key", (), {"name": name}) for name in self.keys]

    def generate_ecc_sign_key(self, name: str) -> None:
        self.keys[name] = ec.generate_private_key(ec.SECP256R1())

    def export_public_key(self, name: str, format: str = "der") -> bytes:
        return (
            self.keys[name]
            .public_key()
            .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        )

    def sign_hash(self, name: str, digest: bytes) -> bytes:
        self.signed += 1
        der = self.keys[name].sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        r, s = decode_dss_signature(der)
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
