"""The gateway's routes: OpenFaaS's API, deploy validation, invocation, async, metrics, bad input."""

import ast
import importlib.util
import json
import re
import stat
import time
from pathlib import Path

import pytest
from starlette.routing import Route

import edgefaas.gateway
from edgefaas.gateway.app import ALL_METHODS
from edgefaas.gateway.auth import ensure_admin_password

from .test_gateway_fakes import ADMIN, CODE, Harness, harness_fixture  # noqa: F401 - the harness fixture

pytestmark = pytest.mark.unit


def _routes(app):
    for route in app.routes:
        assert isinstance(route, Route)
        path = route.path.replace("{path:path}", "{path}")
        for method in route.methods or ():
            if method != "HEAD" or route.methods == set(ALL_METHODS):
                yield path, method.lower()


def _imports(path: Path, package: str, top_level_only: bool = False):
    """Every module a file imports, as absolute names (relative imports resolved)."""
    tree = ast.parse(path.read_text())
    for node in tree.body if top_level_only else ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = (
                importlib.util.resolve_name("." * node.level + (node.module or ""), package)
                if node.level
                else node.module
            )
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def test_no_gateway_module_imports_the_app_back():
    """app.py assembles the gateway; the parts it assembles never reach for it (no import circle)."""
    root = Path(edgefaas.gateway.__file__).parent
    entry_points = {root / "__init__.py", root / "cli.py"}  # they load the app lazily, to serve it
    for path in root.rglob("*.py"):
        if path in entry_points or path.name == "app.py":
            continue
        package = ".".join(["edgefaas.gateway", *path.relative_to(root).parent.parts])
        importers = [name for name in _imports(path, package) if name == "edgefaas.gateway.app"]
        assert not importers, f"{path.relative_to(root)} imports edgefaas.gateway.app"


def test_the_gateway_modules_import_one_another_without_a_circle():
    root = Path(edgefaas.gateway.__file__).parent
    modules = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        name = ".".join(["edgefaas.gateway", *parts]).removesuffix(".__init__")
        modules[name] = path
    graph = {
        name: {
            imported
            for imported in _imports(
                path, ".".join(["edgefaas.gateway", *path.relative_to(root).parent.parts]), True
            )
            if imported in modules and imported != name
        }
        for name, path in modules.items()
    }
    done: set[str] = set()

    def visit(name: str, trail: list[str]) -> None:
        assert name not in trail, "import circle: " + " -> ".join([*trail[trail.index(name) :], name])
        if name not in done:
            for imported in graph[name]:
                visit(imported, [*trail, name])
            done.add(name)

    for name in modules:
        visit(name, [])


def test_openapi_describes_exactly_the_routes_served(harness):
    answer = harness.get("/openapi.json")
    assert answer.status_code == 200
    document = answer.json()
    assert document["openapi"].startswith("3.0")
    documented = {(path, method) for path, item in document["paths"].items() for method in item}
    served = set(_routes(harness.app)) | {("/openapi.json", "get")}
    assert documented | {("/openapi.json", "get")} == served
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert operation["responses"], f"{method} {path} documents no answer"
            if path.startswith("/system/"):
                assert operation["security"] == [{"basicAuth": []}]
                assert "401" in operation["responses"]


def test_healthz_needs_no_credentials(harness):
    answer = harness.get("/healthz")
    assert answer.status_code == 200 and answer.text == "OK"


def test_every_system_route_needs_the_admin(harness):
    document = harness.get("/openapi.json").json()
    for path, item in document["paths"].items():
        if not path.startswith("/system/"):
            continue
        url = path.replace("{name}", "Echo").replace("{license_id}", "lic_0000000000000000")
        for method in item:
            for auth in (None, ("admin", "wrong"), ("someone", ADMIN[1])):
                answer = harness.request(method.upper(), url, auth=auth, json={})
                assert answer.status_code == 401, (method, path, auth)
                assert answer.headers["www-authenticate"].startswith("Basic")
    garbled = harness.get("/system/info", headers={"Authorization": "Basic %%%not-base64"})
    assert garbled.status_code == 401


