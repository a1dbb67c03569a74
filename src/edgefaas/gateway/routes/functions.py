"""OpenFaaS's /system API: the provider's info, and functions deployed, updated, scaled, read, logged.

Same paths, bodies and answers as OpenFaaS's gateway, plus EdgeFaaS's fields (source code,
public, version, nodes, description) and /system/apis (each callable function's schemas).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from edgefaas.backends import image_reference
from edgefaas.backends.base import FunctionSpec, FunctionStatus, valid_function_name
from edgefaas.runtime.source import SourceError, inspect_source

from .. import schemas
from ..errors import ApiError, not_found
from ..naming import check_namespace
from ..state import Gateway
from ..timestamps import iso_time
from .admin import admin, backend_call, json_body

_KUBE_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}
# Where an OpenFaaS client's deployment (a faas-cli stack file's annotations) carries the source.
CODE_ANNOTATION = "edgefaas.io/code"


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


def _from_openfaas_client(data: dict[str, Any]) -> dict[str, Any]:
    """The body with its source taken from the CODE_ANNOTATION, where an OpenFaaS client put it.

    faas-cli sends OpenFaaS's FunctionDeployment, which has no field for source, and always
    an image: a stack file's ``annotations`` carry the source instead, and the image (which
    faas-cli requires) then only names the runtime the source runs in.
    """
    annotations = dict(data.get("annotations") or {})
    code = annotations.pop(CODE_ANNOTATION, None)
    if code is None or data.get("code") is not None:
        return data
    return {**data, "code": code, "image": None, "annotations": annotations}


def _spec(data: dict[str, Any], default_replicas: int = 1) -> FunctionSpec:
    """A FunctionSpec from a validated deployment body; code that does not compile -> 400 with its line."""
    data = _from_openfaas_client(data)
    if data.get("code") is not None:
        try:
            inspect_source(data["code"], f"{data['service']}.py")
        except SourceError as exc:
            extra = {"line": exc.line} if exc.line else {}
            raise ApiError(400, f"the code was refused: {exc}", **extra) from None
    elif data.get("image") is not None:
        try:
            image_reference.parse(data["image"])
        except image_reference.InvalidReference as exc:
            raise ApiError(400, f"body.image: {exc}") from None
    try:
        return FunctionSpec.from_json({"replicas": default_replicas, **data})
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None


# -- OpenFaaS: system ------------------------------------------------------------------------------


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
    depth = await gateway.invoker.queue_depth()
    return JSONResponse(
        {
            "async_queue": {
                "kind": gateway.invoker.queue_kind,
                "waiting": depth.waiting if depth else None,
                "running": depth.running if depth else None,
            },
            "provider": {
                "provider": "edgefaas",
                "orchestration": gateway.backend.orchestration,
                "version": version,
            },
            "version": version,
            "arch": _KUBE_ARCH.get(machine, machine),
        }
    )


def _namespace_in_query(request: Request, gateway: Gateway) -> None:
    check_namespace(
        request.query_params.get("namespace"), gateway.backend.namespaces(), "query parameter namespace"
    )


def _namespace_in_body(data: dict[str, Any], gateway: Gateway) -> None:
    check_namespace(data.get("namespace"), gateway.backend.namespaces(), "body.namespace")


async def _check_secrets(spec: FunctionSpec, gateway: Gateway) -> None:
    """Every secret the function names exists: else 400 now, not a pod that never starts."""
    if not spec.secrets:
        return
    known = set(await backend_call(gateway.backend.list_secrets))
    for index, name in enumerate(spec.secrets):
        if name not in known:
            raise ApiError(
                400,
                f"body.secrets[{index}]: no secret named {name!r} in namespace "
                f"{gateway.backend.namespaces()[0]} (POST /system/secrets makes one)",
            )


@admin
async def list_functions(request: Request, gateway: Gateway) -> Response:
    _namespace_in_query(request, gateway)
    statuses = await backend_call(gateway.backend.list)
    gateway.registry.sync(statuses)
    return JSONResponse([function_json(s, gateway) for s in statuses])


@admin
async def deploy_function(request: Request, gateway: Gateway) -> Response:
    data = await json_body(request, gateway, schemas.FUNCTION_DEPLOYMENT)
    _namespace_in_body(data, gateway)
    spec = _spec(data)
    await _check_secrets(spec, gateway)
    sites = gateway.sites.placement_of(dict(spec.annotations))  # an unknown site: 400, nothing deployed
    status = await backend_call(gateway.backend.deploy, spec)
    gateway.registry.remember(status)
    await gateway.sites.publish(spec.name, sites, spec.to_json())
    return JSONResponse(function_json(status, gateway), status_code=202)


@admin
async def update_function(request: Request, gateway: Gateway) -> Response:
    data = await json_body(request, gateway, schemas.FUNCTION_DEPLOYMENT)
    _namespace_in_body(data, gateway)
    current = await backend_call(gateway.backend.get, data["service"])
    # An update without "replicas" keeps the current scale, as OpenFaaS does.
    spec = _spec(data, default_replicas=current.replicas)
    await _check_secrets(spec, gateway)
    sites = gateway.sites.placement_of(dict(spec.annotations))
    status = await backend_call(gateway.backend.update, spec)
    gateway.registry.remember(status)
    gateway.invoker.forget_connections(spec.name)
    await gateway.sites.publish(spec.name, sites, spec.to_json())
    return JSONResponse(function_json(status, gateway), status_code=200)


@admin
async def delete_function(request: Request, gateway: Gateway) -> Response:
    data = await json_body(request, gateway, schemas.FUNCTION_DELETE)
    _namespace_in_body(data, gateway)
    await backend_call(gateway.backend.delete, data["functionName"])
    gateway.registry.forget(data["functionName"])
    await gateway.sites.publish(data["functionName"], [], None)
    return JSONResponse({"deleted": data["functionName"]})


def _named_function(request: Request) -> str:
    """The {name} of the path, 404 if no function could have it."""
    name = request.path_params["name"]
    if not valid_function_name(name):
        raise not_found(f"function {name!r}")
    return name


@admin
async def get_function(request: Request, gateway: Gateway) -> Response:
    _namespace_in_query(request, gateway)
    status = await backend_call(gateway.backend.get, _named_function(request))
    return JSONResponse(function_json(status, gateway))


@admin
async def function_code(request: Request, gateway: Gateway) -> Response:
    name = _named_function(request)
    status = await backend_call(gateway.backend.get, name)
    if status.spec.code is None:
        raise ApiError(
            404, f"function {name!r} was deployed from an image: the gateway holds no source for it"
        )
    return PlainTextResponse(status.spec.code, media_type="text/x-python")


@admin
async def scale_function(request: Request, gateway: Gateway) -> Response:
    name = _named_function(request)
    data = await json_body(request, gateway, schemas.SCALE_REQUEST)
    _namespace_in_body(data, gateway)
    await backend_call(gateway.backend.get, name)  # an unknown function is a 404 before anything else
    if data.get("serviceName", name) != name:
        raise ApiError(400, f"serviceName {data['serviceName']!r} does not match the path's {name!r}")
    status = await backend_call(gateway.backend.scale, name, int(data["replicas"]))
    gateway.registry.remember(status)
    return JSONResponse(function_json(status, gateway), status_code=202)


# -- EdgeFaaS: the API list ------------------------------------------------------------------------


@admin
async def list_apis(request: Request, gateway: Gateway) -> Response:
    statuses = await backend_call(gateway.backend.list)
    gateway.registry.sync(statuses)
    versions = {s.name: s.version for s in statuses}
    wan = request.app.state.service_addresses
    entries = []
    for info in gateway.registry.all():
        entry = info.api_entry()
        # Where a WAN client reaches it (address, URL, large community): only with a WAN plan.
        found = wan.entry(info.name, versions.get(info.name))
        entries.append({**entry, "wan": found} if found else entry)
    return JSONResponse(entries)
