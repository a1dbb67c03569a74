"""The /system routes: OpenFaaS's function management, plus nodes, APIs, plans, licenses, billing.

Every route here needs the admin's basic credentials. Backend calls block (they may start
processes or talk to an API server), so they run on a worker thread.
"""

from __future__ import annotations

import csv
import functools
import importlib.metadata
import io
import json
import os
import platform
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from edgefaas.backends.base import (
    BackendError,
    DeployError,
    FunctionExists,
    FunctionNotFound,
    FunctionSpec,
    FunctionStatus,
    FunctionUnavailable,
    Unsupported,
    valid_function_name,
)
from edgefaas.runtime.source import SourceError, inspect_source

from . import schemas
from .errors import ApiError, not_found
from .invoke import read_body
from .ledger import PUBLIC_LICENSE
from .licenses import Plan, iso_time, money
from .validation import check, parse_json

if TYPE_CHECKING:
    from .app import Gateway

T = TypeVar("T")
Route = Callable[[Request], Awaitable[Response]]

_KUBE_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}

PERF_REPORT_FILE = "perf-report.html"
# `edgefaas perf` reports embed their plots as base64 PNGs: ~200 KB today, so 4 MiB leaves room
# for longer runs while keeping a stray upload from filling the gateway's data dir.
PERF_REPORT_MAX_BYTES = 4 * 1024 * 1024


def admin(route: Callable[[Request, Gateway], Awaitable[Response]]) -> Route:
    """Require the admin's credentials, hand the route its Gateway, and answer ApiErrors."""

    @functools.wraps(route)
    async def wrapped(request: Request) -> Response:
        gateway: Gateway = request.app.state.gateway
        try:
            gateway.admin_auth.check(request)
            return await route(request, gateway)
        except ApiError as exc:
            return exc.response()

    return wrapped


async def _backend(call: Callable[..., T], *args: Any) -> T:
    """Run a backend method off the event loop, its errors turned into answers."""
    try:
        return await run_in_threadpool(call, *args)
    except FunctionNotFound as exc:
        raise ApiError(404, str(exc)) from None
    except FunctionExists as exc:
        raise ApiError(409, str(exc)) from None
    except (Unsupported, DeployError, ValueError) as exc:
        raise ApiError(400, str(exc)) from None
    except FunctionUnavailable as exc:
        raise ApiError(503, str(exc)) from None
    except BackendError as exc:
        raise ApiError(502, f"the backend failed: {exc}") from None


async def _json_body(request: Request, gateway: Gateway, schema: schemas.Schema) -> Any:
    return parse_json(await read_body(request, gateway.settings.max_body_bytes), schema)


def _query(request: Request, name: str, schema: schemas.Schema, default: Any = None) -> Any:
    if name not in request.query_params:
        if default is None:
            raise ApiError(400, f"query parameter {name} is required")
        return default
    value: Any = request.query_params[name]
    if schema.get("type") == "integer":
        try:
            value = int(value)
        except ValueError:
            raise ApiError(400, f"query parameter {name} must be an integer") from None
    check(value, schema, f"query parameter {name}")
    return value


def function_json(status: FunctionStatus, gateway: Gateway) -> dict[str, Any]:
    """OpenFaaS's FunctionStatus, plus EdgeFaaS's fields (public, version, nodes, description)."""
    spec = status.spec.to_json(include_code=False)
    info = gateway.registry.lookup(status.name)
    return {
        "name": status.name,
        "image": spec["image"],
        "namespace": gateway.backend.namespaces()[0],
        "envProcess": spec["envProcess"],
        "envVars": spec["envVars"],
        "labels": spec["labels"],
        "annotations": spec["annotations"],
        "constraints": spec["constraints"],
        "limits": spec["limits"],
        "requests": spec["requests"],
        "secrets": spec["secrets"],
        "readOnlyRootFilesystem": spec["readOnlyRootFilesystem"],
        "public": spec["public"],
        "codeSha256": spec["codeSha256"],
        "invocationCount": gateway.metrics.invocation_count(status.name),
        "replicas": status.replicas,
        "availableReplicas": status.available_replicas,
        "createdAt": iso_time(status.created_at),
        "updatedAt": iso_time(status.updated_at),
        "version": status.version,
        "nodes": list(status.nodes),
        "restarts": status.restarts,
        "description": info.description if info else "",
    }


def _spec(data: dict[str, Any], default_replicas: int = 1) -> FunctionSpec:
    """A FunctionSpec from a validated deployment body; code that does not compile -> 400 with its line."""
    if data.get("code") is not None:
        try:
            inspect_source(data["code"], f"{data['service']}.py")
        except SourceError as exc:
            extra = {"line": exc.line} if exc.line else {}
            raise ApiError(400, f"the code was refused: {exc}", **extra) from None
    try:
        return FunctionSpec.from_json({"replicas": default_replicas, **data})
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None


# -- OpenFaaS: system ----------------------------------------------------------------------------


def gateway_version() -> dict[str, str]:
    try:
        release = importlib.metadata.version("edgefaas")
    except importlib.metadata.PackageNotFoundError:
        release = "0.0.0"
    return {"sha": os.environ.get("EDGEFAAS_GIT_SHA", "unknown"), "release": release}


