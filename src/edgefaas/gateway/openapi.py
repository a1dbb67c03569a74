"""The gateway's OpenAPI 3.0 document, built from the schemas the routes enforce."""

from __future__ import annotations

from typing import Any

from . import schemas
from .routes.perf_report import PERF_REPORT_MAX_BYTES
from .usage import USAGE_PUSH

JSON = "application/json"
FUNCTION_METHODS = ("get", "post", "put", "patch", "delete", "head", "options")
ADMIN = [{"basicAuth": []}]
# A license, or nothing for a public function.
LICENSE_OR_PUBLIC: list[dict[str, list[str]]] = [{"bearerAuth": []}, {}]


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(schemas.ERROR, description)


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {JSON: {"schema": schema}}}


_ADMIN_ERRORS = {
    "400": _error("malformed request"),
    "401": _error("admin credentials missing or wrong"),
    "413": _error("body over the size limit"),
}
_NAME_PARAM = {"name": "name", "in": "path", "required": True, "schema": schemas.FUNCTION_NAME}


def _admin(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"summary": summary, "security": ADMIN, "responses": {**responses, **_ADMIN_ERRORS}, **extra}


def _function_operation(summary: str, path_param: bool, method: str, is_async: bool) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [_NAME_PARAM]
    if path_param:
        parameters.append(
            {"name": "path", "in": "path", "required": True, "schema": {"type": "string"},
             "description": "passed to the function as its path"}
        )  # fmt: skip
    if is_async:
        parameters.append(
            {"name": "X-Callback-Url", "in": "header", "required": False,
             "schema": {"type": "string", "format": "uri", "pattern": "^https?://[^/?#]+"},
             "description": "POSTed the function's answer, with X-Call-Id and X-Function-Status"}
        )  # fmt: skip
    responses: dict[str, Any] = {
        "401": _error("no license token, and the function is not public"),
        "403": _error("the license token is forged, edited, unknown or revoked"),
        "404": _error("no such function"),
        "413": _error("body over the size limit"),
        "429": _error("the license's quota is used up (not billed), or the function is at max in-flight"),
        "502": _error("the function could not be reached"),
        "503": _error(
            "the function has no ready replica (restarting), could not be woken from zero, or the call "
            "cannot be billed now (the gateway's database is unreachable or its disk full; not billed, retry)"
        ),
        "504": _error("the function did not answer in time"),
    }
    if is_async:
        responses["202"] = {
            "description": "queued (or queued already: the same X-Call-Id from the same payer within the "
            "dedup window); the answer goes to X-Callback-Url if given, with this X-Call-Id",
            "headers": {"X-Call-Id": {"schema": {"type": "string"}}},
        }
        responses["400"] = _error(
            "X-Callback-Url is not an absolute http(s) URL (or too long, or with credentials), X-Call-Id "
            "is not a plain id, or a body declared JSON is not JSON; nothing queued"
        )
        responses["413"] = _error("body over the size limit, or over what the queue takes; nothing queued")
        responses["429"] = _error(
            "the license's quota is used up, or the async queue is full; nothing queued"
        )
        responses["503"] = _error(
            "the async queue (NATS) is unreachable; nothing queued, retry with the X-Call-Id"
        )
    else:
        parameters.append(
            {"name": "X-Call-Id", "in": "header", "required": False,
             "schema": {"type": "string", "pattern": "^[!-~]{1,128}$"},
             "description": "an idempotency key of the caller's license: a retry within the window "
                            "replays the first answer (X-Idempotent-Replay: true) and is not billed again"}
        )  # fmt: skip
        responses["400"] = _error("X-Call-Id is not 1 to 128 printable ASCII characters without spaces")
        responses["409"] = _error(
            "the X-Call-Id's call is still running (Retry-After), or its answer was too large to keep"
        )
        responses["default"] = {
            "description": "the function's own answer, status and headers as it chose; X-Call-Id added "
            "(the caller's key when given)",
            "headers": {
                "X-Call-Id": {"schema": {"type": "string"}},
                "X-Idempotent-Replay": {"schema": {"type": "string", "enum": ["true"]}},
            },
            "content": {"*/*": {"schema": {}}},
        }
    operation: dict[str, Any] = {
        "summary": summary,
        "security": LICENSE_OR_PUBLIC,
        "parameters": parameters,
        "responses": responses,
    }
    if method not in ("get", "head", "options"):
        # Any body and content type is passed through as sent; JSON is what most functions take, and
        # each function's own input schema is in /system/apis.
        operation["requestBody"] = {"required": False, "content": {JSON: {"schema": {}}}}
    return operation


