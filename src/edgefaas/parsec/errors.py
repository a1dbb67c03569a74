"""Errors raised by the Parsec client.

Every failure the client reports is a :class:`ParsecError`, whether the service
answered with a non-zero status or the client itself gave up (socket absent,
garbage reply, payload too large). Callers can therefore write one ``except
ParsecError`` and still tell cases apart by subclass or by ``.status``.

``.status`` is always the Parsec response status the failure corresponds to
(see :data:`STATUS_NAMES`); ``.from_service`` says whether the service actually
sent it or the client raised it on its own.
"""

from __future__ import annotations

# Status codes from the Parsec wire protocol (parsec-interface ResponseStatus).
# PSA Crypto errors are 1000 + |psa_status_t|.
STATUS_NAMES: dict[int, str] = {
    0: "Success",
    1: "WrongProviderId",
    2: "ContentTypeNotSupported",
    3: "AcceptTypeNotSupported",
    4: "WireProtocolVersionNotSupported",
    5: "ProviderNotRegistered",
    6: "ProviderDoesNotExist",
    7: "DeserializingBodyFailed",
    8: "SerializingBodyFailed",
    9: "OpcodeDoesNotExist",
    10: "ResponseTooLarge",
    11: "AuthenticationError",
    12: "AuthenticatorDoesNotExist",
    13: "AuthenticatorNotRegistered",
    14: "KeyInfoManagerError",
    15: "ConnectionError",
    16: "InvalidEncoding",
    17: "InvalidHeader",
    18: "WrongProviderUuid",
    19: "NotAuthenticated",
    20: "BodySizeExceedsLimit",
    21: "AdminOperation",
    22: "DeprecatedPrimitive",
    1132: "PsaErrorGenericError",
    1133: "PsaErrorNotPermitted",
    1134: "PsaErrorNotSupported",
    1135: "PsaErrorInvalidArgument",
    1136: "PsaErrorInvalidHandle",
    1137: "PsaErrorBadState",
    1138: "PsaErrorBufferTooSmall",
    1139: "PsaErrorAlreadyExists",
    1140: "PsaErrorDoesNotExist",
    1141: "PsaErrorInsufficientMemory",
    1142: "PsaErrorInsufficientStorage",
    1143: "PsaErrorInsufficientData",
    1145: "PsaErrorCommunicationFailure",
    1146: "PsaErrorStorageFailure",
    1147: "PsaErrorHardwareFailure",
    1148: "PsaErrorInsufficientEntropy",
    1149: "PsaErrorInvalidSignature",
    1150: "PsaErrorInvalidPadding",
    1151: "PsaErrorCorruptionDetected",
    1152: "PsaErrorDataCorrupt",
    1153: "PsaErrorDataInvalid",
}


class ParsecError(Exception):
    """Base class of everything the Parsec client raises.

    Attributes:
        status: the Parsec response status code this error stands for.
        from_service: True when the service sent ``status``; False when the
            client detected the problem itself.
        opcode: name of the operation that failed, when known.
        endpoint: the service endpoint involved, when known.
    """

    status: int = -1
    description: str = "Parsec error"

    def __init__(
        self,
        detail: str | None = None,
        *,
        status: int | None = None,
        from_service: bool = False,
        opcode: str | None = None,
        endpoint: str | None = None,
    ) -> None:
        if status is not None:
            self.status = status
        self.detail = detail
        self.from_service = from_service
        self.opcode = opcode
        self.endpoint = endpoint
        super().__init__(self._render())

    def add_context(self, *, opcode: str | None = None, endpoint: str | None = None) -> ParsecError:
        """Fill in the operation and endpoint where they are still unknown; returns self."""
        self.opcode = self.opcode or opcode
        self.endpoint = self.endpoint or endpoint
        self.args = (self._render(),)
        return self

    @property
    def status_name(self) -> str:
        return STATUS_NAMES.get(self.status, f"UnknownStatus{self.status}")

    def _render(self) -> str:
        text = f"{self.status_name} ({self.status}): {self.detail or self.description}"
        where = " via ".join(part for part in (self.opcode, self.endpoint) if part)
        return f"{text} [{where}]" if where else text


# --------------------------------------------------------------------------
# Core statuses (1..22)


class WrongProviderId(ParsecError):
    status, description = 1, "the request was sent to the wrong provider"


class ContentTypeNotSupported(ParsecError):
    status, description = 2, "the body content type is not supported"


class AcceptTypeNotSupported(ParsecError):
    status, description = 3, "the requested response content type is not supported"


class WireProtocolVersionNotSupported(ParsecError):
    status, description = 4, "the wire protocol version is not supported"


class ProviderNotRegistered(ParsecError):
    status, description = 5, "no provider is registered for the requested id"


class ProviderDoesNotExist(ParsecError):
    status, description = 6, "no provider is defined for the requested id"


class DeserializingBodyFailed(ParsecError):
    status, description = 7, "the service could not decode the request body"


class SerializingBodyFailed(ParsecError):
    status, description = 8, "the service could not encode the response body"


class OpcodeDoesNotExist(ParsecError):
    status, description = 9, "the provider does not implement this operation"


class ResponseTooLarge(ParsecError):
    status, description = 10, "the response is larger than the allowed limit"


