"""Schemathesis against the gateway's own OpenAPI document: no request, however malformed, gets a 5xx.

Every operation ``/openapi.json`` lists is fuzzed twice: with data that fits its schemas
(positive) and with data that breaks them (negative). The admin's credentials are applied
the way the document declares them (basicAuth on /system, a license's bearer token on
function calls), so negative cases that drop them are told apart from real refusals.
Positive cases are sometimes pinned to names that exist (deployed functions, an issued
license, the seeded plans), so calls get past the 404 to the code behind it. Each answer
must be no 5xx, conform to the document (status, content type, headers, body schema), and
a schema-violating request must be refused.

The app runs in-process over ASGI with the test fakes (test_gateway_fakes.py): no ports,
no processes. Schemathesis's own pytest loader is not used: its fixture-based loading
(``schemathesis.pytest.from_fixture``) fails under pytest 9.2 (``Function._nodeid``), and a
module-level app would not survive schemathesis stopping ASGI lifespans after every test
item. So each operation is one plain pytest test with its own app, driven through
Hypothesis. ``EDGEFAAS_SCHEMA_EXAMPLES=200`` runs a deeper search than the default.
"""

from __future__ import annotations

import os

import httpx
import pytest
import schemathesis
from schemathesis import GenerationMode
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from edgefaas.backends.base import FunctionSpec
from edgefaas.gateway import GatewaySettings, create_app
from tests.schema_support import OPERATIONS, fuzz, gateway_config, operation_id

from .test_gateway_fakes import ADMIN, CODE, FakeBackend, Harness, RefusingTransport, fake_functions

pytestmark = pytest.mark.unit

# Examples per operation and mode: /system routes each run different code; the function routes
# (7 methods x 2 paths, and async) share one path through the gateway, so fewer each.
EXAMPLES = int(os.environ.get("EDGEFAAS_SCHEMA_EXAMPLES", "0")) or None
SYSTEM_EXAMPLES = EXAMPLES or 20
FUNCTION_EXAMPLES = EXAMPLES or 8

# What the fake backend holds before fuzzing: a public function, one that needs a license,
# and one scaled to zero (a call wakes it).
SEEDED_FUNCTIONS = {"Echo": {"public": True}, "Locked": {}, "Sleeper": {"replicas": 0}}


def examples_for(path: str) -> int:
    return FUNCTION_EXAMPLES if "function/{name}" in path and "/system/" not in path else SYSTEM_EXAMPLES


@pytest.fixture(name="gateway")
def gateway_fixture(tmp_path):
    """A fresh gateway app (fake backend, fake functions), seeded; its schema loaded over ASGI."""
    backend = FakeBackend()
    # A short upstream timeout: it also ends each followed /system/logs answer the fuzzer asks for.
    settings_ = GatewaySettings(
        data_dir=tmp_path, admin_password=ADMIN[1], unavailable_wait=0.2, upstream_timeout=0.5
    )
    app = create_app(settings_, backend, upstream_transport=RefusingTransport(fake_functions(backend, [])))
    for name, fields in SEEDED_FUNCTIONS.items():
        backend.deploy(FunctionSpec.from_json({"service": name, "code": CODE, "replicas": 1, **fields}))
    license, token = app.state.gateway.licenses.issue("fuzz", "standard")
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=gateway_config(ADMIN[1], token))
    return schema, {"functions": list(SEEDED_FUNCTIONS), "licenses": [license.id]}


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
@pytest.mark.parametrize(("path", "method"), OPERATIONS, ids=[operation_id(p, m) for p, m in OPERATIONS])
def test_no_request_gets_a_server_error_and_answers_match_the_document(gateway, path, method, mode):
    schema, known = gateway
    fuzz(schema, path, method, mode, examples_for(path), **known)


def test_every_documented_operation_is_fuzzed(gateway):
    schema, _ = gateway
    loaded = {(op.ok().path, op.ok().method.lower()) for op in schema.get_all_operations()}
    assert loaded == set(OPERATIONS)


# -- found while measuring the gateway's overhead (edgefaas.perf.gateway) -------------------------


def test_a_cookie_a_function_sets_goes_to_its_caller_and_never_to_other_callers(tmp_path):
    """The gateway's one upstream client must not keep a function's Set-Cookie and replay it."""
    seen: list[str | None] = []

    async def sets_a_session(request: Request) -> JSONResponse:
        seen.append(request.headers.get("cookie"))
        return JSONResponse({}, headers={"Set-Cookie": "session=first-callers; Path=/"})

    harness = Harness(tmp_path)
    try:
        harness.transport.inner = httpx.ASGITransport(
            app=Starlette(routes=[Route("/", sets_a_session, methods=["POST"])])
        )
        harness.deploy("Cookie", public=True)
        first = harness.call("Cookie")
        assert first.status_code == 200 and first.headers["set-cookie"] == "session=first-callers; Path=/"
        harness.client.cookies.clear()  # the next caller has no cookie of its own
        assert harness.call("Cookie").status_code == 200
        assert harness.call("Cookie", headers={"Cookie": "mine=1"}).status_code == 200
        assert seen == [None, None, "mine=1"]
    finally:
        harness.close()
