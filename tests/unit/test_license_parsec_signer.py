"""License tokens signed by a Parsec-held ES256 key (tamper-proof licenses)."""

from __future__ import annotations

import jwt
import pytest

from edgefaas.gateway.licensing.tokens import HmacSigner, InvalidToken, ParsecSigner, make_token, read_token
from edgefaas.parsec.der import pem

from .parsec_fakes import FakeParsec

pytestmark = pytest.mark.unit
LICENSE = "lic_0123456789abcdef"


def test_the_key_is_made_once_in_parsec_and_tokens_verify():
    parsec = FakeParsec()
    signer = ParsecSigner(parsec)
    again = ParsecSigner(parsec)  # a restart: the same key, not a new one
    assert list(parsec.keys) == ["edgefaas-license"]
    token = make_token(signer, LICENSE)
    assert parsec.signed == 1
    assert read_token(again, token) == LICENSE
    assert signer.key_id == again.key_id


@pytest.mark.parametrize("part", [1, 2])
def test_a_token_edited_by_one_byte_is_refused(part):
    signer = ParsecSigner(FakeParsec())
    token = make_token(signer, LICENSE)
    assert read_token(signer, token) == LICENSE  # and now it is cached as verified
    pieces = token.split(".")
    text = pieces[part]
    middle = len(text) // 2
    pieces[part] = text[:middle] + ("A" if text[middle] != "A" else "B") + text[middle + 1 :]
    with pytest.raises(InvalidToken):
        read_token(signer, ".".join(pieces))


def test_tokens_of_another_key_or_algorithm_are_refused():
    parsec = FakeParsec()
    signer = ParsecSigner(parsec)
    with pytest.raises(InvalidToken):
        read_token(signer, make_token(ParsecSigner(FakeParsec()), LICENSE))
    with pytest.raises(InvalidToken):  # an HMAC token cannot pass for an ES256 one
        read_token(signer, make_token(HmacSigner(b"k" * 32), LICENSE))
    # Nor one keyed with the public key, the classic confusion of a verifier that trusts "alg".
    public = _public_pem(parsec).encode()
    with pytest.raises(InvalidToken, match="accepts ES256 only"):
        read_token(signer, make_token(HmacSigner(public), LICENSE))


def test_the_verified_cache_is_bounded():
    signer = ParsecSigner(FakeParsec())
    signer.verifier.CACHE_SIZE = 3
    tokens = [make_token(signer, f"lic_{i:016x}") for i in range(5)]
    for token in tokens:
        read_token(signer, token)
    assert len(signer.verifier._verified) == 3
    assert read_token(signer, tokens[0]) == f"lic_{0:016x}"  # evicted, verified again in full


def _public_pem(parsec: FakeParsec) -> str:
    """The key as an operator exports it (edgefaas parsec export-public-key ... --format pem)."""
    return pem(parsec.export_public_key("edgefaas-license", "der"))


def test_a_jwt_library_verifies_tokens_with_the_exported_public_key():
    parsec = FakeParsec()
    signer = ParsecSigner(parsec)
    token = make_token(signer, LICENSE, issued_at=1_700_000_000)
    assert jwt.get_unverified_header(token) == {"alg": "ES256", "kid": signer.key_id, "typ": "JWT"}
    public = _public_pem(parsec)
    assert jwt.decode(token, public, algorithms=["ES256"]) == {"sub": LICENSE, "iat": 1_700_000_000}
    header, claims, signature = token.split(".")
    edited = f"{header}.{claims[:-2]}{'AA' if claims[-2:] != 'AA' else 'BA'}.{signature}"
    with pytest.raises(jwt.InvalidTokenError):
        jwt.decode(edited, public, algorithms=["ES256"])
    with pytest.raises(jwt.InvalidSignatureError):  # another Parsec's key
        jwt.decode(token, _public_pem(_with_key(FakeParsec())), algorithms=["ES256"])


def test_a_token_a_jwt_library_signs_with_the_key_verifies():
    parsec = FakeParsec()
    signer = ParsecSigner(parsec)
    token = jwt.encode({"sub": LICENSE, "iat": 0}, parsec.keys["edgefaas-license"], algorithm="ES256")
    assert read_token(signer, token) == LICENSE


def _with_key(parsec: FakeParsec) -> FakeParsec:
    parsec.generate_ecc_sign_key("edgefaas-license")
    return parsec
