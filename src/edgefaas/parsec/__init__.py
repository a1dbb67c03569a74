"""Python client for the Parsec platform security service (wire protocol 1.0).

Typical use::

    from edgefaas.parsec import ParsecClient

    client = ParsecClient()                # $PARSEC_SERVICE_ENDPOINT or /run/parsec/parsec.sock
    client.generate_ecc_sign_key("fn-key")
    signature = client.sign_hash("fn-key", hashlib.sha256(b"payload").digest())
"""

from .attributes import (
    EccFamily,
    Hash,
    ecc_sign_key_attributes,
    ecdsa,
    rsa_encrypt_key_attributes,
    rsa_oaep,
    rsa_pkcs1v15_crypt,
    rsa_pkcs1v15_sign,
    rsa_pss,
    rsa_sign_key_attributes,
)
from .client import (
    DEFAULT_ENDPOINT,
    ENDPOINT_ENV,
    AuthenticatorInfo,
    KeyInfo,
    ParsecClient,
    ProviderInfo,
)
from .der import ecdsa_der_to_raw, ecdsa_raw_to_der
from .errors import (
    STATUS_ERRORS,
    AuthenticationError,
    BodySizeExceedsLimit,
    InvalidEndpoint,
    InvalidSignature,
    KeyAlreadyExists,
    KeyDoesNotExist,
    MalformedResponse,
    MissingAppName,
    NotAuthenticated,
    NotPermitted,
    NotSupported,
    ParsecConnectionError,
    ParsecError,
    PsaError,
    ServiceUnavailable,
    error_for_status,
)
from .wire import AuthType, Opcode, Provider

__all__ = [
    "DEFAULT_ENDPOINT",
    "ENDPOINT_ENV",
    "STATUS_ERRORS",
    "AuthType",
    "AuthenticationError",
    "AuthenticatorInfo",
    "BodySizeExceedsLimit",
    "EccFamily",
    "Hash",
    "InvalidEndpoint",
    "InvalidSignature",
    "KeyAlreadyExists",
    "KeyDoesNotExist",
    "KeyInfo",
    "MalformedResponse",
    "MissingAppName",
    "NotAuthenticated",
    "NotPermitted",
    "NotSupported",
    "Opcode",
    "ParsecClient",
    "ParsecConnectionError",
    "ParsecError",
    "Provider",
    "ProviderInfo",
    "PsaError",
    "ServiceUnavailable",
    "ecc_sign_key_attributes",
    "ecdsa",
    "ecdsa_der_to_raw",
    "ecdsa_raw_to_der",
    "error_for_status",
    "rsa_encrypt_key_attributes",
    "rsa_oaep",
    "rsa_pkcs1v15_crypt",
    "rsa_pkcs1v15_sign",
    "rsa_pss",
    "rsa_sign_key_attributes",
]