@admin
async def system_info(request: Request, gateway: Gateway) -> Response:
    version = gateway_version()
    machine = platform.machine()
    return JSONResponse(
        {
            "provider": {
                "provider": "edgefaas",
                "orchestration": gateway.backend.orchestration,
                "version": version,
            },
            "version": version,
            "arch": _KUBE_ARCH.get(machine, machine),
        }
    )


@admin
async def list_functions(request: Request, gateway: Gateway) -> Response:
    statuses = await _backend(gateway.backend.list)
    gateway.registry.sync(statuses)
    return JSONResponse([function_json(s, gateway) for s in statuses])


@admin
async def deploy_function(request: Request, gateway: Gateway) -> Response:
    spec = _spec(await _json_body(request, gateway, schemas.FUNCTION_DEPLOYMENT))
    status = await _backend(gateway.backend.deploy, spec)
    gateway.registry.remember(status)
    return JSONResponse(function_json(status, gateway), status_code=202)


@admin
async def update_function(request: Request, gateway: Gateway) -> Response:
    data = await _json_body(request, gateway, schemas.FUNCTION_DEPLOYMENT)
    current = await _backend(gateway.backend.get, data["service"])
    # An update without "replicas" keeps the current scale, as OpenFaaS does.
    spec = _spec(data, default_replicas=current.replicas)
    status = await _backend(gateway.backend.update, spec)
    gateway.registry.remember(status)
    gateway.invoker.forget_connections(spec.name)
    return JSONResponse(function_json(status, gateway), status_code=200)


@admin
async def delete_function(request: Request, gateway: Gateway) -> Response:
    data = await _json_body(request, gateway, schemas.FUNCTION_DELETE)
    await _backend(gateway.backend.delete, data["functionName"])
    gateway.registry.forget(data["functionName"])
    return JSONResponse({"deleted": data["functionName"]})


def _named_function(request: Request) -> str:
    """The {name} of the path, 404 if no function could have it."""
    name = request.path_params["name"]
    if not valid_function_name(name):
        raise not_found(f"function {name!r}")
    return name


@admin
async def get_function(request: Request, gateway: Gateway) -> Response:
    status = await _backend(gateway.backend.get, _named_function(request))
    return JSONResponse(function_json(status, gateway))


@admin
async def function_code(request: Request, gateway: Gateway) -> Response:
    name = _named_function(request)
    status = await _backend(gateway.backend.get, name)
    if status.spec.code is None:
        raise ApiError(
            404, f"function {name!r} was deployed from an image: the gateway holds no source for it"
        )
    return PlainTextResponse(status.spec.code, media_type="text/x-python")


@admin
async def scale_function(request: Request, gateway: Gateway) -> Response:
    name = _named_function(request)
    data = await _json_body(request, gateway, schemas.SCALE_REQUEST)
    await _backend(gateway.backend.get, name)  # an unknown function is a 404 before anything else
    if data.get("serviceName", name) != name:
        raise ApiError(400, f"serviceName {data['serviceName']!r} does not match the path's {name!r}")
    status = await _backend(gateway.backend.scale, name, int(data["replicas"]))
    gateway.registry.remember(status)
    return JSONResponse(function_json(status, gateway), status_code=202)


@admin
async def namespaces(request: Request, gateway: Gateway) -> Response:
    return JSONResponse(gateway.backend.namespaces())


@admin
async def function_logs(request: Request, gateway: Gateway) -> Response:
    name = _query(request, "name", schemas.FUNCTION_NAME)
    tail = _query(request, "tail", {"type": "integer", "minimum": 1, "maximum": 10_000}, default=100)
    lines = await _backend(gateway.backend.logs, name, tail)
    body = "".join(json.dumps({"name": name, "text": line}) + "\n" for line in lines)
    return Response(body, media_type="application/x-ndjson")


# -- EdgeFaaS: APIs and nodes --------------------------------------------------------------------


@admin
async def list_apis(request: Request, gateway: Gateway) -> Response:
    gateway.registry.sync(await _backend(gateway.backend.list))
    return JSONResponse([info.api_entry() for info in gateway.registry.all()])


@admin
async def list_nodes(request: Request, gateway: Gateway) -> Response:
    nodes = await _backend(gateway.backend.nodes)
    return JSONResponse([node.to_json() for node in nodes])


@admin
async def node_removals(request: Request, gateway: Gateway) -> Response:
    """Nodes the node authentication server removed, and why (they are gone from /system/nodes)."""
    return JSONResponse(await _backend(gateway.backend.node_removals))


# -- EdgeFaaS: the perf report the console shows -------------------------------------------------


def perf_report_path(gateway: Gateway) -> Path:
    return gateway.settings.data_dir / PERF_REPORT_FILE


def _looks_like_html(text: str) -> bool:
    head = text.lstrip("\ufeff \t\r\n")[:64].lower()
    return head.startswith("<!doctype html") or head.startswith("<html")


def _replace_file(path: Path, data: bytes) -> None:
    # Write-then-rename: a reader never sees half a report, even while a new one arrives.
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as handle:
        handle.write(data)
    Path(handle.name).replace(path)


