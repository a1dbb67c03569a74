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

    def destroy_key(self, name: str) -> None:
        del self.keys[name]

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


class FakeParsecWithRsa(FakeParsec):
    """FakeParsec plus the RSA-OAEP encryption keys the node authentication flow uses."""

    def __init__(self) -> None:
        super().__init__()
        self.rsa: dict[str, object] = {}  # name -> private key, or public key for imported ones

    def list_keys(self):
        return [type("Key", (), {"name": name}) for name in [*self.keys, *self.rsa]]

    def generate_rsa_encrypt_key(self, name: str, bits: int = 2048, oaep_hash: int | None = None) -> None:
        from cryptography.hazmat.primitives.asymmetric import rsa

        self.rsa[name] = rsa.generate_private_key(public_exponent=65537, key_size=bits)

    def export_public_key(self, name: str, format: str = "der") -> bytes:
        if name not in self.rsa:
            return super().export_public_key(name, format)
        key = self.rsa[name]
        public = key.public_key() if hasattr(key, "public_key") else key
        return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)

    def import_key(self, name: str, attributes, data: bytes) -> None:
        from edgefaas.parsec.der import rsa_spki

        self.rsa[name] = serialization.load_der_public_key(rsa_spki(data))

    def asymmetric_encrypt(self, name: str, plaintext: bytes) -> bytes:
        key = self.rsa[name]
        public = key.public_key() if hasattr(key, "public_key") else key
        return public.encrypt(plaintext, _oaep())

    def asymmetric_decrypt(self, name: str, ciphertext: bytes) -> bytes:
        from edgefaas.parsec.errors import PsaGenericError

        try:
            return self.rsa[name].decrypt(ciphertext, _oaep())
        except ValueError as exc:
            raise PsaGenericError(str(exc)) from None


def _oaep():
    from cryptography.hazmat.primitives.asymmetric import padding

    return padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
