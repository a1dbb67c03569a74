"""Request checking against the same JSON Schemas the OpenAPI document publishes.

One schema, two uses: what /openapi.json promises is exactly what is enforced, so a
client generated from it (or schemathesis probing it) never meets a surprise. The schemas
are OpenAPI 3.0 Schema Objects: JSON Schema keywords that mean the same in Draft 2020-12,
checked by jsonschema's validator for that draft, plus OpenAPI's ``nullable`` (added to the
validator's ``type`` keyword) and ``x-oneOf-message`` (the wording for a failed ``oneOf``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from jsonschema import Draft202012Validator, ValidationError
from jsonschema.protocols import Validator
from jsonschema.validators import extend

from .errors import ApiError

# At most this many problems are listed in one answer.
MAX_PROBLEMS = 10


def _type_or_nullable(
    validator: Validator, types: Any, instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    # OpenAPI 3.0's "nullable: true" admits null beside the declared type.
    if instance is None and schema.get("nullable") is True:
        return
    yield from Draft202012Validator.VALIDATORS["type"](validator, types, instance, schema)


_OpenApiValidator = extend(Draft202012Validator, {"type": _type_or_nullable})

# Compiled once per schema; the schemas are module constants, so this holds one entry each.
# The schema is kept beside its validator so its id() cannot be reused by another dict.
_compiled: dict[int, tuple[Mapping[str, Any], Validator]] = {}


def _validator(schema: Mapping[str, Any]) -> Validator:
    entry = _compiled.get(id(schema))
    if entry is None or entry[0] is not schema:
        _OpenApiValidator.check_schema(schema)
        entry = _compiled[id(schema)] = (schema, _OpenApiValidator(schema))
    return entry[1]


def parse_json(body: bytes, schema: Mapping[str, Any]) -> Any:
    """The body as JSON conforming to ``schema``, else ApiError(400) listing what is wrong."""
    if not body.strip():
        raise ApiError(400, "a JSON body is required")
    try:
        value = json.loads(body, parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"body is not JSON: {exc}") from None
    except RecursionError:
        raise ApiError(400, "body is nested too deeply") from None
    check(value, schema)
    return value


def _refuse_constant(name: str) -> Any:
    # Python's json reads NaN and Infinity, which are not JSON and poison arithmetic (prices).
    raise ValueError(f"{name} is not a JSON number")


def check(value: Any, schema: Mapping[str, Any], where: str = "body") -> None:
    """ApiError(400) naming each field of ``value`` (called ``where``) that breaks ``schema``."""
    validator = _validator(schema)
    if validator.is_valid(value):
        return
    found = list(validator.iter_errors(value))
    # A value of the wrong type breaks every other rule for its place too: name only the type.
    mistyped = {tuple(error.absolute_path) for error in found if error.validator == "type"}
    found = [e for e in found if e.validator == "type" or tuple(e.absolute_path) not in mistyped]
    problems = dict.fromkeys(problem for error in found for problem in _describe(error, where))
    raise ApiError(400, "; ".join(list(problems)[:MAX_PROBLEMS]))


def _describe(error: ValidationError, where: str) -> Iterator[str]:
    """What ``error`` means, named by its field's path. The library's own messages quote the
    offending value, which may be a whole function's source: the answer states the rule instead.
    """
    place = where + "".join(
        f"[{step}]" if isinstance(step, int) else f".{step}" for step in error.absolute_path
    )
    rule, limit, instance = error.validator, error.validator_value, error.instance
    if rule == "required":
        yield from (f"{place}.{name} is required" for name in limit if name not in instance)
    elif rule == "additionalProperties":
        known = error.schema.get("properties", {})
        yield from (f"{place}.{name} is not a known field" for name in instance if name not in known)
    elif rule == "oneOf":
        yield error.schema.get("x-oneOf-message", f"{place} must match exactly one of its allowed forms")
    elif rule == "type":
        yield f"{place} must be {' or '.join([limit] if isinstance(limit, str) else limit)}"
    elif rule == "enum":
        yield f"{place} must be one of {', '.join(map(str, limit))}"
    elif rule in _LIMITS:
        yield f"{place} must {_LIMITS[rule].format(limit)}"
    else:
        yield f"{place} must satisfy {rule}: {json.dumps(limit)}"


_LIMITS = {
    "pattern": "match {}",
    "minLength": "be at least {} characters",
    "maxLength": "be at most {} characters",
    "minimum": "be >= {}",
    "maximum": "be <= {}",
    "minItems": "have at least {} items",
    "maxItems": "have at most {} items",
    "maxProperties": "have at most {} entries",
}