@admin
async def put_perf_report(request: Request, gateway: Gateway) -> Response:
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media != "text/html":
        raise ApiError(415, "send the report as Content-Type: text/html")
    body = await read_body(request, min(PERF_REPORT_MAX_BYTES, gateway.settings.max_body_bytes))
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "the report is not UTF-8 text") from None
    if not _looks_like_html(text):
        raise ApiError(400, "not an HTML document: it must start with <!DOCTYPE html> or <html>")
    await run_in_threadpool(_replace_file, perf_report_path(gateway), body)
    return JSONResponse(
        {"bytes": len(body), "stored_at": iso_time(time.time()), "url": "/console/perf-report"},
        status_code=201,
    )


# -- EdgeFaaS: plans, licenses, billing ----------------------------------------------------------


@admin
async def list_plans(request: Request, gateway: Gateway) -> Response:
    plans = await run_in_threadpool(gateway.license_store.plans)
    return JSONResponse([plan.to_json() for plan in plans])


@admin
async def create_plan(request: Request, gateway: Gateway) -> Response:
    plan = Plan.from_json(await _json_body(request, gateway, schemas.PLAN_REQUEST))
    if not await run_in_threadpool(gateway.license_store.add_plan, plan):
        raise ApiError(409, f"plan {plan.name!r} exists; plans never change, create another")
    return JSONResponse(plan.to_json(), status_code=201)


@admin
async def list_licenses(request: Request, gateway: Gateway) -> Response:
    licenses = await run_in_threadpool(gateway.license_store.licenses)
    return JSONResponse([license.to_json() for license in licenses])


@admin
async def create_license(request: Request, gateway: Gateway) -> Response:
    data = await _json_body(request, gateway, schemas.LICENSE_REQUEST)
    license, token = await run_in_threadpool(gateway.licenses.issue, data["name"], data["plan"])
    return JSONResponse({**license.to_json(), "token": token}, status_code=201)


@admin
async def revoke_license(request: Request, gateway: Gateway) -> Response:
    license_id = request.path_params["license_id"]
    found = await run_in_threadpool(gateway.license_store.license, license_id)
    if found is None:
        raise not_found(f"license {license_id!r}")
    await run_in_threadpool(gateway.licenses.revoke, license_id)
    revoked = await run_in_threadpool(gateway.license_store.license, license_id)
    assert revoked is not None
    return JSONResponse(revoked.to_json())


@admin
async def billing(request: Request, gateway: Gateway) -> Response:
    license_id = _query(request, "license", schemas.LICENSE_ID)
    fmt = _query(request, "format", {"type": "string", "enum": ["json", "csv"]}, default="json")
    detail = _query(request, "detail", {"type": "string", "enum": ["summary", "calls"]}, default="summary")
    plan_name = "none"
    if license_id != PUBLIC_LICENSE:
        found = await run_in_threadpool(gateway.license_store.license, license_id)
        if found is None:
            raise not_found(f"license {license_id!r}")
        plan_name = found.plan
    if detail == "calls":
        entries = await run_in_threadpool(lambda: list(gateway.ledger.entries(license_id)))
        if fmt == "csv":
            return _csv_response(
                license_id,
                ["call_id", "function", "started_at", "duration_ms", "status", "amount", "parent_call_id"],
                [
                    [e.call_id, e.function, iso_time(e.started_at), e.duration_us / 1000, e.status,
                     f"{money(e.amount_micros):.6f}", e.parent_call_id]
                    for e in entries
                ],
            )  # fmt: skip
        return JSONResponse(
            {
                "license": license_id,
                "plan": plan_name,
                "calls": [
                    {
                        "call_id": e.call_id,
                        "function": e.function,
                        "started_at": iso_time(e.started_at),
                        "duration_ms": e.duration_us / 1000,
                        "status": e.status,
                        "amount": money(e.amount_micros),
                        "parent_call_id": e.parent_call_id,
                    }
                    for e in entries
                ],
                "total": money(sum(e.amount_micros for e in entries)),
            }
        )
    usage = await run_in_threadpool(gateway.ledger.usage, license_id)
    total = sum(u.amount_micros for u in usage)
    if fmt == "csv":
        rows: list[list[Any]] = [
            [u.function, u.invocations, u.duration_us / 1000, f"{money(u.amount_micros):.6f}"] for u in usage
        ]
        rows.append(["TOTAL", sum(u.invocations for u in usage), sum(u.duration_us for u in usage) / 1000,
                     f"{money(total):.6f}"])  # fmt: skip
        return _csv_response(license_id, ["function", "invocations", "duration_ms", "amount"], rows)
    return JSONResponse(
        {
            "license": license_id,
            "plan": plan_name,
            "functions": [
                {
                    "function": u.function,
                    "invocations": u.invocations,
                    "duration_ms": u.duration_us / 1000,
                    "amount": money(u.amount_micros),
                }
                for u in usage
            ],
            "total": money(total),
        }
    )


def _csv_response(license_id: str, header: list[str], rows: list[list[Any]]) -> Response:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="billing-{license_id}.csv"'},
    )