def test_the_admin_password_is_made_once_and_private(tmp_path):
    path = tmp_path / "admin-password"
    first = ensure_admin_password(path, None)
    assert len(first) >= 24
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_admin_password(path, None) == first
    assert ensure_admin_password(path, "given") == "given"


def test_a_gateway_without_a_given_password_writes_one(tmp_path):
    gateway = Harness(tmp_path / "gw", admin_password=None)
    try:
        password = (tmp_path / "gw" / "admin-password").read_text().strip()
        assert gateway.get("/system/info", auth=("admin", password)).status_code == 200
        assert gateway.get("/system/info", auth=ADMIN).status_code == 401
    finally:
        gateway.close()


def test_system_info_has_openfaas_shape(harness):
    info = harness.get("/system/info", auth=ADMIN).json()
    assert info["provider"]["provider"] == "edgefaas"
    assert info["provider"]["orchestration"] == "fake"
    assert set(info["version"]) == {"sha", "release"}
    assert info["arch"]


def test_deploy_list_get_and_delete(harness):
    deployed = harness.deploy("Echo", labels={"team": "a"}, constraints=["edgefaas.io/profile=jetson"]).json()
    assert deployed["name"] == "Echo" and deployed["replicas"] == 1 and deployed["version"] == 1
    assert deployed["labels"] == {"team": "a"}
    assert deployed["description"] == "Echoes what it was sent."
    assert re.fullmatch(r"[0-9a-f]{64}", deployed["codeSha256"])
    assert "code" not in deployed
    assert [f["name"] for f in harness.get("/system/functions", auth=ADMIN).json()] == ["Echo"]
    assert harness.get("/system/function/Echo", auth=ADMIN).json()["constraints"] == [
        "edgefaas.io/profile=jetson"
    ]
    again = harness.post("/system/functions", json={"service": "Echo", "code": CODE}, auth=ADMIN)
    assert again.status_code == 409
    assert harness.delete("/system/functions", json={"functionName": "Echo"}, auth=ADMIN).json() == {
        "deleted": "Echo"
    }
    assert harness.get("/system/function/Echo", auth=ADMIN).status_code == 404
    assert harness.call("Echo").status_code == 404
    assert harness.delete("/system/functions", json={"functionName": "Echo"}, auth=ADMIN).status_code == 404


def test_code_that_does_not_compile_is_refused_naming_the_line(harness):
    broken = "def handle(event, context):\n    x = 1\n    return x +\n"
    answer = harness.post("/system/functions", json={"service": "Echo", "code": broken}, auth=ADMIN)
    assert answer.status_code == 400
    assert answer.json()["line"] == 3
    assert "line 3" in answer.json()["error"]
    assert harness.get("/system/function/Echo", auth=ADMIN).status_code == 404


def test_a_broken_update_leaves_the_old_version_serving(harness):
    harness.deploy("Echo", public=True)
    answer = harness.put(
        "/system/functions", json={"service": "Echo", "code": "def handle(e, c)\n"}, auth=ADMIN
    )
    assert answer.status_code == 400 and answer.json()["line"] == 1
    failing = harness.put(
        "/system/functions",
        json={"service": "Echo", "code": CODE, "envVars": {"FAIL_START": "1"}},
        auth=ADMIN,
    )
    assert failing.status_code == 400 and "exited with status 3" in failing.json()["error"]
    call = harness.call("Echo")
    assert call.status_code == 200 and call.json()["version"] == 1


