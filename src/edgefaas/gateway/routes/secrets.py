"""/system/secrets as OpenFaaS serves it: list (names only), create, update, remove.

Bodies are OpenFaaS's Secret ({name, namespace, value | rawValue}); a value is never answered,
logged or put in an error. Where secrets live is the backend's: Kubernetes Secrets in the
functions' namespace, files kept by the gateway on the local backend (as faasd keeps them).
A name or value Kubernetes would refuse is answered 400 naming the field, on either backend.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from edgefaas.backends.base import SECRET_VALUE_MAX

from .. import schemas
from ..errors import ApiError
from ..naming import check_namespace
from ..state import Gateway
from .admin import admin, backend_call, json_body


def _value(data: dict[str, Any]) -> bytes:
    """The secret's value from ``value`` (text) or ``rawValue`` (base64), checked, never quoted."""
    if "value" in data and "rawValue" in data:
        raise ApiError(400, "body: give one of value or rawValue, not both")
    if "rawValue" in data:
        try:
            value = base64.b64decode(data["rawValue"], validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(400, "body.rawValue must be base64") from None
    elif "value" in data:
        value = data["value"].encode("utf-8")
    else:
        raise ApiError(400, "body.value (or body.rawValue) is required")
    if len(value) > SECRET_VALUE_MAX:
        raise ApiError(400, f"body.value must be at most {SECRET_VALUE_MAX} bytes (Kubernetes' limit)")
    return value


async def _secret_body(request: Request, gateway: Gateway) -> dict[str, Any]:
    data: dict[str, Any] = await json_body(request, gateway, schemas.SECRET)
    served = gateway.backend.namespaces()
    check_namespace(data.get("namespace") or request.query_params.get("namespace"), served, "namespace")
    return data


@admin
async def list_secrets(request: Request, gateway: Gateway) -> Response:
    served = gateway.backend.namespaces()
    check_namespace(request.query_params.get("namespace"), served, "query parameter namespace")
    names = await backend_call(gateway.backend.list_secrets)
    return JSONResponse([{"name": name, "namespace": served[0]} for name in names])


@admin
async def create_secret(request: Request, gateway: Gateway) -> Response:
    data = await _secret_body(request, gateway)
    await backend_call(gateway.backend.create_secret, data["name"], _value(data))
    return JSONResponse({"name": data["name"], "namespace": gateway.backend.namespaces()[0]}, status_code=201)


@admin
async def update_secret(request: Request, gateway: Gateway) -> Response:
    data = await _secret_body(request, gateway)
    await backend_call(gateway.backend.update_secret, data["name"], _value(data))
    return JSONResponse({"name": data["name"], "namespace": gateway.backend.namespaces()[0]})


@admin
async def delete_secret(request: Request, gateway: Gateway) -> Response:
    data = await _secret_body(request, gateway)
    await backend_call(gateway.backend.delete_secret, data["name"])
    return JSONResponse({"deleted": data["name"]})
