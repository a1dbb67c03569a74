"""The gateway's OpenAPI operations fuzzed with schemathesis: shared by the in-process suite
(tests/unit/test_gateway_schema.py) and the one against a deployed gateway
(tests/integration/test_gateway_schema.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from edgefaas.gateway.openapi import build_openapi

# The plans a gateway seeds itself with: licenses for them can be asked for by name.
SEEDED_PLANS = ("free", "standard")

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    ignored_auth,
]
OPERATIONS = [(path, method) for path, item in build_openapi("0")["paths"].items() for method in item]


def operation_id(path: str, method: str) -> str:
    return f"{method.upper()} {path}"


def pin_known_names(case: Any, pick: Callable[[list[str]], str], functions: list[str], licenses: list[str]):
    """Point a positive case at things that exist: every value it sets still fits the schema."""

    def choose(options: list[str]) -> Any:
        return pick(options) if options else None

    params = case.path_parameters or {}
    query = case.query or {}
    body = case.body if isinstance(case.body, dict) else {}
    pins = [
        (params, "name", functions),
        (params, "license_id", licenses),
        (query, "name", functions),
        (query, "license", [*licenses, "public"]),
        (body, "service", functions),
        (body, "functionName", functions),
        (body, "plan", list(SEEDED_PLANS) if case.path == "/system/licenses" else []),
    ]
    for where, key, options in pins:
        if key in where and options:
            where[key] = choose(options)
    if "serviceName" in body and "name" in params:
        body["serviceName"] = params["name"]
    return case


def case_strategy(
    operation: Any,
    mode: GenerationMode,
    functions: list[str],
    licenses: list[str],
    keep: Callable[[Any], bool] | None = None,
):
    """The operation's cases (half the positive ones pinned to existing names), as far as ``keep`` keeps."""
    generated = operation.as_strategy(generation_mode=mode)
    if mode.is_positive and (functions or licenses):
        pinned = st.tuples(generated, st.randoms(use_true_random=False)).map(
            lambda pair: pin_known_names(pair[0], pair[1].choice, functions, licenses)
        )
        generated = st.one_of(generated, pinned)
    return generated.filter(keep) if keep else generated


def fuzz(
    schema: Any,
    path: str,
    method: str,
    mode: GenerationMode,
    examples: int,
    functions: Sequence[str] = (),
    licenses: Sequence[str] = (),
    keep: Callable[[Any], bool] | None = None,
) -> None:
    """Run one operation's cases; the first failed check raises, shrunk, with a curl line to replay it."""
    operation = schema[path][method.upper()]
    cases = case_strategy(operation, mode, list(functions), list(licenses), keep)

    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=cases)
    def run(case: Any) -> None:
        case.call_and_validate(checks=CHECKS)

    try:
        run()
    except Unsatisfiable:
        # Negative mode with nothing to break (no parameters, body or credentials): nothing to test.
        pytest.skip(f"{operation_id(path, method)} has nothing a negative case could break")


def gateway_config(password: str, token: str | None = None, ca_file: str | None = None) -> SchemathesisConfig:
    """Credentials for the gateway's schemes; `ca_file`: verify its HTTPS by that CA alone."""
    schemes: dict[str, Any] = {"basicAuth": {"username": "admin", "password": password}}
    if token:
        schemes["bearerAuth"] = {"bearer": token}
    return SchemathesisConfig.from_dict(
        {"auth": {"openapi": schemes}, **({"tls-verify": ca_file} if ca_file else {})}
    )