def build_openapi(version: str) -> dict[str, Any]:
    function_list = _json({"type": "array", "items": schemas.FUNCTION_STATUS}, "functions")
    function_one = _json(schemas.FUNCTION_STATUS, "the function")
    names = _json({"type": "array", "items": {"type": "string"}}, "names")
    bill = {
        "description": "the bill",
        "content": {JSON: {"schema": {"type": "object"}}, "text/csv": {"schema": {"type": "string"}}},
    }
    license_param = {"name": "license_id", "in": "path", "required": True, "schema": schemas.LICENSE_ID}
    namespace_param = {"name": "name", "in": "path", "required": True, "schema": schemas.NAMESPACE}
    namespace_query = {"name": "namespace", "in": "query", "required": False, "schema": schemas.NAMESPACE}
    paths: dict[str, Any] = {
        "/healthz": {
            "get": {
                "summary": "the gateway is up",
                "responses": {
                    "200": {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}}
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (OpenFaaS names)",
                "responses": {
                    "200": {
                        "description": "text exposition format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/wan": {
            "get": {
                "summary": "the WAN plan's functions: served here or not, version, large community "
                "(what the switch's announcer reads)",
                "responses": {"200": _json(schemas.WAN_STATE, "the WAN state")},
            }
        },
        "/system/info": {
            "get": _admin(
                "provider, version, architecture", {"200": _json(schemas.SYSTEM_INFO, "gateway info")}
            )
        },
        "/system/functions": {
            "get": _admin("list functions", {"200": function_list}),
            "post": _admin(
                "deploy from source (code) or an image; code that does not compile: 400 naming the line",
                {"202": _json(schemas.FUNCTION_STATUS, "deployed"), "409": _error("the name is taken")},
                requestBody=_body(schemas.FUNCTION_DEPLOYMENT),
            ),
            "put": _admin(
                "update a function: a rollout with no failed call; on failure the old version keeps serving",
                {"200": function_one, "404": _error("no such function")},
                requestBody=_body(schemas.FUNCTION_DEPLOYMENT),
            ),
            "delete": _admin(
                "delete a function",
                {
                    "200": _json(
                        {"type": "object", "properties": {"deleted": {"type": "string"}}}, "deleted"
                    ),
                    "404": _error("no such function"),
                },
                requestBody=_body(schemas.FUNCTION_DELETE),
            ),
        },
        "/system/function/{name}": {
            "get": _admin(
                "one function",
                {"200": function_one, "404": _error("no such function")},
                parameters=[_NAME_PARAM],
            ),
        },
        "/system/function/{name}/code": {
            "get": _admin(
                "a function's source, as deployed (the web console shows and edits it)",
                {
                    "200": {
                        "description": "the source",
                        "content": {"text/x-python": {"schema": {"type": "string"}}},
                    },
                    "404": _error("no such function, or one deployed from an image (no source)"),
                },
                parameters=[_NAME_PARAM],
            ),
        },
        "/system/scale-function/{name}": {
            "post": _admin(
                "set a function's replicas",
                {"202": function_one, "404": _error("no such function")},
                parameters=[_NAME_PARAM],
                requestBody=_body(schemas.SCALE_REQUEST),
            ),
        },
        "/system/namespaces": {
            "get": _admin("the namespace functions run in (one per gateway)", {"200": names}),
        },
        "/system/namespace/{name}": {
            "get": _admin(
                "one namespace (OpenFaaS's FunctionNamespace)",
                {"200": _json(schemas.FUNCTION_NAMESPACE, "the namespace"), "404": _error("not served here")},
                parameters=[namespace_param],
            ),
        },
        "/system/secrets": {
            "get": _admin(
                "the secrets' names (never their values)",
                {"200": _json({"type": "array", "items": schemas.SECRET_ENTRY}, "secrets")},
                parameters=[namespace_query],
            ),
            "post": _admin(
                "make a secret (a Kubernetes Secret, or a file on the local backend)",
                {"201": _json(schemas.SECRET_ENTRY, "made"), "409": _error("the name is taken")},
                requestBody=_body(schemas.SECRET),
            ),
            "put": _admin(
                "change a secret's value",
                {"200": _json(schemas.SECRET_ENTRY, "changed"), "404": _error("no such secret")},
                requestBody=_body(schemas.SECRET),
            ),
            "delete": _admin(
                "remove a secret",
                {
                    "200": _json(
                        {"type": "object", "properties": {"deleted": {"type": "string"}}}, "removed"
                    ),
                    "404": _error("no such secret"),
                },
                requestBody=_body(schemas.SECRET),
            ),
        },
        "/system/alert": {
            "post": _admin(
                "Alertmanager's webhook: a firing alert scales its function_name up a step, a resolved "
                "one back to its minimum (labels com.openfaas.scale.min/max/factor)",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "scaled": {"type": "array", "items": {"type": "object"}},
                                "skipped": {"type": "array", "items": {"type": "object"}},
                            },
                        },
                        "what was scaled, and alerts for functions that do not exist",
                    )
                },
                requestBody=_body(schemas.ALERT),
            ),
        },
        "/system/plots": {
            "get": _admin(
                "the console's live plots: each panel's name, title and unit, and whether this gateway "
                "has a Prometheus to read them from",
                {"200": _json({"type": "object", "properties": {"panels": {"type": "array"}}}, "the panels")},
            ),
        },
        "/system/plots/{panel}": {
            "get": _admin(
                "one panel's series from the site's Prometheus over the last minutes: a fixed PromQL "
                "range query per panel (calls, latency, latency_p95, triton_inferences, triton_queue, "
                "cpu, memory), never a query from the caller",
                {
                    "200": _json(
                        {"type": "object", "properties": {"series": {"type": "array"}}},
                        "the series, each {name, labels, points: [[unix seconds, value]]}",
                    ),
                    "400": _error("minutes or step out of range"),
                    "404": _error("no such panel"),
                    "502": _error("Prometheus refused the query"),
                    "503": _error("no Prometheus configured, or it cannot be reached"),
                },
                parameters=[
                    {"name": "panel", "in": "path", "required": True, "schema": {"type": "string"}},
                    {
                        "name": "minutes",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1440},
                    },
                    {
                        "name": "step",
                        "in": "query",
                        "required": False,
                        "description": "seconds between points (at least 5, and at most 240 points)",
                        "schema": {"type": "integer", "minimum": 5},
                    },
                ],
            ),
        },
        "/system/logs": {
            "get": _admin(
                "a function's log lines, oldest first; with follow, streamed as they are written",
                {
                    "200": {
                        "description": "one OpenFaaS log message per line: {name, namespace, instance, "
                        "timestamp, text}",
                        "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
                    },
                    "404": _error("no such function"),
                },
                parameters=[
                    {"name": "name", "in": "query", "required": True, "schema": schemas.FUNCTION_NAME},
                    namespace_query,
                    {"name": "instance", "in": "query", "required": False, "schema": {"type": "string"}},
                    {
                        "name": "since",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "format": "date-time"},
                    },
                    {
                        "name": "tail",
                        "in": "query",
                        "required": False,
                        "description": "the last lines only; absent or <= 0: every line",
                        "schema": {"type": "integer"},
                    },
                    {"name": "follow", "in": "query", "required": False, "schema": {"type": "boolean"}},
                ],
            ),
        },
        "/system/apis": {
            "get": _admin(
                "every callable function: route, description, input/output schema",
                {"200": _json({"type": "array", "items": schemas.API_ENTRY}, "APIs")},
            ),
        },
        "/system/nodes": {
            "get": _admin(
                "devices: profile, K3S role, certification, CPU, memory, GPU, functions placed on each",
                {"200": _json({"type": "array", "items": schemas.NODE}, "nodes")},
            ),
        },
        "/system/node-removals": {
            "get": _admin(
                "nodes the node authentication server removed from K3S, and why, newest first",
                {"200": _json({"type": "array", "items": schemas.NODE_REMOVAL}, "removals")},
            ),
        },
        "/system/plans": {
            "get": _admin("billing plans", {"200": _json({"type": "array", "items": schemas.PLAN}, "plans")}),
            "post": _admin(
                "add a plan (plans never change)",
                {"201": _json(schemas.PLAN, "created"), "409": _error("the name is taken")},
                requestBody=_body(schemas.PLAN_REQUEST),
            ),
        },
        "/system/licenses": {
            "get": _admin(
                "licenses (tokens are shown only when issued)",
                {"200": _json({"type": "array", "items": schemas.LICENSE}, "licenses")},
            ),
            "post": _admin(
                "issue a license and its token",
                {"201": _json(schemas.LICENSE_ISSUED, "issued"), "404": _error("no such plan")},
                requestBody=_body(schemas.LICENSE_REQUEST),
            ),
        },
        "/system/licenses/{license_id}": {
            "delete": _admin(
                "revoke a license: its token is refused from then on",
                {"200": _json(schemas.LICENSE, "revoked"), "404": _error("no such license")},
                parameters=[license_param],
            ),
        },
        "/system/billing": {
            "get": _admin(
                "a license's bill per function (detail=calls: per call); format=csv for CSV",
                {"200": bill, "404": _error("no such license")},
                parameters=[
                    {"name": "license", "in": "query", "required": True, "schema": schemas.LICENSE_ID},
                    {
                        "name": "format",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "enum": ["json", "csv"]},
                    },
                    {
                        "name": "detail",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "enum": ["summary", "calls"]},
                    },
                ],
            ),
        },
        "/system/perf-report": {
            "put": _admin(
                "store the latest `edgefaas perf` report.html for the console (replaces the previous one)",
                {
                    "201": _json(
                        {
                            "type": "object",
                            "required": ["bytes", "stored_at", "url"],
                            "properties": {
                                "bytes": {"type": "integer"},
                                "stored_at": {"type": "string", "format": "date-time"},
                                "url": {"type": "string"},
                            },
                        },
                        "stored",
                    ),
                    "400": _error("not UTF-8, or not an HTML document"),
                    "415": _error("the content type is not text/html"),
                },
                requestBody={
                    "required": True,
                    "content": {
                        "text/html": {"schema": {"type": "string", "maxLength": PERF_REPORT_MAX_BYTES}}
                    },
                },
            ),
        },
        "/": {
            "get": {
                "summary": "the web console (one page; it signs in as the admin itself)",
                "responses": {
                    "200": {
                        "description": "the page",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/console/static/{asset}": {
            "get": {
                "summary": "a file of the web console",
                "parameters": [
                    {
                        "name": "asset",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "pattern": "^[a-z][a-z0-9-]*[.](js|css|html)$"},
                    }
                ],
                "responses": {
                    "200": {
                        "description": "the file",
                        "content": {
                            t: {"schema": {"type": "string"}}
                            for t in ("text/javascript", "text/css", "text/html")
                        },
                    },
                    "404": _error("no such file"),
                },
            }
        },
        "/console/perf-report": {
            "get": _admin(
                "the latest perf report, sandboxed (no scripts, an opaque origin)",
                {
                    "200": {
                        "description": "report.html",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    },
                    "404": _error("no report stored yet"),
                },
            ),
        },
    }
    for prefix, is_async in (("/function", False), ("/async-function", True)):
        for path_param in (False, True):
            path = f"{prefix}/{{name}}" + ("/{path}" if path_param else "")
            methods = ("post",) if is_async else FUNCTION_METHODS
            paths[path] = {
                m: _function_operation(
                    f"{'queue' if is_async else 'call'} a function; X-Call-Id on every answer",
                    path_param,
                    m,
                    is_async,
                )
                for m in methods
            }
    paths.update(_site_paths())
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "EdgeFaaS gateway",
            "version": version,
            "description": "OpenFaaS's gateway API, plus deploying from source, licenses and billing.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "basicAuth": {"type": "http", "scheme": "basic", "description": "user admin"},
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "a license token: JWS compact, ES256 or HS256 as the gateway signs",
                },
                "siteAuth": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "an edge site's credential: EdgeFaaS-Site <site>:<credential>",
                },
            }
        },
    }


