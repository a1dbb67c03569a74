"""A small synchronous client for the Parsec service (wire protocol 1.0).

Shaped like parsec-client-rust's ``BasicClient``: it finds out which
authenticator the service uses and which provider to send crypto to the first
time it needs them, then caches both, and offers one method per operation.

Every call opens a fresh connection, because the service answers exactly one
request per connection and then closes it.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from google.protobuf.message import Message

from . import attributes as attrs_mod
from .attributes import AsymmetricEncryption, AsymmetricSignature, Hash, KeyAttributes
from .der import RSA_KEY_TYPES, check_rsa_public_key, pem, public_key_spki
from .errors import (
    AuthenticatorDoesNotExist,
    AuthenticatorNotRegistered,
    BodySizeExceedsLimit,
    InvalidArgument,
    InvalidEndpoint,
    KeyDoesNotExist,
    MalformedResponse,
    MissingAppName,
    NotSupported,
    ParsecError,
    ProviderNotRegistered,
    ServiceUnavailable,
    error_for_status,
)
from .protos import parsec_pb2 as pb
from .wire import (
    CONTENT_TYPE_PROTOBUF,
    DEFAULT_BODY_LIMIT,
    AuthType,
    Opcode,
    Provider,
    WireHeader,
    encode_request,
    enum_name,
    read_response,
    socket_recv,
)

ENDPOINT_ENV = "PARSEC_SERVICE_ENDPOINT"
DEFAULT_ENDPOINT = "unix:/run/parsec/parsec.sock"
#: Same default as the Rust client: RSA key generation on slow hardware takes seconds.
DEFAULT_TIMEOUT = 60.0
#: Authenticators this client can produce credentials for, in the service's terms.
SUPPORTED_AUTH = (AuthType.DIRECT, AuthType.UNIX_PEER_CREDENTIALS)

ExportFormat = Literal["raw", "der", "pem", "pkcs1-pem"]
_R = TypeVar("_R", bound=Message)


@dataclass(frozen=True)
class ProviderInfo:
    """One provider the service offers (ListProviders)."""

    id: int
    uuid: str
    description: str
    vendor: str
    version: str

    @property
    def name(self) -> str:
        return enum_name(Provider, self.id)


@dataclass(frozen=True)
class AuthenticatorInfo:
    """One authenticator the service uses (ListAuthenticators)."""

    id: int
    description: str
    version: str

    @property
    def name(self) -> str:
        return enum_name(AuthType, self.id)


@dataclass(frozen=True)
class KeyInfo:
    """A key owned by this client (ListKeys), with its attributes summarised."""

    name: str
    provider_id: int
    key_type: str
    key_bits: int
    algorithm: str
    usage: tuple[str, ...]
    attributes: KeyAttributes = field(compare=False, repr=False)

    @classmethod
    def from_proto(cls, info: pb.KeyInfo) -> KeyInfo:
        a = info.attributes
        return cls(
            name=info.name,
            provider_id=info.provider_id,
            key_type=attrs_mod.describe_key_type(a),
            key_bits=a.key_bits,
            algorithm=attrs_mod.describe_algorithm(a.key_policy.key_algorithm),
            usage=tuple(attrs_mod.usage_names(a)),
            attributes=a,
        )


def socket_path_from_endpoint(endpoint: str) -> str:
    """``unix:/run/parsec/parsec.sock`` (or ``unix:///...`` or a bare path) -> the path."""
    if endpoint.startswith("unix:"):
        path = endpoint[len("unix:") :]
        if path.startswith("//"):
            path = path[2:]  # empty URI authority: unix:///run/...
    elif "://" in endpoint or ":" in endpoint.split("/", 1)[0]:
        raise InvalidEndpoint(f"only unix: endpoints are supported, got {endpoint!r}", endpoint=endpoint)
    else:
        path = endpoint
    if not path.startswith("/"):
        raise InvalidEndpoint(f"socket path must be absolute, got {endpoint!r}", endpoint=endpoint)
    return path


def _connect_failure(exc: OSError) -> str:
    """Say in words why connect() failed, with the likely cause."""
    if isinstance(exc, FileNotFoundError):
        return "no socket there (is the Parsec service running?)"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (stale socket: is the service running?)"
    if isinstance(exc, PermissionError):
        return "permission denied on the socket"
    if isinstance(exc, TimeoutError):
        return "timed out connecting"
    return f"cannot connect: {exc}"


class ParsecClient:
    """Client for one Parsec service.

    Args:
        endpoint: ``unix:/path/to/socket``; defaults to ``$PARSEC_SERVICE_ENDPOINT``,
            then ``unix:/run/parsec/parsec.sock``.
        app_name: application name, needed only when the service uses the
            Direct authenticator (it is the identity keys belong to).
        timeout: seconds for connecting, sending and waiting for each reply.
        provider: provider id for crypto operations; by default the first one
            the service lists.
        body_limit: largest request or response body accepted, by default the
            service's own 1 MiB limit so oversize requests fail before sending.
    """

    def __init__(
        self,
        endpoint: str | None = None,
        app_name: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        provider: int | None = None,
        body_limit: int = DEFAULT_BODY_LIMIT,
    ) -> None:
        self.endpoint = endpoint or os.environ.get(ENDPOINT_ENV) or DEFAULT_ENDPOINT
        self.socket_path = socket_path_from_endpoint(self.endpoint)
        self.app_name = app_name
        self.timeout = timeout
        self.body_limit = body_limit
        self._provider: int | None = provider
        self._auth_type: AuthType | None = None
        self._discovery_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ParsecClient(endpoint={self.endpoint!r}, app_name={self.app_name!r})"

    # ------------------------------------------------------------------ transport

    def _connect(self) -> socket.socket:
        """Open a connected socket to the service; errors name the endpoint."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError as exc:
            sock.close()
            raise ServiceUnavailable(_connect_failure(exc), endpoint=self.endpoint) from exc
        except BaseException:
            sock.close()
            raise
        return sock

    def _exchange(self, request: bytes) -> tuple[WireHeader, bytes]:
        """Send one framed request on a new connection and read the reply."""
        with self._connect() as sock:
            recv = socket_recv(sock, self.endpoint)
            try:
                sock.sendall(request)
            except (BrokenPipeError, ConnectionResetError) as exc:
                # The service rejects some requests (oversize body, bad header) after
                # reading only the header, answers, and closes: the sender then gets
                # EPIPE, but the reply with the real status is already in the socket.
                try:
                    return read_response(recv, self.body_limit)
                except ParsecError:
                    raise ServiceUnavailable(
                        f"failed to send the request: {exc}", endpoint=self.endpoint
                    ) from exc
            except OSError as exc:
                raise ServiceUnavailable(
                    f"failed to send the request: {exc}", endpoint=self.endpoint
                ) from exc
            return read_response(recv, self.body_limit)

    def _call(
        self,
        opcode: Opcode,
        operation: Message,
        result_type: type[_R],
        *,
        provider: int | None = None,
        authenticated: bool = True,
        subject: str | None = None,
    ) -> _R:
        """Run one operation: encode, check size, send, check status, decode.

        ``provider`` None means the crypto provider, discovered only after the
        size check so that an oversize request causes no traffic at all.
        """
        op_name = enum_name(Opcode, opcode)
        body = operation.SerializeToString()
        if len(body) > self.body_limit:
            raise BodySizeExceedsLimit(
                f"request body is {len(body)} bytes, over the service's {self.body_limit}-byte "
                "limit; nothing was sent",
                opcode=op_name,
                endpoint=self.endpoint,
            )
        try:
            if provider is None:
                provider = self._crypto_provider()
            auth_type, auth = self._credentials() if authenticated else (AuthType.NO_AUTH, b"")
            request = encode_request(opcode, body, provider=provider, auth_type=auth_type, auth=auth)
            header, reply = self._exchange(request)
        except ParsecError as exc:
            exc.add_context(opcode=op_name, endpoint=self.endpoint)
            raise
        if header.status != 0:
            # The reply's opcode is not checked here: a service that could not parse
            # the header answers as if to a Ping.
            raise error_for_status(header.status, opcode=op_name, endpoint=self.endpoint, subject=subject)
        if header.opcode != opcode:
            raise MalformedResponse(
                f"reply is for opcode {header.opcode}, the request was {int(opcode)}",
                opcode=op_name,
                endpoint=self.endpoint,
            )
        if header.content_type != CONTENT_TYPE_PROTOBUF:
            raise MalformedResponse(
                f"reply body content type is {header.content_type}, expected protobuf (0)",
                opcode=op_name,
                endpoint=self.endpoint,
            )
        result = result_type()
        try:
            result.ParseFromString(reply)
        except Exception as exc:  # DecodeError, but never let a parser quirk escape
            raise MalformedResponse(
                f"cannot decode the result body: {exc}", opcode=op_name, endpoint=self.endpoint
            ) from exc
        return result

    # ------------------------------------------------------------------ discovery

    def _credentials(self) -> tuple[AuthType, bytes]:
        """The auth type and bytes for authenticated requests (discovered once)."""
        auth_type = self.auth_type
        if auth_type == AuthType.UNIX_PEER_CREDENTIALS:
            # The service compares this with the uid the kernel reports for the socket peer.
            return auth_type, struct.pack("<I", os.getuid())
        if not self.app_name:
            raise MissingAppName(endpoint=self.endpoint)
        return auth_type, self.app_name.encode("utf-8")

    @property
    def auth_type(self) -> AuthType:
        """The authenticator the service uses: the first one it lists that we support."""
        if self._auth_type is None:
            with self._discovery_lock:
                if self._auth_type is None:
                    self._auth_type = self._discover_auth_type()
        return self._auth_type

    def _discover_auth_type(self) -> AuthType:
        authenticators = self.list_authenticators()
        if not authenticators:
            raise AuthenticatorDoesNotExist("the service reports no authenticator", endpoint=self.endpoint)
        for info in authenticators:
            if info.id in SUPPORTED_AUTH:
                return AuthType(info.id)
        names = ", ".join(info.name for info in authenticators)
        raise AuthenticatorNotRegistered(
            f"the service uses {names}; this client supports Direct and UnixPeerCredentials",
            endpoint=self.endpoint,
        )

    @property
    def provider(self) -> int:
        """Provider id used for crypto operations: the first one the service lists."""
        if self._provider is None:
            with self._discovery_lock:
                if self._provider is None:
                    providers = self.list_providers()
                    if not providers:
                        raise ProviderNotRegistered("the service lists no provider", endpoint=self.endpoint)
                    self._provider = providers[0].id
        return self._provider

    def _crypto_provider(self) -> int:
        provider = self.provider
        if provider == Provider.CORE:
            raise ProviderNotRegistered(
                "the service has no crypto provider configured (only Core)",
                endpoint=self.endpoint,
            )
        return provider

    # ------------------------------------------------------------------ core operations

    def ping(self) -> tuple[int, int]:
        """Wire protocol version the service speaks, as (major, minor). Unauthenticated."""
        res = self._call(
            Opcode.PING,
            pb.PingOperation(),
            pb.PingResult,
            provider=Provider.CORE,
            authenticated=False,
        )
        return res.wire_protocol_version_maj, res.wire_protocol_version_min

    def list_providers(self) -> list[ProviderInfo]:
        """Providers in the service's order (crypto providers first, Core last).

        Sent unauthenticated, like discovery in the reference client, so it works
        before the authenticator is known and without an app name.
        """
        res = self._call(
            Opcode.LIST_PROVIDERS,
            pb.ListProvidersOperation(),
            pb.ListProvidersResult,
            provider=Provider.CORE,
            authenticated=False,
        )
        return [
            ProviderInfo(
                id=p.id,
                uuid=p.uuid,
                description=p.description,
                vendor=p.vendor,
                version=f"{p.version_maj}.{p.version_min}.{p.version_rev}",
            )
            for p in res.providers
        ]

    def list_opcodes(self, provider: int | None = None) -> list[int]:
        """Opcodes ``provider`` implements (default: the crypto provider), sorted."""
        provider_id = self.provider if provider is None else int(provider)
        res = self._call(
            Opcode.LIST_OPCODES,
            pb.ListOpcodesOperation(provider_id=provider_id),
            pb.ListOpcodesResult,
            provider=Provider.CORE,
            authenticated=False,
        )
        return sorted(res.opcodes)

    def list_authenticators(self) -> list[AuthenticatorInfo]:
        """Authenticators the service has (only one is active). Unauthenticated."""
        res = self._call(
            Opcode.LIST_AUTHENTICATORS,
            pb.ListAuthenticatorsOperation(),
            pb.ListAuthenticatorsResult,
            provider=Provider.CORE,
            authenticated=False,
        )
        return [
            AuthenticatorInfo(
                id=a.id,
                description=a.description,
                version=f"{a.version_maj}.{a.version_min}.{a.version_rev}",
            )
            for a in res.authenticators
        ]

    def list_keys(self) -> list[KeyInfo]:
        """Keys belonging to this client's identity, across all providers."""
        res = self._call(Opcode.LIST_KEYS, pb.ListKeysOperation(), pb.ListKeysResult, provider=Provider.CORE)
        return [KeyInfo.from_proto(k) for k in res.keys]

    def key_info(self, name: str) -> KeyInfo:
        """The listing entry of key ``name`` in the crypto provider."""
        provider = self._crypto_provider()
        for key in self.list_keys():
            if key.name == name and key.provider_id == provider:
                return key
        raise KeyDoesNotExist(
            f"no key named {name!r} in provider {enum_name(Provider, provider)}",
            endpoint=self.endpoint,
        )

    def list_clients(self) -> list[str]:
        """Application identities that own keys (admin operation)."""
        res = self._call(
            Opcode.LIST_CLIENTS,
            pb.ListClientsOperation(),
            pb.ListClientsResult,
            provider=Provider.CORE,
        )
        return list(res.clients)

    def delete_client(self, client: str) -> None:
        """Delete every key of ``client`` (admin operation)."""
        self._call(
            Opcode.DELETE_CLIENT,
            pb.DeleteClientOperation(client=client),
            pb.DeleteClientResult,
            provider=Provider.CORE,
            subject=f"client {client!r}",
        )

    # ------------------------------------------------------------------ key management

    def generate_key(self, name: str, attributes: KeyAttributes) -> None:
        """Create key ``name`` inside the service; the private part never leaves it."""
        self._call(
            Opcode.PSA_GENERATE_KEY,
            pb.PsaGenerateKeyOperation(key_name=name, attributes=attributes),
            pb.PsaGenerateKeyResult,
            subject=f"key {name!r}",
        )

    def generate_rsa_sign_key(self, name: str, bits: int = 2048, hash_alg: int = Hash.SHA_256) -> None:
        """RSA key pair for RSASSA-PKCS1-v1_5 signatures over ``hash_alg`` digests."""
        self.generate_key(name, attrs_mod.rsa_sign_key_attributes(bits, hash_alg))

    def generate_rsa_encrypt_key(self, name: str, bits: int = 2048, oaep_hash: int | None = None) -> None:
        """RSA key pair for PKCS#1 v1.5 encryption, or OAEP with ``oaep_hash``."""
        self.generate_key(name, attrs_mod.rsa_encrypt_key_attributes(bits, oaep_hash))

    def generate_ecc_sign_key(
        self,
        name: str,
        curve: int = attrs_mod.EccFamily.SECP_R1,
        bits: int = 256,
        hash_alg: int = Hash.SHA_256,
    ) -> None:
        """EC key pair (P-256 by default) for ECDSA over ``hash_alg`` digests."""
        self.generate_key(name, attrs_mod.ecc_sign_key_attributes(curve, bits, hash_alg))

    def import_key(self, name: str, attributes: KeyAttributes, data: bytes) -> None:
        """Import key material (PSA export format) under ``name``."""
        self._call(
            Opcode.PSA_IMPORT_KEY,
            pb.PsaImportKeyOperation(key_name=name, attributes=attributes, data=data),
            pb.PsaImportKeyResult,
            subject=f"key {name!r}",
        )

    def destroy_key(self, name: str) -> None:
        """Destroy key ``name``."""
        self._call(
            Opcode.PSA_DESTROY_KEY,
            pb.PsaDestroyKeyOperation(key_name=name),
            pb.PsaDestroyKeyResult,
            subject=f"key {name!r}",
        )

    def export_public_key(self, name: str, format: ExportFormat = "der") -> bytes:
        """Public part of key ``name``.

        ``"raw"`` is what the service returns (PKCS#1 RSAPublicKey DER for RSA,
        the uncompressed point for EC); ``"der"`` and ``"pem"`` are
        SubjectPublicKeyInfo, which is what openssl and most libraries load, and
        what ``parsec-tool export-public-key`` prints; ``"pkcs1-pem"`` is an RSA
        key as ``RSA PUBLIC KEY`` (``parsec-tool ... --pkcs1``). All but raw look
        the key up in ListKeys to learn its type.
        """
        if format not in ("raw", "der", "pem", "pkcs1-pem"):
            raise ValueError(f"format must be raw, der, pem or pkcs1-pem, not {format!r}")
        res = self._call(
            Opcode.PSA_EXPORT_PUBLIC_KEY,
            pb.PsaExportPublicKeyOperation(key_name=name),
            pb.PsaExportPublicKeyResult,
            subject=f"key {name!r}",
        )
        if format == "raw":
            return res.data
        try:
            attributes = self.key_info(name).attributes
            if format == "pkcs1-pem":
                if attributes.key_type.WhichOneof("variant") not in RSA_KEY_TYPES:
                    raise NotSupported(f"key {name!r} is not an RSA key: no PKCS#1 form")
                check_rsa_public_key(res.data)
                return pem(res.data, "RSA PUBLIC KEY").encode("ascii")
            spki = public_key_spki(attributes, res.data)
        except ParsecError as exc:
            exc.add_context(opcode="PsaExportPublicKey", endpoint=self.endpoint)
            raise
        return spki if format == "der" else pem(spki).encode("ascii")

    # ------------------------------------------------------------------ crypto

    def _policy_algorithm(self, name: str, kind: str) -> Message:
        """The key's own policy algorithm of ``kind`` (costs one ListKeys round trip)."""
        alg = self.key_info(name).attributes.key_policy.key_algorithm
        if alg.WhichOneof("variant") != kind:
            raise InvalidArgument(
                f"key {name!r} has no {kind.replace('_', ' ')} policy; pass algorithm=",
                endpoint=self.endpoint,
            )
        return getattr(alg, kind)

    def sign_hash(self, name: str, digest: bytes, algorithm: AsymmetricSignature | None = None) -> bytes:
        """Sign a precomputed ``digest``. ``algorithm`` defaults to the key's policy.

        The signature is in PSA format: for ECDSA that is ``r || s`` (64 bytes on
        P-256), not DER; :func:`edgefaas.parsec.der.ecdsa_raw_to_der` converts.
        """
        alg = algorithm
        if alg is None:
            alg = self._policy_algorithm(name, "asymmetric_signature")
        res = self._call(
            Opcode.PSA_SIGN_HASH,
            pb.PsaSignHashOperation(key_name=name, alg=alg, hash=digest),
            pb.PsaSignHashResult,
            subject=f"key {name!r}",
        )
        return res.signature

    def verify_hash(
        self,
        name: str,
        digest: bytes,
        signature: bytes,
        algorithm: AsymmetricSignature | None = None,
    ) -> None:
        """Check ``signature`` over ``digest``; raises InvalidSignature when it does not match."""
        alg = algorithm
        if alg is None:
            alg = self._policy_algorithm(name, "asymmetric_signature")
        self._call(
            Opcode.PSA_VERIFY_HASH,
            pb.PsaVerifyHashOperation(key_name=name, alg=alg, hash=digest, signature=signature),
            pb.PsaVerifyHashResult,
            subject=f"key {name!r}",
        )

    def asymmetric_encrypt(
        self,
        name: str,
        plaintext: bytes,
        algorithm: AsymmetricEncryption | None = None,
        salt: bytes = b"",
    ) -> bytes:
        """Encrypt with the public half of key ``name``."""
        alg = algorithm
        if alg is None:
            alg = self._policy_algorithm(name, "asymmetric_encryption")
        res = self._call(
            Opcode.PSA_ASYMMETRIC_ENCRYPT,
            pb.PsaAsymmetricEncryptOperation(key_name=name, alg=alg, plaintext=plaintext, salt=salt),
            pb.PsaAsymmetricEncryptResult,
            subject=f"key {name!r}",
        )
        return res.ciphertext

    def asymmetric_decrypt(
        self,
        name: str,
        ciphertext: bytes,
        algorithm: AsymmetricEncryption | None = None,
        salt: bytes = b"",
    ) -> bytes:
        """Decrypt with the private half of key ``name``."""
        alg = algorithm
        if alg is None:
            alg = self._policy_algorithm(name, "asymmetric_encryption")
        res = self._call(
            Opcode.PSA_ASYMMETRIC_DECRYPT,
            pb.PsaAsymmetricDecryptOperation(key_name=name, alg=alg, ciphertext=ciphertext, salt=salt),
            pb.PsaAsymmetricDecryptResult,
            subject=f"key {name!r}",
        )
        return res.plaintext

    def generate_random(self, size: int) -> bytes:
        """``size`` random bytes from the provider's RNG."""
        res = self._call(
            Opcode.PSA_GENERATE_RANDOM,
            pb.PsaGenerateRandomOperation(size=size),
            pb.PsaGenerateRandomResult,
        )
        return res.random_bytes

    def hash_compute(self, data: bytes, alg: int = Hash.SHA_256) -> bytes:
        """Digest of ``data`` computed by the provider."""
        res = self._call(
            Opcode.PSA_HASH_COMPUTE,
            pb.PsaHashComputeOperation(alg=int(alg), input=data),
            pb.PsaHashComputeResult,
        )
        return res.hash
