"""License tokens signed by a Parsec-held ES256 key (tamper-proof licenses)."""

from __future__ import annotations

import pytest

from edgefaas.gateway.licenses import HmacSigner, InvalidToken, ParsecSigner, make_token, read_token

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
    signer = ParsecSigner(FakeParsec())
    with pytest.raises(InvalidToken):
        read_token(signer, make_token(ParsecSigner(FakeParsec()), LICENSE))
    with pytest.raises(InvalidToken):  # an HMAC token cannot pass for an ES256 one
        read_token(signer, make_token(HmacSigner(b"k" * 32), LICENSE))


def test_the_verified_cache_is_bounded():
    signer = ParsecSigner(FakeParsec())
    signer.CACHE_SIZE = 3
    tokens = [make_token(signer, f"lic_{i:016x}") for i in range(5)]
    for token in tokens:
        read_token(signer, token)
    assert len(signer._verified) == 3
    assert read_token(signer, tokens[0]) == f"lic_{0:016x}"  # evicted, verified again in full
