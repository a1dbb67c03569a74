"""Request checking against the same JSON Schemas the OpenAPI document publishes.

One schema, two uses: what /openapi.json promises is exactly what is enforced, so a
client generated from it (or schemathesis probing it) never meets a surprise. Only
the subset of JSON Schema the gateway's own schemas use is implemented.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from .errors import ApiError

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "boolean": (bool,),
    "number": (int, float),
    "integer": (int,),
    "null": (type(None),),
}


@lru_cache(maxsize=256)
def _pattern(text: str) -> re.Pattern[str]:
    return re.compile(text)


def _is_type(value: Any, name: str) -> bool:
    if name in ("number", "integer") and isinstance(value, bool):
        return False  # JSON's true is not 1
    if name == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _TYPES[name])


def errors(value: Any, schema: Mapping[str, Any], where: str = "body") -> list[str]:
    """Every way ``value`` breaks ``schema``; empty when it conforms."""
    if value is None and schema.get("nullable"):
        return []
    wanted = schema.get("type")
    if wanted is not None:
        names = [wanted] if isinstance(wanted, str) else list(wanted)
        if not any(_is_type(value, n) for n in names):
            return [f"{where} must be {' or '.join(names)}"]
    found: list[str] = []
    if "oneOf" in schema:
        matching = sum(1 for option in schema["oneOf"] if not errors(value, option, where))
        if matching != 1:
            found.append(
                schema.get("x-oneOf-message", f"{where} must match exactly one of its allowed forms")
            )
    if "enum" in schema and value not in schema["enum"]:
        found.append(f"{where} must be one of {', '.join(map(str, schema['enum']))}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            found.append(f"{where} must be at least {schema['minLength']} characters")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            found.append(f"{where} must be at most {schema['maxLength']} characters")
        if "pattern" in schema and not _pattern(schema["pattern"]).search(value):
            found.append(f"{where} must match {schema['pattern']}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            found.append(f"{where} must be >= {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            found.append(f"{where} must be <= {schema['maximum']}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            found.append(f"{where} must have at least {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            found.append(f"{where} must have at most {schema['maxItems']} items")
        if "items" in schema:
            for i, item in enumerate(value):
                found.extend(errors(item, schema["items"], f"{where}[{i}]"))
    if isinstance(value, dict):
        properties: Mapping[str, Any] = schema.get("properties", {})
        for name in schema.get("required", ()):
            if name not in value:
                found.append(f"{where}.{name} is required")
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            found.append(f"{where} must have at most {schema['maxProperties']} entries")
        extra = schema.get("additionalProperties", True)
        for name, item in value.items():
            if name in properties:
                found.extend(errors(item, properties[name], f"{where}.{name}"))
            elif extra is False:
                found.append(f"{where}.{name} is not a known field")
            elif isinstance(extra, Mapping):
                found.extend(errors(item, extra, f"{where}.{name}"))
            if "propertyNames" in schema:
                found.extend(errors(name, schema["propertyNames"], f"{where} key {name!r}"))
    return found


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
    found = errors(value, schema, where)
    if found:
        raise ApiError(400, "; ".join(found[:10]))
