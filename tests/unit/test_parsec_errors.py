"""Status codes -> exception classes."""

from __future__ import annotations

import pytest

from edgefaas.parsec import errors
from edgefaas.parsec.errors import (
    STATUS_ERRORS,
    STATUS_NAMES,
    AuthenticationError,
    BodySizeExceedsLimit,
    InvalidSignature,
    KeyAlreadyExists,
    KeyDoesNotExist,
    MalformedResponse,
    NotPermitted,
    NotSupported,
    ParsecConnectionError,
    ParsecError,
    PsaError,
    ServiceUnavailable,
    error_for_status,
)

pytestmark = pytest.mark.unit

# From the design notes: core statuses 0..22 and the PSA ones it lists.
DOC_STATUSES = {
    1: "WrongProviderId",
    5: "ProviderNotRegistered",
    9: "OpcodeDoesNotExist",
    11: "AuthenticationError",
    17: "InvalidHeader",
    19: "NotAuthenticated",
    20: "BodySizeExceedsLimit",
    21: "AdminOperation",
    22: "DeprecatedPrimitive",
    1132: "PsaErrorGenericError",
    1133: "PsaErrorNotPermitted",
    1134: "PsaErrorNotSupported",
    1135: "PsaErrorInvalidArgument",
    1139: "PsaErrorAlreadyExists",
    1140: "PsaErrorDoesNotExist",
    1149: "PsaErrorInvalidSignature",
    1150: "PsaErrorInvalidPadding",
}


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (1140, KeyDoesNotExist),
        (1139, KeyAlreadyExists),
        (1133, NotPermitted),
        (1134, NotSupported),
        (1149, InvalidSignature),
        (11, AuthenticationError),
        (20, BodySizeExceedsLimit),
        (15, ParsecConnectionError),
    ],
)
def test_named_classes(status: int, cls: type[ParsecError]) -> None:
    err = error_for_status(status, opcode="PsaSignHash", endpoint="unix:/s", subject="key 'k'")
    assert type(err) is cls
    assert err.status == status and err.from_service
    text = str(err)
    assert f"({status})" in text and "key 'k'" in text and "PsaSignHash via unix:/s" in text


def test_every_known_status_has_its_own_class() -> None:
    nonzero = {s for s in STATUS_NAMES if s}
    assert set(STATUS_ERRORS) == nonzero
    for status, cls in STATUS_ERRORS.items():
        assert issubclass(cls, ParsecError)
        assert cls.status == status
        if status >= 1000:
            assert issubclass(cls, PsaError)
    assert len(set(STATUS_ERRORS.values())) == len(STATUS_ERRORS)


@pytest.mark.parametrize(("status", "name"), sorted(DOC_STATUSES.items()))
def test_status_names_match_design_notes(status: int, name: str) -> None:
    assert STATUS_NAMES[status] == name
    assert error_for_status(status).status_name == name


def test_core_statuses_are_contiguous() -> None:
    assert [STATUS_NAMES[i] for i in (0, 22)] == ["Success", "DeprecatedPrimitive"]
    assert all(i in STATUS_NAMES for i in range(23))


def test_unknown_status_keeps_the_code() -> None:
    err = error_for_status(999)
    assert type(err) is ParsecError
    assert err.status == 999
    assert "UnknownStatus999" in str(err)


def test_client_side_classes_are_not_what_the_service_maps_to() -> None:
    assert STATUS_ERRORS[15] is ParsecConnectionError
    assert STATUS_ERRORS[16] is errors.InvalidEncoding
    assert issubclass(ServiceUnavailable, ParsecConnectionError)
    assert issubclass(MalformedResponse, ParsecError)
    err = ServiceUnavailable("no socket there", endpoint="unix:/run/parsec/parsec.sock")
    assert not err.from_service
    assert str(err) == ("ConnectionError (15): no socket there [unix:/run/parsec/parsec.sock]")


def test_add_context_fills_only_missing_parts() -> None:
    err = MalformedResponse("short read", endpoint="unix:/a")
    err.add_context(opcode="Ping", endpoint="unix:/b")
    assert (err.opcode, err.endpoint) == ("Ping", "unix:/a")
    assert str(err).endswith("[Ping via unix:/a]")
