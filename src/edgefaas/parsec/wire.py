"""Parsec wire protocol 1.0: the fixed header, request framing, response reading.

A request is a 36-byte little-endian header, then the protobuf body, then the
authentication bytes; a response is the same header followed by its body. The
service handles one request per connection and drops a client that dribbles
bytes (200 ms read timeout), so a request always goes out in one ``sendall``.

Everything that can go wrong while reading a reply is reported as a
:class:`~edgefaas.parsec.errors.ParsecError`; nothing here lets a
``struct.error`` or ``IndexError`` escape.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

from .errors import (
    MalformedResponse,
    ParsecError,
    ResponseTooLarge,
    ServiceUnavailable,
    WireProtocolVersionNotSupported,
)

MAGIC = 0x5EC0A710
#: Bytes after the hdr_size field: everything from version_maj to reserved2.
HDR_SIZE = 30
VERSION = (1, 0)
HEADER_FORMAT = "<IHBBHBQBBBIHIHBB"
HEADER_STRUCT = struct.Struct(HEADER_FORMAT)
HEADER_LEN = HEADER_STRUCT.size  # 36
#: The service's default body_len_limit / buffer_size_limit (1 MiB).
DEFAULT_BODY_LIMIT = 1 << 20
CONTENT_TYPE_PROTOBUF = 0

_MAX_AUTH_LEN = 0xFFFF
_MAX_BODY_LEN = 0xFFFFFFFF

assert HEADER_LEN == 36


class Opcode(IntEnum):
    """Operation codes (parsec-interface ``Opcode``)."""

    PING = 0x01
    PSA_GENERATE_KEY = 0x02
    PSA_DESTROY_KEY = 0x03
    PSA_SIGN_HASH = 0x04
    PSA_VERIFY_HASH = 0x05
    PSA_IMPORT_KEY = 0x06
    PSA_EXPORT_PUBLIC_KEY = 0x07
    LIST_PROVIDERS = 0x08
    LIST_OPCODES = 0x09
    PSA_ASYMMETRIC_ENCRYPT = 0x0A
    PSA_ASYMMETRIC_DECRYPT = 0x0B
    PSA_EXPORT_KEY = 0x0C
    PSA_GENERATE_RANDOM = 0x0D
    LIST_AUTHENTICATORS = 0x0E
    PSA_HASH_COMPUTE = 0x0F
    PSA_HASH_COMPARE = 0x10
    PSA_AEAD_ENCRYPT = 0x11
    PSA_AEAD_DECRYPT = 0x12
    PSA_RAW_KEY_AGREEMENT = 0x13
    LIST_KEYS = 0x1A
    LIST_CLIENTS = 0x1B
    DELETE_CLIENT = 0x1C
    CAN_DO_CRYPTO = 0x20


class Provider(IntEnum):
    """Provider ids. Core (0) answers the service-level operations (ping, list_*)."""

    CORE = 0
    MBED_CRYPTO = 1
    PKCS11 = 2
    TPM = 3
    TRUSTED_SERVICE = 4
    CRYPTOAUTHLIB = 5


class AuthType(IntEnum):
    """Authenticator ids, also the ``auth_type`` header field of a request."""

    NO_AUTH = 0
    DIRECT = 1
    UNIX_PEER_CREDENTIALS = 3
    JWT_SVID = 4


def enum_name(enum: type[IntEnum], value: int) -> str:
    """``Opcode.PSA_SIGN_HASH`` -> ``"PsaSignHash"``; unknown values stay numeric."""
    try:
        member = enum(value)
    except ValueError:
        return f"{enum.__name__}({value})"
    return "".join(part.capitalize() for part in member.name.split("_"))


@dataclass(frozen=True)
class WireHeader:
    """The fields of a 1.0 header that vary; magic, hdr_size and version are implied."""

    opcode: int
    provider: int = 0
    body_len: int = 0
    auth_type: int = 0
    auth_len: int = 0
    status: int = 0
    flags: int = 0
    session: int = 0
    content_type: int = CONTENT_TYPE_PROTOBUF
    accept_type: int = CONTENT_TYPE_PROTOBUF
    reserved1: int = 0
    reserved2: int = 0

    def pack(self) -> bytes:
        """Encode as the 36 header bytes."""
        try:
            return HEADER_STRUCT.pack(
                MAGIC,
                HDR_SIZE,
                VERSION[0],
                VERSION[1],
                self.flags,
                self.provider,
                self.session,
                self.content_type,
                self.accept_type,
                self.auth_type,
                self.body_len,
                self.auth_len,
                self.opcode,
                self.status,
                self.reserved1,
                self.reserved2,
            )
        except struct.error as exc:
            raise ParsecError(f"header field out of range: {exc}", status=17) from exc

    @classmethod
    def unpack(cls, data: bytes) -> WireHeader:
        """Decode and validate 36 header bytes (magic, size, version, reserved)."""
        if len(data) != HEADER_LEN:
            raise MalformedResponse(f"header is {len(data)} bytes, expected {HEADER_LEN}")
        (
            magic,
            hdr_size,
            major,
            minor,
            flags,
            provider,
            session,
            content_type,
            accept_type,
            auth_type,
            body_len,
            auth_len,
            opcode,
            status,
            reserved1,
            reserved2,
        ) = HEADER_STRUCT.unpack(data)
        if magic != MAGIC:
            raise MalformedResponse(f"bad magic number {magic:#010x}, expected {MAGIC:#010x}")
        if hdr_size != HDR_SIZE:
            raise MalformedResponse(f"header size field is {hdr_size}, expected {HDR_SIZE}")
        if (major, minor) != VERSION:
            raise WireProtocolVersionNotSupported(
                f"wire protocol version {major}.{minor}, this client speaks {VERSION[0]}.{VERSION[1]}"
            )
        if reserved1 or reserved2:
            raise MalformedResponse("reserved header bytes are not zero")
        return cls(
            opcode=opcode,
            provider=provider,
            body_len=body_len,
            auth_type=auth_type,
            auth_len=auth_len,
            status=status,
            flags=flags,
            session=session,
            content_type=content_type,
            accept_type=accept_type,
        )


def encode_request(
    opcode: int,
    body: bytes,
    *,
    provider: int = Provider.CORE,
    auth_type: int = AuthType.NO_AUTH,
    auth: bytes = b"",
) -> bytes:
    """Frame a request: header + body + auth, ready for a single ``sendall``."""
    if len(auth) > _MAX_AUTH_LEN:
        raise ParsecError(f"authentication data is {len(auth)} bytes, the wire allows 65535")
    if len(body) > _MAX_BODY_LEN:
        raise ParsecError(f"body is {len(body)} bytes, the wire allows 2**32-1", status=20)
    header = WireHeader(
        opcode=opcode,
        provider=provider,
        body_len=len(body),
        auth_type=auth_type,
        auth_len=len(auth),
    )
    return header.pack() + body + auth


def read_exact(recv: Callable[[int], bytes], size: int, what: str) -> bytes:
    """Read exactly ``size`` bytes with ``recv`` or raise MalformedResponse on EOF."""
    chunks: list[bytes] = []
    got = 0
    while got < size:
        chunk = recv(min(size - got, 65536))
        if not chunk:
            raise MalformedResponse(f"connection closed after {got} of {size} bytes of the response {what}")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_response(
    recv: Callable[[int], bytes], body_limit: int = DEFAULT_BODY_LIMIT
) -> tuple[WireHeader, bytes]:
    """Read one response (header, body) using ``recv`` (e.g. ``sock.recv``)."""
    header = WireHeader.unpack(read_exact(recv, HEADER_LEN, "header"))
    if header.body_len > body_limit:
        raise ResponseTooLarge(
            f"response body announces {header.body_len} bytes, over the {body_limit}-byte limit"
        )
    body = read_exact(recv, header.body_len, "body")
    return header, body


def decode_response(data: bytes, body_limit: int = DEFAULT_BODY_LIMIT) -> tuple[WireHeader, bytes]:
    """Parse a complete response held in memory (tests, captures)."""
    view = memoryview(data)
    pos = 0

    def recv(n: int) -> bytes:
        nonlocal pos
        chunk = bytes(view[pos : pos + n])
        pos += len(chunk)
        return chunk

    return read_response(recv, body_limit)


def socket_recv(sock: socket.socket, endpoint: str) -> Callable[[int], bytes]:
    """Wrap ``sock.recv`` so that timeouts and resets name the endpoint."""

    def recv(n: int) -> bytes:
        try:
            return sock.recv(n)
        except TimeoutError as exc:
            raise ServiceUnavailable("timed out waiting for the reply", endpoint=endpoint) from exc
        except OSError as exc:
            raise ServiceUnavailable(
                f"connection failed while reading the reply: {exc}", endpoint=endpoint
            ) from exc

    return recv
