"""Wire protocol 1.0: header layout, framing, response reading, and request bodies.

Request bodies are checked twice: with the generated messages, and with a tiny
independent protobuf decoder against the field numbers in the design notes, so
a wrong field number in parsec.proto cannot hide behind a matching decoder.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgefaas.parsec import (
    AuthType,
    MalformedResponse,
    Opcode,
    ParsecClient,
    ParsecError,
    Provider,
    ecc_sign_key_attributes,
    ecdsa,
    rsa_encrypt_key_attributes,
    rsa_oaep,
    rsa_pkcs1v15_crypt,
    rsa_pkcs1v15_sign,
    rsa_sign_key_attributes,
)
from edgefaas.parsec.errors import ResponseTooLarge, WireProtocolVersionNotSupported
from edgefaas.parsec.protos import parsec_pb2 as pb
from edgefaas.parsec.wire import (
    HEADER_LEN,
    MAGIC,
    WireHeader,
    decode_response,
    encode_request,
    read_response,
)

pytestmark = pytest.mark.unit

PING_VECTOR = base64.b64decode("EKfAXh4AAQAAAAAAAAAAAAAAAAAAAAAAAAAAAAEAAAAAAAAA")


def raw_header(**overrides: int) -> bytes:
    """A response header built field by field from the design table."""
    f = {
        "magic": MAGIC,
        "hdr_size": 30,
        "maj": 1,
        "min": 0,
        "flags": 0,
        "provider": 0,
        "session": 0,
        "content_type": 0,
        "accept_type": 0,
        "auth_type": 0,
        "body_len": 0,
        "auth_len": 0,
        "opcode": 1,
        "status": 0,
        "r1": 0,
        "r2": 0,
    }
    f.update(overrides)
    return struct.pack("<IHBBHBQBBBIHIHBB", *f.values())


# ----------------------------------------------------------------------------- header


def test_ping_request_is_the_known_good_vector() -> None:
    assert encode_request(Opcode.PING, b"") == PING_VECTOR
    assert len(PING_VECTOR) == HEADER_LEN == 36


def test_known_good_ping_response_decodes() -> None:
    header, body = decode_response(raw_header(body_len=2) + bytes([0x08, 0x01]))
    assert (header.opcode, header.status, header.body_len) == (Opcode.PING, 0, 2)
    result = pb.PingResult.FromString(body)
    assert (result.wire_protocol_version_maj, result.wire_protocol_version_min) == (1, 0)


def test_header_field_offsets_match_the_table() -> None:
    data = WireHeader(
        opcode=0x0A0B0C0D,
        provider=0x11,
        body_len=0x01020304,
        auth_type=0x33,
        auth_len=0x0506,
        status=0x0708,
        flags=0x2122,
        session=0x4142434445464748,
        content_type=0x51,
        accept_type=0x52,
    ).pack()
    assert data[0:4] == MAGIC.to_bytes(4, "little")
    assert data[4:6] == (30).to_bytes(2, "little")
    assert data[6:8] == b"\x01\x00"
    assert data[8:10] == (0x2122).to_bytes(2, "little")
    assert data[10] == 0x11
    assert data[11:19] == (0x4142434445464748).to_bytes(8, "little")
    assert (data[19], data[20], data[21]) == (0x51, 0x52, 0x33)
    assert data[22:26] == (0x01020304).to_bytes(4, "little")
    assert data[26:28] == (0x0506).to_bytes(2, "little")
    assert data[28:32] == (0x0A0B0C0D).to_bytes(4, "little")
    assert data[32:34] == (0x0708).to_bytes(2, "little")
    assert data[34:36] == b"\0\0"


@given(
    opcode=st.integers(0, 2**32 - 1),
    provider=st.integers(0, 255),
    body_len=st.integers(0, 2**32 - 1),
    auth_type=st.integers(0, 255),
    auth_len=st.integers(0, 2**16 - 1),
    status=st.integers(0, 2**16 - 1),
    session=st.integers(0, 2**64 - 1),
    flags=st.integers(0, 2**16 - 1),
)
def test_header_roundtrip(**fields: int) -> None:
    header = WireHeader(**fields)
    packed = header.pack()
    assert len(packed) == 36
    assert WireHeader.unpack(packed) == header


def test_request_framing_is_header_body_auth() -> None:
    req = encode_request(Opcode.LIST_KEYS, b"BODY", provider=Provider.CORE, auth_type=3, auth=b"\xe8\x03\0\0")
    assert req[36:40] == b"BODY" and req[40:] == b"\xe8\x03\0\0"
    header = WireHeader.unpack(req[:36])
    assert (header.opcode, header.body_len, header.auth_len, header.auth_type) == (0x1A, 4, 4, 3)


def test_auth_longer_than_u16_is_a_parsec_error() -> None:
    with pytest.raises(ParsecError, match="65535"):
        encode_request(Opcode.LIST_KEYS, b"", auth_type=1, auth=b"a" * 70000)


@pytest.mark.parametrize(
    ("overrides", "error", "text"),
    [
        ({"magic": 0x12345678}, MalformedResponse, "magic"),
        ({"hdr_size": 31}, MalformedResponse, "header size"),
        ({"maj": 2}, WireProtocolVersionNotSupported, "2.0"),
        ({"min": 1}, WireProtocolVersionNotSupported, "1.1"),
        ({"r1": 1}, MalformedResponse, "reserved"),
        ({"r2": 7}, MalformedResponse, "reserved"),
    ],
)
def test_bad_headers_are_rejected(overrides: dict[str, int], error: type, text: str) -> None:
    with pytest.raises(error, match=text):
        WireHeader.unpack(raw_header(**overrides))


def test_unpack_wrong_length() -> None:
    with pytest.raises(MalformedResponse, match="35 bytes"):
        WireHeader.unpack(PING_VECTOR[:35])


# ----------------------------------------------------------------------------- reading


def trickle(data: bytes, step: int) -> Callable[[int], bytes]:
    """A recv() that hands out at most ``step`` bytes per call, like a slow socket."""
    pos = 0

    def recv(n: int) -> bytes:
        nonlocal pos
        chunk = data[pos : pos + min(n, step)]
        pos += len(chunk)
        return chunk

    return recv


@pytest.mark.parametrize("step", [1, 3, 36, 4096])
def test_read_response_reassembles_short_reads(step: int) -> None:
    body = pb.ListOpcodesResult(opcodes=list(range(1, 40))).SerializeToString()
    data = raw_header(opcode=9, body_len=len(body)) + body
    header, got = read_response(trickle(data, step))
    assert header.opcode == 9 and got == body


def test_truncated_body_is_malformed() -> None:
    with pytest.raises(MalformedResponse, match="5 of 10 bytes of the response body"):
        decode_response(raw_header(body_len=10) + b"12345")


def test_oversize_announced_body_is_refused_without_reading_it() -> None:
    calls: list[int] = []
    data = raw_header(body_len=(1 << 20) + 1)

    def recv(n: int) -> bytes:
        calls.append(n)
        return data[sum(calls) - n : sum(calls)]

    with pytest.raises(ResponseTooLarge, match="1048577"):
        read_response(recv)
    assert sum(calls) == 36  # stopped after the header


# ----------------------------------------------------------------------------- bodies


def proto_fields(data: bytes) -> dict[int, list[tuple[int, Any]]]:
    """Independent protobuf wire decoder: field number -> [(wire type, value)]."""
    out: dict[int, list[tuple[int, Any]]] = {}
    pos = 0

    def varint() -> int:
        nonlocal pos
        value = shift = 0
        while True:
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    while pos < len(data):
        key = varint()
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value: Any = varint()
        elif wire_type == 2:
            length = varint()
            value = data[pos : pos + length]
            pos += length
        else:
            raise AssertionError(f"unexpected wire type {wire_type}")
        out.setdefault(number, []).append((wire_type, value))
    return out


def assert_fields(data: bytes, expected: dict[int, Any]) -> None:
    """dict = nested message, int = varint, str/bytes = length-delimited, list = repeated."""
    got = proto_fields(data)
    assert set(got) == set(expected), (got, expected)
    for number, want in expected.items():
        values = got[number]
        wants = want if isinstance(want, list) else [want]
        assert len(values) == len(wants), (number, values)
        for (wire_type, value), item in zip(values, wants, strict=True):
            if isinstance(item, dict):
                assert wire_type == 2
                assert_fields(value, item)
            elif isinstance(item, int):
                assert (wire_type, value) == (0, item), number
            else:
                raw = item.encode() if isinstance(item, str) else item
                assert (wire_type, value) == (2, raw), number


SHA_256 = 7
SIGN_USAGE = {6: 1, 7: 1, 8: 1, 9: 1}
ECDSA_SHA256 = {4: {1: {2: SHA_256}}}  # AsymmetricSignature.ecdsa.hash_alg.specific
RSA_SIGN_SHA256 = {1: {1: {2: SHA_256}}}  # .rsa_pkcs1v15_sign.hash_alg.specific
ECC_ATTRS = {
    1: {11: {1: 2}},  # key_type.ecc_key_pair.curve_family = SECP_R1
    2: 256,
    3: {1: SIGN_USAGE, 2: {6: ECDSA_SHA256}},  # policy: usage, algorithm.asymmetric_signature
}
RSA_SIGN_ATTRS = {1: {10: {}}, 2: 2048, 3: {1: SIGN_USAGE, 2: {6: RSA_SIGN_SHA256}}}
RSA_CRYPT_ATTRS = {1: {10: {}}, 2: 2048, 3: {1: {4: 1, 5: 1}, 2: {7: {1: {}}}}}
RSA_OAEP_ATTRS = {1: {10: {}}, 2: 2048, 3: {1: {4: 1, 5: 1}, 2: {7: {2: {1: SHA_256}}}}}


class Recorder(ParsecClient):
    """Records each request and answers success with an empty (or given) body, no socket."""

    def __init__(self) -> None:
        super().__init__("unix:/nonexistent/parsec.sock")
        self.sent: list[tuple[WireHeader, bytes, bytes]] = []
        self.bodies: dict[int, bytes] = {
            Opcode.LIST_AUTHENTICATORS: pb.ListAuthenticatorsResult(
                authenticators=[pb.AuthenticatorInfo(id=AuthType.UNIX_PEER_CREDENTIALS)]
            ).SerializeToString(),
            Opcode.LIST_PROVIDERS: pb.ListProvidersResult(
                providers=[pb.ProviderInfo(id=1), pb.ProviderInfo(id=0)]
            ).SerializeToString(),
        }

    def _exchange(self, request: bytes) -> tuple[WireHeader, bytes]:
        header = WireHeader.unpack(request[:36])
        body = request[36 : 36 + header.body_len]
        self.sent.append((header, body, request[36 + header.body_len :]))
        reply = self.bodies.get(header.opcode, b"")
        return WireHeader(opcode=header.opcode, body_len=len(reply)), reply


CASES: list[tuple[str, Callable[[ParsecClient], Any], int, int, dict[int, Any]]] = [
    ("ping", lambda c: c.ping(), Opcode.PING, 0, {}),
    ("list_providers", lambda c: c.list_providers(), Opcode.LIST_PROVIDERS, 0, {}),
    ("list_opcodes", lambda c: c.list_opcodes(1), Opcode.LIST_OPCODES, 0, {1: 1}),
    ("list_authenticators", lambda c: c.list_authenticators(), Opcode.LIST_AUTHENTICATORS, 0, {}),
    ("list_keys", lambda c: c.list_keys(), Opcode.LIST_KEYS, 0, {}),
    ("list_clients", lambda c: c.list_clients(), Opcode.LIST_CLIENTS, 0, {}),
    ("delete_client", lambda c: c.delete_client("app"), Opcode.DELETE_CLIENT, 0, {1: "app"}),
    (
        "generate_ecc_sign_key",
        lambda c: c.generate_ecc_sign_key("k"),
        Opcode.PSA_GENERATE_KEY,
        1,
        {1: "k", 2: ECC_ATTRS},
    ),
    (
        "generate_rsa_sign_key",
        lambda c: c.generate_rsa_sign_key("k"),
        Opcode.PSA_GENERATE_KEY,
        1,
        {1: "k", 2: RSA_SIGN_ATTRS},
    ),
    (
        "generate_rsa_encrypt_key",
        lambda c: c.generate_rsa_encrypt_key("k"),
        Opcode.PSA_GENERATE_KEY,
        1,
        {1: "k", 2: RSA_CRYPT_ATTRS},
    ),
    (
        "generate_rsa_encrypt_key_oaep",
        lambda c: c.generate_rsa_encrypt_key("k", oaep_hash=SHA_256),
        Opcode.PSA_GENERATE_KEY,
        1,
        {1: "k", 2: RSA_OAEP_ATTRS},
    ),
    (
        "import_key",
        lambda c: c.import_key("k", ecc_sign_key_attributes(), b"\x04pt"),
        Opcode.PSA_IMPORT_KEY,
        1,
        {1: "k", 2: ECC_ATTRS, 3: b"\x04pt"},
    ),
    ("destroy_key", lambda c: c.destroy_key("k"), Opcode.PSA_DESTROY_KEY, 1, {1: "k"}),
    (
        "export_public_key",
        lambda c: c.export_public_key("k", "raw"),
        Opcode.PSA_EXPORT_PUBLIC_KEY,
        1,
        {1: "k"},
    ),
    (
        "sign_hash",
        lambda c: c.sign_hash("k", b"H" * 32, ecdsa()),
        Opcode.PSA_SIGN_HASH,
        1,
        {1: "k", 2: ECDSA_SHA256, 3: b"H" * 32},
    ),
    (
        "verify_hash",
        lambda c: c.verify_hash("k", b"H" * 32, b"SIG", rsa_pkcs1v15_sign()),
        Opcode.PSA_VERIFY_HASH,
        1,
        {1: "k", 2: RSA_SIGN_SHA256, 3: b"H" * 32, 4: b"SIG"},
    ),
    (
        "asymmetric_encrypt",
        lambda c: c.asymmetric_encrypt("k", b"PT", rsa_pkcs1v15_crypt(), salt=b"S"),
        Opcode.PSA_ASYMMETRIC_ENCRYPT,
        1,
        {1: "k", 2: {1: {}}, 3: b"PT", 4: b"S"},
    ),
    (
        "asymmetric_decrypt",
        lambda c: c.asymmetric_decrypt("k", b"CT", rsa_oaep(SHA_256)),
        Opcode.PSA_ASYMMETRIC_DECRYPT,
        1,
        {1: "k", 2: {2: {1: SHA_256}}, 3: b"CT"},
    ),
    ("generate_random", lambda c: c.generate_random(32), Opcode.PSA_GENERATE_RANDOM, 1, {1: 32}),
    (
        "hash_compute",
        lambda c: c.hash_compute(b"data"),
        Opcode.PSA_HASH_COMPUTE,
        1,
        {1: SHA_256, 2: b"data"},
    ),
]


@pytest.mark.parametrize(
    ("call", "opcode", "provider", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_request_body_fields(
    call: Callable[[ParsecClient], Any], opcode: int, provider: int, expected: dict[int, Any]
) -> None:
    client = Recorder()
    call(client)
    header, body, auth = client.sent[-1]
    assert header.opcode == opcode
    assert header.provider == provider
    assert header.content_type == 0 and header.accept_type == 0
    assert_fields(body, expected)
    unauthenticated = opcode in (
        Opcode.PING,
        Opcode.LIST_PROVIDERS,
        Opcode.LIST_OPCODES,
        Opcode.LIST_AUTHENTICATORS,
    )
    assert (header.auth_type, len(auth)) == ((0, 0) if unauthenticated else (3, 4))


def test_generated_messages_decode_request_bodies() -> None:
    client = Recorder()
    client.sign_hash("k", b"D" * 32, ecdsa())
    op = pb.PsaSignHashOperation.FromString(client.sent[-1][1])
    assert op.key_name == "k" and op.hash == b"D" * 32
    assert op.alg.WhichOneof("variant") == "ecdsa"
    assert op.alg.ecdsa.hash_alg.specific == pb.Algorithm.SHA_256

    client.generate_rsa_sign_key("r", bits=3072)
    gen = pb.PsaGenerateKeyOperation.FromString(client.sent[-1][1])
    assert gen.attributes == rsa_sign_key_attributes(3072)
    assert gen.attributes.key_type.WhichOneof("variant") == "rsa_key_pair"

    client.generate_rsa_encrypt_key("e")
    gen = pb.PsaGenerateKeyOperation.FromString(client.sent[-1][1])
    assert gen.attributes == rsa_encrypt_key_attributes()
    flags = gen.attributes.key_policy.key_usage_flags
    assert (flags.encrypt, flags.decrypt, flags.sign_hash, flags.export) == (True, True, 0, 0)


# ----------------------------------------------------------------------------- descriptors


@pytest.mark.parametrize(
    ("message", "numbers"),
    [
        (
            pb.KeyType,
            {
                "raw_data": 1,
                "hmac": 2,
                "derive": 3,
                "aes": 4,
                "des": 5,
                "camellia": 6,
                "arc4": 7,
                "chacha20": 8,
                "rsa_public_key": 9,
                "rsa_key_pair": 10,
                "ecc_key_pair": 11,
                "ecc_public_key": 12,
                "dh_key_pair": 13,
                "dh_public_key": 14,
            },
        ),
        (
            pb.Algorithm,
            {
                "none": 1,
                "hash": 2,
                "mac": 3,
                "cipher": 4,
                "aead": 5,
                "asymmetric_signature": 6,
                "asymmetric_encryption": 7,
                "key_agreement": 8,
                "key_derivation": 9,
            },
        ),
        (
            pb.Algorithm.AsymmetricSignature,
            {
                "rsa_pkcs1v15_sign": 1,
                "rsa_pkcs1v15_sign_raw": 2,
                "rsa_pss": 3,
                "ecdsa": 4,
                "ecdsa_any": 5,
                "deterministic_ecdsa": 6,
            },
        ),
        (pb.Algorithm.AsymmetricEncryption, {"rsa_pkcs1v15_crypt": 1, "rsa_oaep": 2}),
        (pb.Algorithm.AsymmetricSignature.SignHash, {"any": 1, "specific": 2}),
        (
            pb.UsageFlags,
            {
                "export": 1,
                "copy": 2,
                "cache": 3,
                "encrypt": 4,
                "decrypt": 5,
                "sign_message": 6,
                "verify_message": 7,
                "sign_hash": 8,
                "verify_hash": 9,
                "derive": 10,
            },
        ),
        (
            pb.ProviderInfo,
            {
                "uuid": 1,
                "description": 2,
                "vendor": 3,
                "version_maj": 4,
                "version_min": 5,
                "version_rev": 6,
                "id": 7,
            },
        ),
        (
            pb.AuthenticatorInfo,
            {"description": 1, "version_maj": 2, "version_min": 3, "version_rev": 4, "id": 5},
        ),
        (pb.KeyInfo, {"provider_id": 1, "name": 2, "attributes": 3}),
        (pb.PingResult, {"wire_protocol_version_maj": 1, "wire_protocol_version_min": 2}),
        (pb.ListClientsResult, {"clients": 1}),
        (pb.PsaGenerateRandomResult, {"random_bytes": 1}),
    ],
)
def test_field_numbers_match_design_table(message: Any, numbers: dict[str, int]) -> None:
    fields = {f.name: f.number for f in message.DESCRIPTOR.fields}
    assert fields == numbers


def test_enum_values_match_design_table() -> None:
    assert pb.Algorithm.Hash.Value("SHA_256") == 7
    assert pb.Algorithm.Hash.Value("SHA_384") == 8
    assert pb.Algorithm.Hash.Value("SHA_512") == 9
    assert pb.KeyType.EccFamily.Value("SECP_K1") == 1
    assert pb.KeyType.EccFamily.Value("SECP_R1") == 2
    assert pb.KeyType.EccFamily.Value("MONTGOMERY") == 9
