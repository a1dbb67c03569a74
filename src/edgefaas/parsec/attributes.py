"""Builders for PSA key attributes and algorithms, and short text descriptions.

The protobuf messages are deeply nested oneofs; these helpers give the few key
kinds edgefaas needs (RSA signing, RSA encryption, ECDSA) one call each, with
the same policies parsec-tool creates, so keys made by either tool interoperate.
"""

from __future__ import annotations

from enum import IntEnum

from .protos import parsec_pb2 as pb

KeyAttributes = pb.KeyAttributes
Algorithm = pb.Algorithm
AsymmetricSignature = pb.Algorithm.AsymmetricSignature
AsymmetricEncryption = pb.Algorithm.AsymmetricEncryption


class Hash(IntEnum):
    """PSA hash algorithms (values of ``Algorithm.Hash``)."""

    SHA_1 = 5
    SHA_224 = 6
    SHA_256 = 7
    SHA_384 = 8
    SHA_512 = 9
    SHA_512_224 = 10
    SHA_512_256 = 11
    SHA3_224 = 12
    SHA3_256 = 13
    SHA3_384 = 14
    SHA3_512 = 15


class EccFamily(IntEnum):
    """Elliptic curve families (values of ``KeyType.EccFamily``)."""

    SECP_K1 = 1
    SECP_R1 = 2
    SECP_R2 = 3
    SECT_K1 = 4
    SECT_R1 = 5
    SECT_R2 = 6
    BRAINPOOL_P_R1 = 7
    FRP = 8
    MONTGOMERY = 9


#: hashlib names, so callers can hash locally with the key's own hash algorithm.
HASHLIB_NAMES: dict[int, str] = {
    Hash.SHA_1: "sha1",
    Hash.SHA_224: "sha224",
    Hash.SHA_256: "sha256",
    Hash.SHA_384: "sha384",
    Hash.SHA_512: "sha512",
    Hash.SHA_512_224: "sha512_224",
    Hash.SHA_512_256: "sha512_256",
    Hash.SHA3_224: "sha3_224",
    Hash.SHA3_256: "sha3_256",
    Hash.SHA3_384: "sha3_384",
    Hash.SHA3_512: "sha3_512",
}


def _sign_hash(hash_alg: int) -> AsymmetricSignature.SignHash:
    return AsymmetricSignature.SignHash(specific=int(hash_alg))


def rsa_pkcs1v15_sign(hash_alg: int = Hash.SHA_256) -> AsymmetricSignature:
    """RSASSA-PKCS1-v1_5 over a digest made with ``hash_alg``."""
    alg = AsymmetricSignature()
    alg.rsa_pkcs1v15_sign.hash_alg.CopyFrom(_sign_hash(hash_alg))
    return alg


def rsa_pss(hash_alg: int = Hash.SHA_256) -> AsymmetricSignature:
    """RSASSA-PSS over a digest made with ``hash_alg``."""
    alg = AsymmetricSignature()
    alg.rsa_pss.hash_alg.CopyFrom(_sign_hash(hash_alg))
    return alg


def ecdsa(hash_alg: int = Hash.SHA_256) -> AsymmetricSignature:
    """Randomized ECDSA over a digest made with ``hash_alg``."""
    alg = AsymmetricSignature()
    alg.ecdsa.hash_alg.CopyFrom(_sign_hash(hash_alg))
    return alg


def rsa_pkcs1v15_crypt() -> AsymmetricEncryption:
    """RSAES-PKCS1-v1_5 encryption."""
    alg = AsymmetricEncryption()
    alg.rsa_pkcs1v15_crypt.SetInParent()
    return alg


def rsa_oaep(hash_alg: int = Hash.SHA_256) -> AsymmetricEncryption:
    """RSAES-OAEP with ``hash_alg`` for both the label hash and MGF1."""
    alg = AsymmetricEncryption()
    alg.rsa_oaep.hash_alg = int(hash_alg)
    return alg


def _signing_usage(attrs: KeyAttributes) -> None:
    flags = attrs.key_policy.key_usage_flags
    flags.sign_hash = flags.verify_hash = True
    flags.sign_message = flags.verify_message = True


def rsa_sign_key_attributes(bits: int = 2048, hash_alg: int = Hash.SHA_256) -> KeyAttributes:
    """An RSA key pair allowed to sign/verify with PKCS#1 v1.5 and ``hash_alg``."""
    attrs = KeyAttributes(key_bits=bits)
    attrs.key_type.rsa_key_pair.SetInParent()
    _signing_usage(attrs)
    attrs.key_policy.key_algorithm.asymmetric_signature.CopyFrom(rsa_pkcs1v15_sign(hash_alg))
    return attrs


