"""What probes and Prometheus read: /healthz and /metrics (no credentials, unless metrics_auth)."""

from __future__ import annotations

import logging

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from ..errors import ApiError
from ..metrics import CONTENT_TYPE
from ..state import gateway_of

log = logging.getLogger("edgefaas.gateway")


async def healthz(request: Request) -> Response:
    return PlainTextResponse("OK")


async def metrics(request: Request) -> Response:
    gateway = gateway_of(request)
    if gateway.settings.metrics_auth:
        try:
            gateway.admin_auth.check(request)
        except ApiError as exc:
            return exc.response()
    try:
        statuses = await run_in_threadpool(gateway.backend.list)
        replicas = {s.name: s.available_replicas for s in statuses}
    except Exception:  # metrics must answer even when the backend does not
        log.exception("listing functions for /metrics")
        replicas = {}
    depth = await gateway.invoker.queue_depth()
    async_depth = (depth.waiting, depth.running) if depth is not None else None
    try:
        held = await run_in_threadpool(gateway.license_store.licenses)
        licenses = {"active": sum(not x.revoked for x in held), "revoked": sum(x.revoked for x in held)}
    except Exception:  # the database away: the gauge is left out, not shown as zero
        licenses = None
    text = gateway.metrics.render(replicas, async_depth, gateway.ledger.storage_errors, licenses)
    return Response(text + gateway.sites.metrics_text(), media_type=CONTENT_TYPE)
