"""/system/namespaces and /system/namespace/{name}: the namespace a gateway serves.

A gateway serves the one namespace its backend runs functions in (Kubernetes: the deploy's
functions namespace; local: ``local``), fixed by the deploy. So, as OpenFaaS Community
Edition's providers (which have no namespace mutator) route only GET there, creating,
changing or deleting one is 405; reading one answers OpenFaaS's FunctionNamespace.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..errors import ApiError
from ..state import Gateway
from .admin import admin


@admin
async def list_namespaces(request: Request, gateway: Gateway) -> Response:
    return JSONResponse(gateway.backend.namespaces())


@admin
async def get_namespace(request: Request, gateway: Gateway) -> Response:
    name = request.path_params["name"]
    served = gateway.backend.namespaces()
    if name not in served:
        raise ApiError(404, f"namespace {name!r} not found (this gateway serves {', '.join(served)})")
    return JSONResponse({"name": name, "labels": {"openfaas": "1"}, "annotations": {}})