def rsa_encrypt_key_attributes(bits: int = 2048, oaep_hash: int | None = None) -> KeyAttributes:
    """An RSA key pair for encrypt/decrypt: PKCS#1 v1.5, or OAEP when ``oaep_hash`` is set."""
    attrs = KeyAttributes(key_bits=bits)
    attrs.key_type.rsa_key_pair.SetInParent()
    flags = attrs.key_policy.key_usage_flags
    flags.encrypt = flags.decrypt = True
    alg = rsa_pkcs1v15_crypt() if oaep_hash is None else rsa_oaep(oaep_hash)
    attrs.key_policy.key_algorithm.asymmetric_encryption.CopyFrom(alg)
    return attrs


def rsa_public_encrypt_key_attributes(bits: int = 2048, oaep_hash: int | None = None) -> KeyAttributes:
    """Another party's RSA public key, imported to encrypt to it (PKCS#1 v1.5, or OAEP)."""
    attrs = KeyAttributes(key_bits=bits)
    attrs.key_type.rsa_public_key.SetInParent()
    attrs.key_policy.key_usage_flags.encrypt = True
    alg = rsa_pkcs1v15_crypt() if oaep_hash is None else rsa_oaep(oaep_hash)
    attrs.key_policy.key_algorithm.asymmetric_encryption.CopyFrom(alg)
    return attrs


def ecc_sign_key_attributes(
    curve: int = EccFamily.SECP_R1, bits: int = 256, hash_alg: int = Hash.SHA_256
) -> KeyAttributes:
    """An elliptic-curve key pair allowed to sign/verify with ECDSA and ``hash_alg``."""
    attrs = KeyAttributes(key_bits=bits)
    attrs.key_type.ecc_key_pair.curve_family = int(curve)
    _signing_usage(attrs)
    attrs.key_policy.key_algorithm.asymmetric_signature.CopyFrom(ecdsa(hash_alg))
    return attrs


# --------------------------------------------------------------------------
# Describing attributes (for listings and the CLI)


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def _hash_name(value: int) -> str:
    try:
        return Algorithm.Hash.Name(value)
    except ValueError:
        return f"Hash({value})"


def describe_key_type(attrs: KeyAttributes) -> str:
    """E.g. ``"RsaKeyPair"`` or ``"EccKeyPair(SECP_R1)"``; ``""`` when unset."""
    which = attrs.key_type.WhichOneof("variant")
    if which is None:
        return ""
    variant = getattr(attrs.key_type, which)
    if which in ("ecc_key_pair", "ecc_public_key"):
        return f"{_camel(which)}({pb.KeyType.EccFamily.Name(variant.curve_family)})"
    return _camel(which)


def describe_signature_alg(alg: AsymmetricSignature) -> str:
    which = alg.WhichOneof("variant")
    if which is None:
        return ""
    variant = getattr(alg, which)
    if "hash_alg" not in variant.DESCRIPTOR.fields_by_name:
        return _camel(which)
    hash_which = variant.hash_alg.WhichOneof("variant")
    inner = "Any" if hash_which == "any" else _hash_name(variant.hash_alg.specific)
    return f"{_camel(which)}({inner})"


def describe_algorithm(alg: Algorithm) -> str:
    """Short text for a key policy algorithm, e.g. ``"Ecdsa(SHA_256)"``."""
    which = alg.WhichOneof("variant")
    if which is None:
        return ""
    if which == "asymmetric_signature":
        return describe_signature_alg(alg.asymmetric_signature)
    if which == "asymmetric_encryption":
        enc = alg.asymmetric_encryption
        if enc.WhichOneof("variant") == "rsa_oaep":
            return f"RsaOaep({_hash_name(enc.rsa_oaep.hash_alg)})"
        return _camel(enc.WhichOneof("variant") or "")
    if which == "hash":
        return _hash_name(alg.hash)
    return _camel(which)


def usage_names(attrs: KeyAttributes) -> list[str]:
    """Names of the usage flags that are set, in field order."""
    flags = attrs.key_policy.key_usage_flags
    return [field.name for field in flags.DESCRIPTOR.fields if getattr(flags, field.name)]


def signature_hash(alg: AsymmetricSignature) -> int | None:
    """The specific hash a signature algorithm uses, or None (raw / any-hash)."""
    which = alg.WhichOneof("variant")
    if which is None:
        return None
    variant = getattr(alg, which)
    if "hash_alg" not in variant.DESCRIPTOR.fields_by_name:
        return None
    if variant.hash_alg.WhichOneof("variant") != "specific":
        return None
    return variant.hash_alg.specific