class AuthenticationError(ParsecError):
    status, description = 11, "authentication failed"


class AuthenticatorDoesNotExist(ParsecError):
    status, description = 12, "the requested authenticator does not exist"


class AuthenticatorNotRegistered(ParsecError):
    status, description = 13, "the requested authenticator is not the one the service uses"


class KeyInfoManagerError(ParsecError):
    status, description = 14, "the service's key info manager failed"


class ParsecConnectionError(ParsecError):
    """Status 15. Not named ``ConnectionError`` so as not to shadow the builtin."""

    status, description = 15, "connection error"


class ServiceUnavailable(ParsecConnectionError):
    """The client could not reach the service: socket missing, refused, timed out, reset."""

    description = "the Parsec service cannot be reached"


class InvalidEndpoint(ParsecConnectionError, ValueError):
    """The endpoint string is not a ``unix:`` socket address."""

    description = "invalid Parsec endpoint"


class InvalidEncoding(ParsecError):
    status, description = 16, "invalid encoding"


class MalformedResponse(InvalidEncoding):
    """The reply was truncated, not a Parsec header, or had an undecodable body."""

    description = "malformed response from the service"


class InvalidHeader(ParsecError):
    status, description = 17, "the request header is invalid"


class WrongProviderUuid(ParsecError):
    status, description = 18, "the provider UUID does not match"


class NotAuthenticated(ParsecError):
    status, description = 19, "the operation needs an authenticated request"


class MissingAppName(NotAuthenticated):
    """The service uses the Direct authenticator but no application name was given."""

    description = "the service uses Direct authentication: an application name is required"


class BodySizeExceedsLimit(ParsecError):
    status, description = 20, "the request body is larger than the service accepts"


class AdminOperation(ParsecError):
    status, description = 21, "this operation is reserved to service administrators"


class DeprecatedPrimitive(ParsecError):
    status, description = 22, "the requested algorithm or key type is deprecated"


# --------------------------------------------------------------------------
# PSA Crypto statuses (1000 + |psa_status_t|)


class PsaError(ParsecError):
    """Base of errors reported by the crypto library behind a provider."""

    description = "PSA crypto error"


class PsaGenericError(PsaError):
    status, description = 1132, "generic crypto error"


class NotPermitted(PsaError):
    status, description = 1133, "the key's policy does not permit this operation"


class NotSupported(PsaError):
    status, description = 1134, "the algorithm or key type is not supported"


class InvalidArgument(PsaError):
    status, description = 1135, "invalid argument"


class InvalidHandle(PsaError):
    status, description = 1136, "invalid key handle"


class BadState(PsaError):
    status, description = 1137, "operation called in a bad state"


class BufferTooSmall(PsaError):
    status, description = 1138, "output buffer too small"


class KeyAlreadyExists(PsaError):
    status, description = 1139, "a key with this name already exists"


class KeyDoesNotExist(PsaError):
    status, description = 1140, "the key does not exist"


class InsufficientMemory(PsaError):
    status, description = 1141, "insufficient memory"


class InsufficientStorage(PsaError):
    status, description = 1142, "insufficient storage"


class InsufficientData(PsaError):
    status, description = 1143, "insufficient data"


class CommunicationFailure(PsaError):
    status, description = 1145, "communication failure with the crypto backend"


class StorageFailure(PsaError):
    status, description = 1146, "key storage failure"


class HardwareFailure(PsaError):
    status, description = 1147, "hardware failure"


class InsufficientEntropy(PsaError):
    status, description = 1148, "insufficient entropy"


class InvalidSignature(PsaError):
    status, description = 1149, "the signature does not match"


class InvalidPadding(PsaError):
    status, description = 1150, "invalid padding"


class CorruptionDetected(PsaError):
    status, description = 1151, "corruption detected"


class DataCorrupt(PsaError):
    status, description = 1152, "stored data is corrupt"


class DataInvalid(PsaError):
    status, description = 1153, "stored data is invalid"


def _collect_status_classes() -> dict[int, type[ParsecError]]:
    """Map each status to its most general class (client-only subclasses excluded)."""
    table: dict[int, type[ParsecError]] = {}
    pending: list[type[ParsecError]] = list(ParsecError.__subclasses__())
    while pending:
        cls = pending.pop(0)
        pending.extend(cls.__subclasses__())
        if cls.__dict__.get("status") is not None and cls.status not in table:
            table[cls.status] = cls
    return table


#: Parsec status code -> exception class raised when the service sends it.
STATUS_ERRORS: dict[int, type[ParsecError]] = _collect_status_classes()


def error_for_status(
    status: int,
    *,
    opcode: str | None = None,
    endpoint: str | None = None,
    subject: str | None = None,
) -> ParsecError:
    """Build the exception for a non-zero status the service answered with.

    ``subject`` names what the request was about (e.g. ``"key 'k1'"``) so that the
    message says which key does not exist, not just that one does not.
    """
    cls = STATUS_ERRORS.get(status, ParsecError)
    if cls is ParsecError:
        detail = "the service answered with a status this client does not know"
    else:
        detail = cls.description
    if subject:
        detail = f"{detail} ({subject})"
    return cls(detail, status=status, from_service=True, opcode=opcode, endpoint=endpoint)