def test_update_rolls_the_version_and_keeps_the_scale(harness):
    harness.deploy("Echo", public=True)
    assert harness.post("/system/scale-function/Echo", json={"replicas": 3}, auth=ADMIN).status_code == 202
    # An update replaces the spec (public too), as OpenFaaS's does; only the scale is kept.
    body = {"service": "Echo", "code": CODE + "\n# v2\n", "public": True}
    updated = harness.put("/system/functions", json=body, auth=ADMIN)
    assert updated.status_code == 200
    assert updated.json()["version"] == 2 and updated.json()["replicas"] == 3
    assert harness.call("Echo").json()["version"] == 2
    missing = harness.put("/system/functions", json={"service": "Nope", "code": CODE}, auth=ADMIN)
    assert missing.status_code == 404


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "must be object"),
        (b"", "JSON body is required"),
        (b'{"service": "Echo"}', "exactly one of code"),
        (b'{"service": "Echo", "code": "x", "image": "y"}', "exactly one of code"),
        (
            b'{"service": "Echo", "image": "Reg.lab:5000/Upper:1"}',
            "body.image: 'Reg.lab:5000/Upper:1' is not",
        ),
        (
            b'{"service": "Echo", "image": "fn:1;reboot"}',
            "body.image: 'fn:1;reboot' is not an image reference",
        ),
        (b'{"service": "9bad", "code": "def handle(e, c): pass"}', "body.service must match"),
        (
            b'{"service": "Echo", "code": "def handle(e, c): pass", "colour": 1}',
            "colour is not a known field",
        ),
        (b'{"service": "Echo", "code": "def handle(e, c): pass", "replicas": -1}', "replicas must be >= 0"),
        (
            b'{"service": "Echo", "code": "def handle(e, c): pass", "replicas": true}',
            "replicas must be integer",
        ),
        (b'{"service": "Echo", "code": "def handle(e, c): pass", "constraints": ["gpu"]}', "must match"),
        (
            b'{"service": "Echo", "code": "def handle(e, c): pass", "envVars": {"A": 1}}',
            "envVars.A must be string",
        ),
        (b'{"service": "Echo", "replicas": NaN, "code": "x"}', "NaN is not a JSON number"),
        (b'{"service": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
    ],
)
def test_malformed_deployments_are_400(harness, body, message):
    answer = harness.post(
        "/system/functions", content=body, auth=ADMIN, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 400
    assert message in answer.json()["error"]


def test_scale(harness):
    harness.deploy("Echo", public=True)
    mismatch = {"serviceName": "Other", "replicas": 1}
    assert harness.post("/system/scale-function/Echo", json=mismatch, auth=ADMIN).status_code == 400
    assert harness.post("/system/scale-function/Nope", json={"replicas": 1}, auth=ADMIN).status_code == 404
    assert harness.post("/system/scale-function/Echo", json={"replicas": "2"}, auth=ADMIN).status_code == 400
    to_zero = {"serviceName": "Echo", "replicas": 0}
    scaled = harness.post("/system/scale-function/Echo", json=to_zero, auth=ADMIN)
    assert scaled.status_code == 202 and scaled.json()["replicas"] == 0
    # A call wakes a function scaled to zero (OpenFaaS's scale from zero) instead of failing.
    assert harness.call("Echo").status_code == 200
    assert harness.get("/system/function/Echo", auth=ADMIN).json()["replicas"] == 1


def test_a_deploy_while_the_cluster_api_restarts_is_503_and_succeeds_when_retried(harness, monkeypatch):
    from edgefaas.backends.base import BackendUnreachable

    deploy = harness.backend.deploy

    def restarting(spec):
        raise BackendUnreachable("the Kubernetes API cannot be reached: connection refused")

    monkeypatch.setattr(harness.backend, "deploy", restarting)
    answer = harness.post("/system/functions", json={"service": "Echo", "code": CODE}, auth=ADMIN)
    assert answer.status_code == 503 and "try again" in answer.json()["error"]
    assert answer.headers["retry-after"]
    monkeypatch.setattr(harness.backend, "deploy", deploy)
    harness.deploy("Echo")


def test_a_function_down_for_longer_than_a_restart_is_503_at_once(harness):
    """Its device lost power: waiting for a replica would only add a hang to every call."""
    harness.deploy("Echo", public=True, envVars={"DOWN_FOR": "60"})
    started = time.monotonic()
    answer = harness.call("Echo")
    assert answer.status_code == 503 and "its device is down" in answer.json()["error"]
    assert "for 60 s" in answer.json()["error"]
    assert time.monotonic() - started < 0.25  # not held for unavailable_wait (0.3 s here)
    assert harness.bill("public").json()["functions"] == []


def test_a_function_with_no_ready_replica_is_503_after_waiting(harness):
    harness.deploy("Echo", public=True, envVars={"NEVER_READY": "1"})
    started = time.monotonic()
    answer = harness.call("Echo")
    assert answer.status_code == 503 and "no ready replica" in answer.json()["error"]
    assert answer.headers["retry-after"] == "1"
    assert time.monotonic() - started >= 0.25  # it waited (unavailable_wait) for a replica first
    assert harness.bill("public").json()["functions"] == []


def test_a_call_passes_method_path_query_headers_and_body_through(harness):
    harness.deploy("Echo", public=True)
    answer = harness.call(
        "Echo",
        method="PATCH",
        path="/deep/er%20path",
        params={"a": "1", "b": "x y"},
        content=b"payload",
        headers={"X-Custom": "mine", "X-Call-Id": "caller-chosen", "X-Edgefaas-License": "lic_spoofed"},
    )
    assert answer.status_code == 200
    seen = answer.json()
    assert seen["method"] == "PATCH"
    assert seen["path"] == "/deep/er path"
    assert seen["query"] == "a=1&b=x+y"
    assert seen["body"] == "payload"
    assert seen["headers"]["x-custom"] == "mine"
    # The function sees the gateway's call id (the ledger's key, which a caller cannot choose);
    # the caller's X-Call-Id is its idempotency key, and its answer carries that key back.
    assert re.fullmatch(r"[0-9a-f]{32}", seen["headers"]["x-call-id"])
    assert answer.headers["x-call-id"] == "caller-chosen"
    assert "x-edgefaas-license" not in seen["headers"]
    assert seen["headers"]["x-forwarded-for"]


def test_the_extra_path_is_passed_on_as_sent_even_when_the_name_is_escaped(harness):
    harness.deploy("Echo", public=True)
    answer = harness.post("/function/Ech%6F/a%2Fb/c")
    assert answer.status_code == 200
    assert answer.json()["path"] == "/a/b/c"  # the fake decodes; the raw path reached it as /a%2Fb/c


def test_the_functions_status_and_headers_come_back(harness):
    harness.deploy("Text", public=True)
    answer = harness.call("Text", method="GET")
    assert answer.text == "plain words"
    assert answer.headers["x-custom"] == "kept"
    assert answer.headers.get_list("set-cookie") == ["a=1", "b=2"]
    harness.deploy("Boom", public=True)
    boom = harness.call("Boom")
    assert boom.status_code == 500 and boom.json() == {"error": "ValueError: boom"}
    assert "x-call-id" in boom.headers


def test_unknown_functions_are_404_with_a_call_id(harness):
    for url in ("/function/Nope", "/function/Nope/sub/path", "/async-function/Nope", "/function/bad%20name"):
        answer = harness.post(url)
        assert answer.status_code == 404, url
        assert answer.json()["error"]
        assert answer.headers.get("x-call-id") or url.endswith("bad%20name")


def test_bodies_over_the_limit_are_413(tmp_path):
    gateway = Harness(tmp_path, max_body_bytes=1024)
    try:
        gateway.deploy("Echo", public=True)
        assert gateway.call("Echo", content=b"x" * 1024).status_code == 200
        assert gateway.call("Echo", content=b"x" * 1025).status_code == 413
        big_code = CODE + "#" * 2000
        answer = gateway.post("/system/functions", json={"service": "Big", "code": big_code}, auth=ADMIN)
        assert answer.status_code == 413
    finally:
        gateway.close()


def test_async_calls_answer_202_then_call_back(harness):
    harness.deploy("Echo", public=True)
    answer = harness.post(
        "/async-function/Echo/sub?x=1",
        content=b"later",
        headers={"X-Callback-Url": "http://callback.fn/done"},
    )
    assert answer.status_code == 202
    call_id = answer.headers["x-call-id"]
    deadline = time.monotonic() + 5
    while not harness.callbacks and time.monotonic() < deadline:
        time.sleep(0.01)
    (callback,) = harness.callbacks
    assert callback["headers"]["x-call-id"] == call_id
    assert callback["headers"]["x-function-status"] == "200"
    assert callback["headers"]["x-function-name"] == "Echo"
    seen = json.loads(callback["body"])
    assert seen["body"] == "later" and seen["path"] == "/sub" and seen["query"] == "x=1"
    billed = harness.bill("public").json()
    assert billed["functions"][0]["invocations"] == 1


def test_async_call_without_callback_and_with_a_bad_one(harness):
    harness.deploy("Echo", public=True)
    assert harness.post("/async-function/Echo").status_code == 202
    bad = harness.post("/async-function/Echo", headers={"X-Callback-Url": "ftp://nowhere"})
    assert bad.status_code == 400
    assert harness.get("/async-function/Echo").status_code == 405


def test_metrics_use_openfaas_names(harness):
    harness.deploy("Echo", public=True)
    harness.deploy("Boom", public=True)
    harness.call("Echo")
    harness.call("Echo.edgefaas-fn")  # the same function in OpenFaaS's <name>.<namespace> form
    harness.call("Boom")
    for _ in range(5):
        harness.call("NoSuchFunction")
    answer = harness.get("/metrics")
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = answer.text
    echo = 'function_name="Echo.edgefaas-fn"'
    assert f'gateway_function_invocation_total{{{echo},code="200"}} 2' in text
    assert 'gateway_function_invocation_total{function_name="Boom.edgefaas-fn",code="500"} 1' in text
    assert f"gateway_function_invocation_started{{{echo}}} 2" in text
    assert f'gateway_functions_seconds_count{{{echo},code="200"}} 2' in text
    assert f'gateway_functions_seconds_bucket{{{echo},code="200",le="+Inf"}} 2' in text
    # OpenFaaS's buckets: the Go client's defaults, nothing between 0.05 and 0.1.
    bounds = re.findall(rf'gateway_functions_seconds_bucket{{{echo},code="200",le="([^"]+)"}}', text)
    assert bounds == ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"]
    assert f"gateway_service_count{{{echo}}} 1" in text
    assert "# TYPE gateway_functions_seconds histogram" in text
    assert "NoSuchFunction" not in text
    assert harness.call("Echo.other-namespace").status_code == 404
    assert harness.get("/system/function/Echo", auth=ADMIN).json()["invocationCount"] == 2


def test_apis_list_every_function_with_route_description_and_schemas(harness):
    harness.deploy("Echo")
    annotations = {
        "edgefaas.io/description": "classifies images",
        "edgefaas.io/input-schema": '{"type": "string"}',
    }
    image = {"service": "Img", "image": "example/img:1", "annotations": annotations}
    assert harness.post("/system/functions", json=image, auth=ADMIN).status_code == 202
    apis = harness.get("/system/apis", auth=ADMIN).json()
    assert apis == [
        {
            "name": "Echo",
            "route": "/function/Echo",
            "async_route": "/async-function/Echo",
            "public": False,
            "description": "Echoes what it was sent.",
            "input_schema": {"type": "object"},
            "output_schema": {"type": "object", "required": ["function"]},
        },
        {
            "name": "Img",
            "route": "/function/Img",
            "async_route": "/async-function/Img",
            "public": False,
            "description": "classifies images",
            "input_schema": {"type": "string"},
            "output_schema": None,
        },
    ]


def test_nodes_logs_and_namespaces(harness):
    harness.deploy("Echo")
    (node,) = harness.get("/system/nodes", auth=ADMIN).json()
    assert (
        node["profile"] == "jetson" and node["functions"] == ["Echo"] and node["gpus"][0]["model"] == "tegra"
    )
    logs = harness.get("/system/logs", params={"name": "Echo", "tail": 2}, auth=ADMIN)
    assert logs.headers["content-type"].startswith("application/x-ndjson")
    assert [json.loads(line) for line in logs.text.splitlines()] == [
        {
            "name": "Echo",
            "namespace": "edgefaas-fn",
            "instance": "Echo-1",
            "timestamp": "2023-11-14T22:13:21.000000Z",
            "text": "Echo line 1",
        },
        {
            "name": "Echo",
            "namespace": "edgefaas-fn",
            "instance": "Echo-0",
            "timestamp": "2023-11-14T22:13:22.000000Z",
            "text": "Echo line 2",
        },
    ]

    def texts(**params) -> list[str]:
        answer = harness.get("/system/logs", params={"name": "Echo", **params}, auth=ADMIN)
        assert answer.status_code == 200, answer.text
        return [json.loads(line)["text"] for line in answer.text.splitlines()]

    # faas-cli's --tail=false sends tail=-1: every line, as absent or 0 does.
    assert texts(tail=-1) == texts(tail=0) == texts() == ["Echo line 0", "Echo line 1", "Echo line 2"]
    assert texts(instance="Echo-0") == ["Echo line 0", "Echo line 2"]
    assert texts(since="2023-11-14T22:13:21Z") == ["Echo line 1", "Echo line 2"]
    assert texts(since="2023-11-14T23:13:21+01:00", namespace="edgefaas-fn", follow="false") == [
        "Echo line 1",
        "Echo line 2",
    ]
    for bad, field in [
        ({"tail": "x"}, "tail"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2023-11-14T22:13:21"}, "since"),
        ({"follow": "maybe"}, "follow"),
        ({"namespace": "openfaas-fn"}, "namespace"),
    ]:
        answer = harness.get("/system/logs", params={"name": "Echo", **bad}, auth=ADMIN)
        assert answer.status_code == 400 and field in answer.json()["error"], (bad, answer.text)
    assert harness.get("/system/logs", auth=ADMIN).status_code == 400
    assert harness.get("/system/logs", params={"name": "Nope"}, auth=ADMIN).status_code == 404
    assert harness.get("/system/namespaces", auth=ADMIN).json() == ["edgefaas-fn"]


def test_a_refused_connection_is_retried_and_billed_once(harness):
    harness.deploy("Echo", public=True)
    harness.transport.refuse["echo.fn"] = 2
    answer = harness.call("Echo")
    assert answer.status_code == 200
    assert harness.bill("public").json()["functions"][0]["invocations"] == 1


def test_an_unreachable_function_is_502_and_not_billed(harness):
    harness.deploy("Echo", public=True)
    harness.transport.refuse["echo.fn"] = 10_000
    answer = harness.call("Echo")
    assert answer.status_code == 502 and "could not be reached" in answer.json()["error"]
    assert harness.bill("public").json()["functions"] == []


def test_the_runtimes_own_refusal_is_passed_on_and_not_billed(harness):
    harness.deploy("Busy", public=True)
    answer = harness.call("Busy")
    assert answer.status_code == 429
    assert "x-edgefaas-rejected" not in answer.headers
    assert harness.bill("public").json()["functions"] == []


def test_unknown_routes_and_methods_answer_json_4xx(harness):
    missing = harness.get("/nowhere")
    assert missing.status_code == 404 and missing.json()["error"]
    wrong = harness.request("PATCH", "/system/functions", auth=ADMIN)
    assert wrong.status_code == 405
    assert set(wrong.headers["allow"].split(", ")) >= {"GET", "POST", "PUT", "DELETE"}


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"license": "not-a-license"},
        {"license": "public", "format": "xml"},
        {"license": "public", "detail": "x"},
    ],
)
def test_malformed_billing_queries_are_400(harness, params):
    assert harness.get("/system/billing", params=params, auth=ADMIN).status_code == 400


def test_metrics_behind_the_admins_credentials_when_asked(tmp_path):
    harness = Harness(tmp_path, metrics_auth=True)
    try:
        refused = harness.get("/metrics")
        assert refused.status_code == 401 and "WWW-Authenticate" in refused.headers
        assert harness.get("/metrics", auth=("admin", "wrong")).status_code == 401
        assert "gateway_service_count" in harness.get("/metrics", auth=ADMIN).text
    finally:
        harness.close()
