"""Property tests: whatever the service (or an impostor) sends back, the client
raises only ParsecError subclasses, never struct.error, IndexError, DecodeError...
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgefaas.parsec import (
    MalformedResponse,
    Opcode,
    ParsecClient,
    ParsecError,
    ecdsa,
    rsa_pkcs1v15_crypt,
)
from edgefaas.parsec.protos import parsec_pb2 as pb
from edgefaas.parsec.wire import decode_response

pytestmark = pytest.mark.unit

HDR = struct.Struct("<IHBBHBQBBBIHIHBB")


def header(opcode: int, body_len: int, status: int = 0, **kw: int) -> bytes:
    return HDR.pack(
        kw.get("magic", 0x5EC0A710),
        kw.get("hdr_size", 30),
        1,
        0,
        0,
        0,
        0,
        kw.get("content_type", 0),
        0,
        0,
        body_len,
        0,
        opcode,
        status,
        0,
        0,
    )


class FakeSocket:
    """Stands in for a connected socket: records what is sent, replies via ``answer``."""

    def __init__(self, answer: Callable[[int], bytes]) -> None:
        self.answer = answer
        self.reply = b""

    def __enter__(self) -> FakeSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def sendall(self, data: bytes) -> None:
        opcode = struct.unpack_from("<I", data, 28)[0]
        self.reply = self.answer(opcode)

    def recv(self, n: int) -> bytes:
        chunk, self.reply = self.reply[:n], self.reply[n:]
        return chunk


class ScriptedClient(ParsecClient):
    def __init__(self, answer: Callable[[int], bytes]) -> None:
        super().__init__("unix:/nonexistent/parsec.sock", app_name="fuzz", timeout=1)
        self.answer = answer

    def _connect(self) -> Any:
        return FakeSocket(self.answer)


CALLS: dict[str, Callable[[ParsecClient], Any]] = {
    "ping": lambda c: c.ping(),
    "list_providers": lambda c: c.list_providers(),
    "list_authenticators": lambda c: c.list_authenticators(),
    "list_opcodes": lambda c: c.list_opcodes(1),
    "list_keys": lambda c: c.list_keys(),
    "list_clients": lambda c: c.list_clients(),
    "generate": lambda c: c.generate_ecc_sign_key("k"),
    "export_raw": lambda c: c.export_public_key("k", "raw"),
    "export_pem": lambda c: c.export_public_key("k", "pem"),
    "sign": lambda c: c.sign_hash("k", b"\0" * 32),
    "sign_alg": lambda c: c.sign_hash("k", b"\0" * 32, ecdsa()),
    "verify": lambda c: c.verify_hash("k", b"\0" * 32, b"s", ecdsa()),
    "encrypt": lambda c: c.asymmetric_encrypt("k", b"p", rsa_pkcs1v15_crypt()),
    "decrypt": lambda c: c.asymmetric_decrypt("k", b"c"),
    "random": lambda c: c.generate_random(8),
    "hash": lambda c: c.hash_compute(b"x"),
}
call_names = st.sampled_from(sorted(CALLS))
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def only_parsec_errors(client: ParsecClient, name: str) -> None:
    with contextlib.suppress(ParsecError):
        CALLS[name](client)
    # Anything else propagates and fails the test, with hypothesis' minimal example.


@FUZZ
@given(name=call_names, reply=st.binary(max_size=200))
def test_random_bytes_only_raise_parsec_errors(name: str, reply: bytes) -> None:
    only_parsec_errors(ScriptedClient(lambda op: reply), name)


@FUZZ
@given(data=st.binary(max_size=200))
def test_decode_response_random_bytes(data: bytes) -> None:
    with contextlib.suppress(ParsecError):
        decode_response(data)


def valid_reply(opcode: int) -> bytes:
    bodies = {
        Opcode.PING: pb.PingResult(wire_protocol_version_maj=1),
        Opcode.LIST_PROVIDERS: pb.ListProvidersResult(
            providers=[pb.ProviderInfo(id=1, description="Mbed"), pb.ProviderInfo(id=0)]
        ),
        Opcode.LIST_AUTHENTICATORS: pb.ListAuthenticatorsResult(
            authenticators=[pb.AuthenticatorInfo(id=1, description="direct")]
        ),
        Opcode.LIST_OPCODES: pb.ListOpcodesResult(opcodes=[1, 2, 3]),
        Opcode.PSA_GENERATE_RANDOM: pb.PsaGenerateRandomResult(random_bytes=b"12345678"),
        Opcode.PSA_HASH_COMPUTE: pb.PsaHashComputeResult(hash=b"h" * 32),
        Opcode.PSA_SIGN_HASH: pb.PsaSignHashResult(signature=b"s" * 64),
    }
    message = bodies.get(opcode)
    body = message.SerializeToString() if message is not None else b""
    return header(opcode, len(body)) + body


@FUZZ
@given(name=call_names, cut=st.integers(0, 10_000))
def test_truncated_valid_replies_are_malformed(name: str, cut: int) -> None:
    def answer(opcode: int) -> bytes:
        full = valid_reply(opcode)
        return full[: cut % len(full)]  # always strictly shorter than the full reply

    with pytest.raises(MalformedResponse, match="connection closed after"):
        CALLS[name](ScriptedClient(answer))


@FUZZ
@given(
    name=call_names,
    body=st.binary(max_size=300),
    status=st.sampled_from([0, 0, 0, 1, 11, 1140, 1149, 777]),
)
def test_valid_header_random_body(name: str, body: bytes, status: int) -> None:
    def answer(opcode: int) -> bytes:
        if opcode in (Opcode.LIST_AUTHENTICATORS, Opcode.LIST_PROVIDERS):
            return valid_reply(opcode)  # let discovery succeed so the fuzzed call runs
        return header(opcode, len(body), status) + body

    only_parsec_errors(ScriptedClient(answer), name)


@FUZZ
@given(
    name=call_names,
    body=st.binary(max_size=300),
    field=st.sampled_from(["magic", "hdr_size", "content_type"]),
    value=st.integers(0, 255),
)
def test_corrupted_header_fields(name: str, body: bytes, field: str, value: int) -> None:
    def answer(opcode: int) -> bytes:
        return header(opcode, len(body), **{field: value}) + body

    only_parsec_errors(ScriptedClient(answer), name)


@FUZZ
@given(name=call_names, body_len=st.integers(0, 2**32 - 1), tail=st.binary(max_size=64))
def test_lying_body_length(name: str, body_len: int, tail: bytes) -> None:
    only_parsec_errors(ScriptedClient(lambda op: header(op, body_len) + tail), name)


def test_fuzz_harness_does_see_successes() -> None:
    """Guard against a harness where every call fails for an unrelated reason."""
    client = ScriptedClient(valid_reply)
    assert client.ping() == (1, 0)
    assert client.generate_random(8) == b"12345678"
    assert client.list_opcodes(1) == [1, 2, 3]
