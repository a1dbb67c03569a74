"""ParsecClient against an in-process fake Parsec service on a temporary unix socket.

The fake parses requests with its own struct code (straight from the header
table in the design notes), so it checks the client rather than agreeing with it.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import shutil
import socket
import struct
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import click
import pytest
from click.testing import CliRunner

from edgefaas.parsec import (
    AuthType,
    BodySizeExceedsLimit,
    InvalidEndpoint,
    InvalidSignature,
    KeyAlreadyExists,
    KeyDoesNotExist,
    MalformedResponse,
    MissingAppName,
    NotSupported,
    Opcode,
    ParsecClient,
    ParsecError,
    ServiceUnavailable,
    ecc_sign_key_attributes,
    rsa_encrypt_key_attributes,
    rsa_sign_key_attributes,
)
from edgefaas.parsec.cli import parsec as parsec_cli
from edgefaas.parsec.errors import ProviderNotRegistered
from edgefaas.parsec.protos import parsec_pb2 as pb

pytestmark = pytest.mark.unit

HDR = struct.Struct("<IHBBHBQBBBIHIHBB")
MAGIC = 0x5EC0A710


@dataclass
class Request:
    provider: int
    auth_type: int
    opcode: int
    content_type: int
    accept_type: int
    body: bytes
    auth: bytes
    raw_len: int


def reply_bytes(
    opcode: int, body: bytes = b"", status: int = 0, provider: int = 0, content_type: int = 0
) -> bytes:
    header = HDR.pack(MAGIC, 30, 1, 0, 0, provider, 0, content_type, 0, 0, len(body), 0, opcode, status, 0, 0)
    return header + body


Handler = Callable[[Request], "bytes | None"]


@dataclass
class FakeParsec:
    """Serves one request per connection, like the real service.

    ``handlers`` maps opcode -> function(Request) returning raw reply bytes, or
    None to close without answering. Unhandled opcodes get status 9.
    """

    path: str
    authenticators: list[int] = field(default_factory=lambda: [AuthType.UNIX_PEER_CREDENTIALS])
    providers: list[int] = field(default_factory=lambda: [1, 0])
    handlers: dict[int, Handler] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    connections: int = 0

    def __post_init__(self) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(self.path)
        self._sock.listen(8)
        self._sock.settimeout(0.05)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"unix:{self.path}"

    def ops(self) -> list[int]:
        return [r.opcode for r in self.requests]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            with conn:
                conn.settimeout(2)
                with contextlib.suppress(OSError):
                    self._handle(conn)

    @staticmethod
    def _recv_exact(conn: socket.socket, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = conn.recv(n - len(buf))
            if not chunk:
                raise OSError("client closed early")
            buf += chunk
        return buf

    def _handle(self, conn: socket.socket) -> None:
        fields = HDR.unpack(self._recv_exact(conn, HDR.size))
        magic, hdr_size, major, minor, _flags, provider, _session = fields[:7]
        content_type, accept_type, auth_type, body_len, auth_len, opcode = fields[7:13]
        assert (magic, hdr_size, major, minor) == (MAGIC, 30, 1, 0)
        body = self._recv_exact(conn, body_len)
        auth = self._recv_exact(conn, auth_len)
        req = Request(provider, auth_type, opcode, content_type, accept_type, body, auth, 36 + len(body))
        self.requests.append(req)
        handler = self.handlers.get(opcode) or self._default(opcode)
        answer = handler(req)
        if answer is not None:
            conn.sendall(answer)

    def _default(self, opcode: int) -> Handler:
        if opcode == Opcode.PING:
            body = pb.PingResult(wire_protocol_version_maj=1, wire_protocol_version_min=0).SerializeToString()
            return lambda r: reply_bytes(opcode, body)
        if opcode == Opcode.LIST_AUTHENTICATORS:
            res = pb.ListAuthenticatorsResult()
            for auth_id in self.authenticators:
                res.authenticators.add(description=f"auth {auth_id}", version_maj=1, id=auth_id)
            return lambda r: reply_bytes(opcode, res.SerializeToString())
        if opcode == Opcode.LIST_PROVIDERS:
            res = pb.ListProvidersResult()
            for pid in self.providers:
                res.providers.add(uuid=f"uuid-{pid}", description=f"provider {pid}", vendor="Arm", id=pid)
            return lambda r: reply_bytes(opcode, res.SerializeToString())
        return lambda r: reply_bytes(Opcode.PING, status=9)


@pytest.fixture
def sockdir() -> Iterator[str]:
    # Short path: AF_UNIX paths are limited to 108 bytes, pytest's tmp_path can be longer.
    path = tempfile.mkdtemp(prefix="parsec-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def fake(sockdir: str) -> Iterator[FakeParsec]:
    server = FakeParsec(os.path.join(sockdir, "parsec.sock"))
    yield server
    server.close()


def client_for(server: FakeParsec, **kwargs: object) -> ParsecClient:
    return ParsecClient(server.endpoint, timeout=2.0, **kwargs)  # type: ignore[arg-type]


def ok(result: object) -> Handler:
    """A handler answering success with ``result`` (a protobuf message) for the same opcode."""
    return lambda r: reply_bytes(r.opcode, result.SerializeToString())  # type: ignore[attr-defined]


def status(code: int) -> Handler:
    return lambda r: reply_bytes(r.opcode, status=code)


# ----------------------------------------------------------------------------- basics


def test_ping_is_sent_unauthenticated_to_core(fake: FakeParsec) -> None:
    assert client_for(fake).ping() == (1, 0)
    (req,) = fake.requests
    assert (req.opcode, req.provider, req.auth_type, req.auth) == (Opcode.PING, 0, 0, b"")
    assert req.body == b""
    assert req.raw_len == 36


def test_ping_request_matches_known_good_vector(fake: FakeParsec) -> None:
    captured: list[bytes] = []

    class Capturing(ParsecClient):
        def _exchange(self, request: bytes):  # type: ignore[override]
            captured.append(request)
            return super()._exchange(request)

    Capturing(fake.endpoint).ping()
    assert base64.b64encode(captured[0]).decode() == ("EKfAXh4AAQAAAAAAAAAAAAAAAAAAAAAAAAAAAAEAAAAAAAAA")


def test_discovery_happens_once_and_lazily(fake: FakeParsec) -> None:
    fake.handlers[Opcode.LIST_KEYS] = ok(pb.ListKeysResult())
    fake.handlers[Opcode.PSA_GENERATE_RANDOM] = ok(pb.PsaGenerateRandomResult(random_bytes=b"xy"))
    client = client_for(fake)
    assert fake.requests == []  # constructing the client sends nothing
    client.ping()
    assert fake.ops() == [Opcode.PING]  # ping needs neither authenticator nor provider
    for _ in range(3):
        client.list_keys()
        assert client.generate_random(2) == b"xy"
    assert fake.ops().count(Opcode.LIST_AUTHENTICATORS) == 1
    assert fake.ops().count(Opcode.LIST_PROVIDERS) == 1
    assert fake.ops().count(Opcode.LIST_KEYS) == 3


def test_unix_peer_credentials_auth_bytes_are_le_uid(fake: FakeParsec) -> None:
    fake.handlers[Opcode.LIST_KEYS] = ok(pb.ListKeysResult())
    client_for(fake).list_keys()
    req = fake.requests[-1]
    assert req.opcode == Opcode.LIST_KEYS
    assert req.auth_type == AuthType.UNIX_PEER_CREDENTIALS
    assert req.auth == struct.pack("<I", os.getuid())
    assert len(req.auth) == 4


def test_direct_auth_sends_app_name(fake: FakeParsec) -> None:
    fake.authenticators = [AuthType.DIRECT]
    fake.handlers[Opcode.LIST_KEYS] = ok(pb.ListKeysResult())
    client_for(fake, app_name="fn-é").list_keys()
    req = fake.requests[-1]
    assert req.auth_type == AuthType.DIRECT
    assert req.auth == "fn-é".encode()


def test_direct_auth_without_app_name_fails_before_sending(fake: FakeParsec) -> None:
    fake.authenticators = [AuthType.DIRECT]
    client = client_for(fake)
    with pytest.raises(MissingAppName) as info:
        client.list_keys()
    assert Opcode.LIST_KEYS not in fake.ops()
    assert info.value.status == 19
    assert fake.endpoint in str(info.value)


def test_first_supported_authenticator_is_used(fake: FakeParsec) -> None:
    fake.authenticators = [AuthType.JWT_SVID, AuthType.DIRECT, AuthType.UNIX_PEER_CREDENTIALS]
    fake.handlers[Opcode.LIST_KEYS] = ok(pb.ListKeysResult())
    client = client_for(fake, app_name="app")
    client.list_keys()
    assert client.auth_type == AuthType.DIRECT
    assert fake.requests[-1].auth == b"app"


def test_crypto_goes_to_first_listed_provider(fake: FakeParsec) -> None:
    fake.providers = [3, 1, 0]
    fake.handlers[Opcode.PSA_DESTROY_KEY] = ok(pb.PsaDestroyKeyResult())
    client = client_for(fake)
    client.destroy_key("k")
    assert client.provider == 3
    assert fake.requests[-1].provider == 3


def test_explicit_provider_skips_discovery(fake: FakeParsec) -> None:
    fake.handlers[Opcode.PSA_DESTROY_KEY] = ok(pb.PsaDestroyKeyResult())
    client_for(fake, provider=2).destroy_key("k")
    assert Opcode.LIST_PROVIDERS not in fake.ops()
    assert fake.requests[-1].provider == 2


def test_core_only_service_refuses_crypto(fake: FakeParsec) -> None:
    fake.providers = [0]
    with pytest.raises(ProviderNotRegistered, match="no crypto provider"):
        client_for(fake).generate_random(4)
    assert Opcode.PSA_GENERATE_RANDOM not in fake.ops()


def test_list_providers_and_authenticators_decode(fake: FakeParsec) -> None:
    fake.providers = [1, 0]
    client = client_for(fake)
    providers = client.list_providers()
    assert [(p.id, p.name, p.uuid) for p in providers] == [
        (1, "MbedCrypto", "uuid-1"),
        (0, "Core", "uuid-0"),
    ]
    (auth,) = client.list_authenticators()
    assert (auth.id, auth.name, auth.version) == (3, "UnixPeerCredentials", "1.0.0")


def test_list_opcodes_sends_provider_id_and_sorts(fake: FakeParsec) -> None:
    fake.handlers[Opcode.LIST_OPCODES] = ok(pb.ListOpcodesResult(opcodes=[7, 2, 4]))
    assert client_for(fake).list_opcodes(1) == [2, 4, 7]
    req = fake.requests[-1]
    assert req.provider == 0 and req.auth_type == 0
    assert pb.ListOpcodesOperation.FromString(req.body).provider_id == 1


# ----------------------------------------------------------------------------- errors


def test_unknown_key_maps_to_key_does_not_exist(fake: FakeParsec) -> None:
    fake.handlers[Opcode.PSA_EXPORT_PUBLIC_KEY] = status(1140)
    with pytest.raises(KeyDoesNotExist) as info:
        client_for(fake).export_public_key("missing-key", format="raw")
    err = info.value
    assert err.status == 1140 and err.from_service
    assert "missing-key" in str(err)
    assert fake.endpoint in str(err)
    assert "PsaExportPublicKey" in str(err)


def test_error_reply_with_ping_opcode_still_maps_status(fake: FakeParsec) -> None:
    # A service that cannot parse the header answers as if to a Ping.
    fake.handlers[Opcode.PSA_GENERATE_KEY] = lambda r: reply_bytes(Opcode.PING, status=1139)
    with pytest.raises(KeyAlreadyExists):
        client_for(fake).generate_ecc_sign_key("dup")


def test_success_reply_for_other_opcode_is_malformed(fake: FakeParsec) -> None:
    fake.handlers[Opcode.PSA_GENERATE_RANDOM] = lambda r: reply_bytes(Opcode.PING, b"\x08\x01")
    with pytest.raises(MalformedResponse, match="opcode 1"):
        client_for(fake).generate_random(2)


def test_non_protobuf_content_type_is_malformed(fake: FakeParsec) -> None:
    fake.handlers[Opcode.PING] = lambda r: reply_bytes(Opcode.PING, b"\x08\x01", content_type=1)
    with pytest.raises(MalformedResponse, match="content type"):
        client_for(fake).ping()


def test_unknown_status_is_plain_parsec_error(fake: FakeParsec) -> None:
    fake.handlers[Opcode.PING] = status(4242)
    with pytest.raises(ParsecError) as info:
        client_for(fake).ping()
    assert type(info.value) is ParsecError
    assert info.value.status == 4242


def test_missing_socket_names_endpoint(sockdir: str) -> None:
    endpoint = f"unix:{sockdir}/absent.sock"
    with pytest.raises(ServiceUnavailable) as info:
        ParsecClient(endpoint).ping()
    assert endpoint in str(info.value)
    assert "no socket" in str(info.value)
    assert isinstance(info.value.__cause__, FileNotFoundError)


def test_refused_connection_names_endpoint(sockdir: str) -> None:
    path = os.path.join(sockdir, "stale.sock")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)  # bound, never listening: connect() is refused
    try:
        with pytest.raises(ServiceUnavailable) as info:
            ParsecClient(f"unix:{path}").ping()
    finally:
        stale.close()
    assert f"unix:{path}" in str(info.value)
    assert "refused" in str(info.value)


def test_server_closing_without_reply_is_malformed(fake: FakeParsec) -> None:
    fake.handlers[Opcode.PING] = lambda r: None
    with pytest.raises(MalformedResponse) as info:
        client_for(fake).ping()
    assert "0 of 36" in str(info.value)
    assert fake.endpoint in str(info.value)


def test_reply_timeout_names_endpoint(sockdir: str) -> None:
    path = os.path.join(sockdir, "mute.sock")
    mute = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    mute.bind(path)
    mute.listen(1)  # accepts (in the kernel backlog) but never answers
    try:
        with pytest.raises(ServiceUnavailable, match="timed out") as info:
            ParsecClient(f"unix:{path}", timeout=0.2).ping()
    finally:
        mute.close()
    assert path in str(info.value)


def test_oversize_body_is_refused_before_anything_is_sent(fake: FakeParsec) -> None:
    client = client_for(fake)
    with pytest.raises(BodySizeExceedsLimit) as info:
        client.import_key("big", rsa_sign_key_attributes(), b"\0" * (1 << 20))
    assert fake.connections == 0
    assert fake.requests == []
    assert "nothing was sent" in str(info.value)
    assert not info.value.from_service


def test_body_exactly_at_limit_is_sent(fake: FakeParsec) -> None:
    fake.handlers[Opcode.PSA_HASH_COMPUTE] = ok(pb.PsaHashComputeResult(hash=b"h"))
    client = client_for(fake, provider=1, body_limit=64)
    payload = b"a" * 60  # body: tag(1)+len(1)+... => alg (2 bytes) + input header (2) + 60 = 64
    assert client.hash_compute(payload) == b"h"
    assert len(fake.requests[-1].body) == 64
    with pytest.raises(BodySizeExceedsLimit):
        client.hash_compute(payload + b"a")


def test_early_rejection_reply_is_read_after_broken_pipe(sockdir: str) -> None:
    """The real service answers an oversize request after reading only the header, then
    closes; the sender sees EPIPE, but the status reply is already in the socket."""
    path = os.path.join(sockdir, "early.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            FakeParsec._recv_exact(conn, 36)
            conn.sendall(reply_bytes(Opcode.PING, status=20))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client = ParsecClient(f"unix:{path}", timeout=5, provider=1, body_limit=64 << 20)
    client._auth_type = AuthType.UNIX_PEER_CREDENTIALS  # skip discovery: one connection only
    try:
        with pytest.raises(BodySizeExceedsLimit) as info:
            client.hash_compute(b"x" * (8 << 20))
    finally:
        thread.join(5)
        listener.close()
    assert info.value.from_service
    assert info.value.opcode == "PsaHashCompute"


def test_endpoint_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARSEC_SERVICE_ENDPOINT", "unix:/tmp/elsewhere.sock")
    client = ParsecClient()
    assert client.endpoint == "unix:/tmp/elsewhere.sock"
    assert client.socket_path == "/tmp/elsewhere.sock"
    monkeypatch.delenv("PARSEC_SERVICE_ENDPOINT")
    assert ParsecClient().socket_path == "/run/parsec/parsec.sock"
    assert ParsecClient("unix:/x/y.sock").socket_path == "/x/y.sock"


@pytest.mark.parametrize(
    ("endpoint", "path"),
    [("unix:///run/p.sock", "/run/p.sock"), ("/run/p.sock", "/run/p.sock")],
)
def test_endpoint_spellings(endpoint: str, path: str) -> None:
    assert ParsecClient(endpoint).socket_path == path


@pytest.mark.parametrize("endpoint", ["tcp://127.0.0.1:1234", "unix:relative.sock", "http:/x"])
def test_bad_endpoints_rejected(endpoint: str) -> None:
    with pytest.raises(InvalidEndpoint):
        ParsecClient(endpoint)


# ----------------------------------------------------------------------------- operations


def _listed(name: str, attributes: pb.KeyAttributes, provider: int = 1) -> pb.ListKeysResult:
    res = pb.ListKeysResult()
    res.keys.add(provider_id=provider, name=name, attributes=attributes)
    return res


def test_sign_uses_key_policy_when_no_algorithm_given(fake: FakeParsec) -> None:
    attrs = ecc_sign_key_attributes()
    fake.handlers[Opcode.LIST_KEYS] = ok(_listed("ec", attrs))
    fake.handlers[Opcode.PSA_SIGN_HASH] = ok(pb.PsaSignHashResult(signature=b"sig"))
    digest = hashlib.sha256(b"m").digest()
    assert client_for(fake).sign_hash("ec", digest) == b"sig"
    op = pb.PsaSignHashOperation.FromString(fake.requests[-1].body)
    assert op.key_name == "ec" and op.hash == digest
    assert op.alg == attrs.key_policy.key_algorithm.asymmetric_signature
    assert op.alg.ecdsa.hash_alg.specific == pb.Algorithm.SHA_256


def test_sign_with_key_of_other_provider_is_unknown(fake: FakeParsec) -> None:
    fake.handlers[Opcode.LIST_KEYS] = ok(_listed("ec", ecc_sign_key_attributes(), provider=3))
    with pytest.raises(KeyDoesNotExist, match="'ec'"):
        client_for(fake).sign_hash("ec", b"\0" * 32)
    assert Opcode.PSA_SIGN_HASH not in fake.ops()


def test_verify_failure_is_invalid_signature(fake: FakeParsec) -> None:
    fake.handlers[Opcode.PSA_VERIFY_HASH] = status(1149)
    alg = ecc_sign_key_attributes().key_policy.key_algorithm.asymmetric_signature
    with pytest.raises(InvalidSignature) as info:
        client_for(fake).verify_hash("ec", b"\1" * 32, b"bad", alg)
    assert info.value.status == 1149
    op = pb.PsaVerifyHashOperation.FromString(fake.requests[-1].body)
    assert (op.key_name, op.hash, op.signature) == ("ec", b"\1" * 32, b"bad")


def test_encrypt_decrypt_use_policy_algorithm(fake: FakeParsec) -> None:
    attrs = rsa_encrypt_key_attributes(oaep_hash=pb.Algorithm.SHA_256)
    fake.handlers[Opcode.LIST_KEYS] = ok(_listed("rsa", attrs))
    fake.handlers[Opcode.PSA_ASYMMETRIC_ENCRYPT] = ok(pb.PsaAsymmetricEncryptResult(ciphertext=b"ct"))
    fake.handlers[Opcode.PSA_ASYMMETRIC_DECRYPT] = ok(pb.PsaAsymmetricDecryptResult(plaintext=b"pt"))
    client = client_for(fake)
    assert client.asymmetric_encrypt("rsa", b"pt", salt=b"s") == b"ct"
    enc = pb.PsaAsymmetricEncryptOperation.FromString(fake.requests[-1].body)
    assert (enc.key_name, enc.plaintext, enc.salt) == ("rsa", b"pt", b"s")
    assert enc.alg.rsa_oaep.hash_alg == pb.Algorithm.SHA_256
    assert client.asymmetric_decrypt("rsa", b"ct") == b"pt"
    dec = pb.PsaAsymmetricDecryptOperation.FromString(fake.requests[-1].body)
    assert (dec.key_name, dec.ciphertext) == ("rsa", b"ct")
    assert dec.alg.WhichOneof("variant") == "rsa_oaep"


def test_list_keys_summarises_attributes(fake: FakeParsec) -> None:
    fake.handlers[Opcode.LIST_KEYS] = ok(_listed("rsa", rsa_sign_key_attributes()))
    (key,) = client_for(fake).list_keys()
    assert (key.name, key.provider_id, key.key_bits) == ("rsa", 1, 2048)
    assert key.key_type == "RsaKeyPair"
    assert key.algorithm == "RsaPkcs1v15Sign(SHA_256)"
    assert key.usage == ("sign_message", "verify_message", "sign_hash", "verify_hash")


def test_clients_admin_operations(fake: FakeParsec) -> None:
    fake.handlers[Opcode.LIST_CLIENTS] = ok(pb.ListClientsResult(clients=["1000", "app"]))
    fake.handlers[Opcode.DELETE_CLIENT] = ok(pb.DeleteClientResult())
    client = client_for(fake)
    assert client.list_clients() == ["1000", "app"]
    client.delete_client("app")
    req = fake.requests[-1]
    assert (req.opcode, req.provider, req.auth_type) == (Opcode.DELETE_CLIENT, 0, 3)
    assert pb.DeleteClientOperation.FromString(req.body).client == "app"


# ----------------------------------------------------------------------------- export


def test_export_rsa_public_key_as_spki(fake: FakeParsec) -> None:
    serialization = pytest.importorskip("cryptography.hazmat.primitives.serialization")
    rsa = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.rsa")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    pkcs1 = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    fake.handlers[Opcode.PSA_EXPORT_PUBLIC_KEY] = ok(pb.PsaExportPublicKeyResult(data=pkcs1))
    fake.handlers[Opcode.LIST_KEYS] = ok(_listed("rsa", rsa_sign_key_attributes()))
    client = client_for(fake)

    assert client.export_public_key("rsa", "raw") == pkcs1
    der = client.export_public_key("rsa", "der")
    assert serialization.load_der_public_key(der).public_numbers() == key.public_numbers()
    assert der == key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pem = client.export_public_key("rsa", "pem")
    assert pem.startswith(b"-----BEGIN PUBLIC KEY-----\n")
    assert serialization.load_pem_public_key(pem).public_numbers() == key.public_numbers()


@pytest.mark.parametrize(("curve_name", "bits"), [("SECP256R1", 256), ("SECP384R1", 384)])
def test_export_ec_public_key_as_spki(fake: FakeParsec, curve_name: str, bits: int) -> None:
    serialization = pytest.importorskip("cryptography.hazmat.primitives.serialization")
    ec = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.ec")
    key = ec.generate_private_key(getattr(ec, curve_name)()).public_key()
    point = key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    fake.handlers[Opcode.PSA_EXPORT_PUBLIC_KEY] = ok(pb.PsaExportPublicKeyResult(data=point))
    fake.handlers[Opcode.LIST_KEYS] = ok(_listed("ec", ecc_sign_key_attributes(bits=bits)))
    client = client_for(fake)
    pem = client.export_public_key("ec", "pem")
    loaded = serialization.load_pem_public_key(pem)
    assert loaded.public_numbers() == key.public_numbers()
    assert client.export_public_key("ec", "der") == key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_export_rsa_pkcs1_pem(fake: FakeParsec) -> None:
    serialization = pytest.importorskip("cryptography.hazmat.primitives.serialization")
    rsa = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.rsa")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    pkcs1 = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    fake.handlers[Opcode.PSA_EXPORT_PUBLIC_KEY] = ok(pb.PsaExportPublicKeyResult(data=pkcs1))
    fake.handlers[Opcode.LIST_KEYS] = ok(_listed("rsa", rsa_sign_key_attributes()))
    pem = client_for(fake).export_public_key("rsa", "pkcs1-pem")
    assert pem == key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)


def test_export_pkcs1_of_ec_key_is_refused(fake: FakeParsec) -> None:
    fake.handlers[Opcode.PSA_EXPORT_PUBLIC_KEY] = ok(pb.PsaExportPublicKeyResult(data=b"\x04" * 65))
    fake.handlers[Opcode.LIST_KEYS] = ok(_listed("ec", ecc_sign_key_attributes()))
    with pytest.raises(NotSupported, match="not an RSA key"):
        client_for(fake).export_public_key("ec", "pkcs1-pem")


def test_export_garbage_rsa_key_is_malformed(fake: FakeParsec) -> None:
    fake.handlers[Opcode.PSA_EXPORT_PUBLIC_KEY] = ok(pb.PsaExportPublicKeyResult(data=b"\x04abc"))
    fake.handlers[Opcode.LIST_KEYS] = ok(_listed("rsa", rsa_sign_key_attributes()))
    with pytest.raises(MalformedResponse, match="not a DER SEQUENCE") as info:
        client_for(fake).export_public_key("rsa", "pem")
    assert fake.endpoint in str(info.value)


def test_export_rejects_unknown_format(fake: FakeParsec) -> None:
    with pytest.raises(ValueError, match="format"):
        client_for(fake).export_public_key("k", "jwk")  # type: ignore[arg-type]
    assert fake.requests == []


# ----------------------------------------------------------------------------- CLI


def run_cli(server_or_endpoint: FakeParsec | str, *args: str) -> tuple[int, str, str]:
    endpoint = getattr(server_or_endpoint, "endpoint", server_or_endpoint)
    result = CliRunner().invoke(parsec_cli, ["--endpoint", str(endpoint), "--timeout", "2", *args])
    return result.exit_code, result.stdout, result.stderr


def test_cli_ping_text_and_json(fake: FakeParsec) -> None:
    code, out, _ = run_cli(fake, "ping")
    assert code == 0
    assert out.strip() == f"{fake.endpoint}: wire protocol 1.0"
    code, out, _ = run_cli(fake, "ping", "--json")
    assert json.loads(out) == {"endpoint": fake.endpoint, "major": 1, "minor": 0}


def test_cli_error_is_one_line_exit_1(sockdir: str) -> None:
    endpoint = f"unix:{sockdir}/nothing.sock"
    code, out, err = run_cli(endpoint, "providers")
    assert code == 1
    assert out == ""
    assert err.startswith("error: ") and err.count("\n") == 1
    assert endpoint in err
    assert "Traceback" not in err


def test_cli_keys_json(fake: FakeParsec) -> None:
    fake.handlers[Opcode.LIST_KEYS] = ok(_listed("ec", ecc_sign_key_attributes()))
    code, out, _ = run_cli(fake, "keys", "--json")
    assert code == 0
    (key,) = json.loads(out)
    assert key["name"] == "ec" and key["provider"] == "MbedCrypto"
    assert key["type"] == "EccKeyPair(SECP_R1)" and key["algorithm"] == "Ecdsa(SHA_256)"


def test_cli_generate_key_sends_type(fake: FakeParsec) -> None:
    fake.handlers[Opcode.PSA_GENERATE_KEY] = ok(pb.PsaGenerateKeyResult())
    code, _, _ = run_cli(fake, "generate-key", "enc", "--type", "rsa-encrypt")
    assert code == 0
    op = pb.PsaGenerateKeyOperation.FromString(fake.requests[-1].body)
    assert op.key_name == "enc"
    assert op.attributes == rsa_encrypt_key_attributes()


def test_cli_sign_hashes_locally_and_prints_base64(fake: FakeParsec) -> None:
    fake.handlers[Opcode.LIST_KEYS] = ok(_listed("rsa", rsa_sign_key_attributes()))
    fake.handlers[Opcode.PSA_SIGN_HASH] = ok(pb.PsaSignHashResult(signature=b"\x01\x02"))
    code, out, _ = run_cli(fake, "sign", "rsa", "hello")
    assert code == 0
    assert out.strip() == base64.b64encode(b"\x01\x02").decode()
    op = pb.PsaSignHashOperation.FromString(fake.requests[-1].body)
    assert op.hash == hashlib.sha256(b"hello").digest()


def test_cli_sign_ecdsa_prints_der_and_verify_accepts_it(fake: FakeParsec) -> None:
    utils = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.utils")
    raw = (5).to_bytes(32, "big") + (2**255 + 7).to_bytes(32, "big")
    fake.handlers[Opcode.LIST_KEYS] = ok(_listed("ec", ecc_sign_key_attributes()))
    fake.handlers[Opcode.PSA_SIGN_HASH] = ok(pb.PsaSignHashResult(signature=raw))
    fake.handlers[Opcode.PSA_VERIFY_HASH] = ok(pb.PsaVerifyHashResult())
    code, out, _ = run_cli(fake, "sign", "ec", "hello")
    assert code == 0
    der = base64.b64decode(out.strip())
    assert utils.decode_dss_signature(der) == (5, 2**255 + 7)
    code, out, _ = run_cli(fake, "verify", "ec", out.strip(), "hello")
    assert (code, out.strip()) == (0, "signature OK")
    op = pb.PsaVerifyHashOperation.FromString(fake.requests[-1].body)
    assert op.signature == raw  # the service gets PSA's r||s form back
    code, out, _ = run_cli(fake, "sign", "ec", "hello", "--raw")
    assert base64.b64decode(out.strip()) == raw


def test_cli_verify_mismatch_exits_1(fake: FakeParsec) -> None:
    fake.handlers[Opcode.LIST_KEYS] = ok(_listed("rsa", rsa_sign_key_attributes()))
    fake.handlers[Opcode.PSA_VERIFY_HASH] = status(1149)
    code, _, err = run_cli(fake, "verify", "rsa", base64.b64encode(b"sig").decode(), "hello")
    assert code == 1
    assert "PsaErrorInvalidSignature (1149)" in err
    assert err.count("\n") == 1


def test_cli_destroy_unknown_key_exits_1(fake: FakeParsec) -> None:
    fake.handlers[Opcode.PSA_DESTROY_KEY] = status(1140)
    code, _, err = run_cli(fake, "destroy-key", "ghost")
    assert code == 1
    assert "'ghost'" in err and "1140" in err


def test_cli_errors_stay_one_line_when_nested_under_another_group(sockdir: str) -> None:
    """The group is meant to be attached as `edgefaas parsec`; error handling must survive that."""

    @click.group()
    def top() -> None:
        pass

    top.add_command(parsec_cli)
    endpoint = f"unix:{sockdir}/nothing.sock"
    result = CliRunner().invoke(top, ["parsec", "--endpoint", endpoint, "keys"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ConnectionError (15): no socket there")
    assert result.stderr.count("\n") == 1 and endpoint in result.stderr