_NOT_CLOUD = _error("this gateway is not a cloud site")
_SITE_ERRORS = {
    "401": _error("no site credentials"),
    "403": _error("the site is unknown or its credential is wrong"),
    "404": _NOT_CLOUD,
}


def _site(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "summary": summary,
        "security": [{"siteAuth": []}],
        "responses": {**responses, **_SITE_ERRORS},
        **extra,
    }


def _site_call(method: str) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": "a call an edge site forwards to its cloud: run once per X-Call-Id, billed at the edge",
        "security": [{"siteAuth": []}],
        "parameters": [
            _NAME_PARAM,
            {"name": "path", "in": "path", "required": True, "schema": {"type": "string"}},
            {
                "name": "X-Call-Id",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "pattern": "^[!-~]{1,128}$"},
            },
        ],
        "responses": {
            **_SITE_ERRORS,
            "400": _error("no X-Call-Id, or not a plain one"),
            "404": _error("this gateway is not a cloud site, or no such function"),
            "409": _error("the call id's call is still running, or its answer was too large to keep"),
            "413": _error("body over the size limit"),
            "502": _error("the function could not be reached"),
            "503": _error("the function has no ready replica, or the call cannot be recorded now"),
            "504": _error("the function did not answer in time"),
            "default": {
                "description": "the function's own answer; X-EdgeFaaS-Site, X-EdgeFaaS-Function and "
                "X-EdgeFaaS-Reached say whose answer it is",
                "content": {"*/*": {"schema": {}}},
            },
        },
    }
    if method not in ("get", "head", "options"):
        operation["requestBody"] = {"required": False, "content": {JSON: {"schema": {}}}}
    return operation


