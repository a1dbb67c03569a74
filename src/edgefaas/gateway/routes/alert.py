"""/system/alert: Alertmanager's webhook scales functions, as OpenFaaS's gateway does.

Each alert names a function in its ``function_name`` label (``name`` or ``name.namespace``). A
firing alert adds a step of replicas, ``ceil(max / 100 * factor)``, up to the function's max;
a resolved one sets it back to its min. min, max and factor are the function's labels
``com.openfaas.scale.min`` / ``.max`` / ``.factor``, defaulting as OpenFaaS's gateway does (1,
5, 10 %); a factor of 0 turns alert scaling off for the function (a firing alert then sets it
to its min, OpenFaaS's rule). OpenFaaS Community Edition caps max at 5: here the cap is the
gateway's own replica limit. An alert for a function that does not exist is skipped, as OpenFaaS
skips it; a body that is not Alertmanager's is 400.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .. import schemas
from ..errors import ApiError
from ..naming import function_name
from ..state import Gateway
from .admin import admin, backend_call, json_body

log = logging.getLogger("edgefaas.gateway.alert")

MIN_LABEL = "com.openfaas.scale.min"
MAX_LABEL = "com.openfaas.scale.max"
FACTOR_LABEL = "com.openfaas.scale.factor"
DEFAULT_MIN = 1
DEFAULT_MAX = 5
DEFAULT_FACTOR = 10


def _label(labels: Mapping[str, str], key: str, default: int, low: int, high: int) -> int:
    try:
        return min(max(int(labels[key]), low), high)
    except (KeyError, ValueError):
        return default


def scaling_range(labels: Mapping[str, str]) -> tuple[int, int, int]:
    """(min, max, factor) from a function's labels."""
    maximum = _label(labels, MAX_LABEL, DEFAULT_MAX, 1, schemas.MAX_REPLICAS)
    minimum = _label(labels, MIN_LABEL, DEFAULT_MIN, 0, maximum)
    factor = _label(labels, FACTOR_LABEL, DEFAULT_FACTOR, 0, 100)
    return minimum, maximum, factor


def replicas_after(status: str, current: int, minimum: int, maximum: int, factor: int) -> int:
    """OpenFaaS's CalculateReplicas: a step up while firing, back to the minimum when resolved."""
    step = math.ceil(maximum / 100 * factor)
    if status == "firing" and step > 0:
        return min(current + step, maximum)
    return minimum


@admin
async def alert(request: Request, gateway: Gateway) -> Response:
    body = await json_body(request, gateway, schemas.ALERT)
    served = gateway.backend.namespaces()
    scaled: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    for item in body["alerts"]:
        given = item["labels"]["function_name"]
        try:
            name = function_name(given, served)
            current = await backend_call(gateway.backend.get, name)
        except ApiError as exc:
            if exc.status != 404:
                raise
            skipped.append({"function_name": given, "reason": exc.message})
            continue
        minimum, maximum, factor = scaling_range(current.spec.labels)
        target = replicas_after(item["status"], current.replicas, minimum, maximum, factor)
        log.info("alert %s for %s: %d => %d replicas", item["status"], name, current.replicas, target)
        if target != current.replicas:
            status = await backend_call(gateway.backend.scale, name, target)
            gateway.registry.remember(status)
        scaled.append(
            {"function_name": given, "status": item["status"], "from": current.replicas, "to": target}
        )
    return JSONResponse({"scaled": scaled, "skipped": skipped})
