"""What the gateway knows about each function between calls: cheap to ask on every call.

The backend is the truth (it keeps the specs); the registry caches, per function, what
the hot path needs (does it exist, is it public) and what /system/apis shows (its
description and schemas, read from its source without running it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from edgefaas.backends.base import Backend, FunctionSpec, FunctionStatus
from edgefaas.runtime.source import SourceError, inspect_source

# Functions deployed from an image describe themselves through these annotations.
DESCRIPTION_ANNOTATION = "edgefaas.io/description"
INPUT_SCHEMA_ANNOTATION = "edgefaas.io/input-schema"
OUTPUT_SCHEMA_ANNOTATION = "edgefaas.io/output-schema"


@dataclass(frozen=True)
class FunctionInfo:
    name: str
    public: bool
    description: str
    input_schema: dict[str, Any] | None
    output_schema: dict[str, Any] | None

    def api_entry(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "route": f"/function/{self.name}",
            "async_route": f"/async-function/{self.name}",
            "public": self.public,
            "description": self.description,
            "input_schema": self.input_schema,
            "output_schema": self.output_schema,
        }


def _schema_annotation(spec: FunctionSpec, key: str) -> dict[str, Any] | None:
    try:
        value = json.loads(spec.annotations.get(key, "null"))
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def describe(spec: FunctionSpec) -> FunctionInfo:
    if spec.code is not None:
        try:
            source = inspect_source(spec.code)
            return FunctionInfo(
                spec.name, spec.public, source.description, source.input_schema, source.output_schema
            )
        except SourceError:
            pass  # checked at deploy; a spec restored from older state may predate a rule
    return FunctionInfo(
        spec.name,
        spec.public,
        spec.annotations.get(DESCRIPTION_ANNOTATION, ""),
        _schema_annotation(spec, INPUT_SCHEMA_ANNOTATION),
        _schema_annotation(spec, OUTPUT_SCHEMA_ANNOTATION),
    )


class FunctionRegistry:
    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._functions: dict[str, FunctionInfo] = {}

    def sync(self, statuses: list[FunctionStatus] | None = None) -> None:
        """Replace the cache with what the backend has (blocking: call off the event loop)."""
        listed = self._backend.list() if statuses is None else statuses
        self._functions = {status.name: describe(status.spec) for status in listed}

    def remember(self, status: FunctionStatus) -> FunctionInfo:
        info = describe(status.spec)
        self._functions = {**self._functions, status.name: info}
        return info

    def forget(self, name: str) -> None:
        self._functions = {k: v for k, v in self._functions.items() if k != name}

    def lookup(self, name: str) -> FunctionInfo | None:
        return self._functions.get(name)

    def all(self) -> list[FunctionInfo]:
        return [self._functions[name] for name in sorted(self._functions)]