def _site_paths() -> dict[str, Any]:
    """Routes between cloud and edge sites (sites.py, routes/sites.py)."""
    anything = {"type": "object"}
    return {
        "/system/sites": {
            "get": _admin(
                "this gateway's site: its role, catalogue (version, refusals), usage pushed or rolled up",
                {"200": _json(anything, "the status")},
            )
        },
        "/system/catalogue-key": {
            "get": _admin(
                "the cloud's catalogue public key (PEM), which edges verify entries with",
                {
                    "200": {
                        "description": "PEM",
                        "content": {"application/x-pem-file": {"schema": {"type": "string"}}},
                    },
                    "404": _NOT_CLOUD,
                },
            )
        },
        "/system/site-usage": {
            "get": _admin(
                "usage per license at every site (the edges' pushed records and the cloud's own ledger)",
                {"200": _json(anything, "the roll-up"), "404": _NOT_CLOUD},
                parameters=[
                    {"name": "license", "in": "query", "required": False, "schema": schemas.LICENSE_ID}
                ],
            ),
        },
        "/sites/catalogue": {
            "get": _site(
                "the catalogue entries for the calling site newer than since, signed by the cloud",
                {"200": _json(anything, "the entries"), "400": _error("since is not an integer >= 0")},
                parameters=[
                    {
                        "name": "since",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 0},
                    }
                ],
            )
        },
        "/sites/usage": {
            "post": _site(
                "an edge's usage records, numbered; held ones change nothing",
                {
                    "200": _json(anything, "the number up to which every record of the site is held"),
                    "400": _error("malformed records"),
                    "409": _error(
                        "a number the cloud holds for another call (the site's numbering restarted)"
                    ),
                    "413": _error("body over the size limit"),
                },
                requestBody=_body(USAGE_PUSH),
            ),
        },
        "/site-function/{name}/{path}": {m: _site_call(m) for m in FUNCTION_METHODS},
    }
