"""/system/logs as OpenFaaS serves it: faas-provider's log request in, its log messages out.

The query is OpenFaaS's logs.Request: ``name``, ``namespace``, ``instance``, ``since``
(RFC 3339), ``tail`` (absent or <= 0: every line) and ``follow``. The answer streams one
JSON logs.Message per line ({name, namespace, instance, timestamp, text}, application/x-ndjson),
oldest first. With ``follow`` it stays open and sends lines as the function writes them (the
backend is asked again every LOG_POLL seconds for lines since the last one sent) until the
caller hangs up, the function is removed, or the gateway's upstream timeout has passed (as
OpenFaaS's providers end a followed log request after their timeout: faas-cli then stops).
"""

from __future__ import annotations

import asyncio
import datetime
import json
from collections.abc import AsyncIterator

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from edgefaas.backends.base import BackendError, FunctionNotFound, LogLine

from .. import schemas
from ..errors import ApiError
from ..naming import check_namespace
from ..state import Gateway
from .admin import admin, backend_call, query_param

LOG_POLL = 0.5
NDJSON = "application/x-ndjson"
# Go's strconv.ParseBool, which OpenFaaS's log handler reads ``follow`` with.
_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


def _since(request: Request) -> float | None:
    given = request.query_params.get("since")
    if not given:
        return None
    try:
        moment = datetime.datetime.fromisoformat(given.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ApiError(
            400, "query parameter since must be an RFC 3339 time, e.g. 2024-05-01T12:00:00Z"
        ) from None
    if moment.tzinfo is None:
        raise ApiError(400, "query parameter since must name its offset (Z or +hh:mm), as RFC 3339 does")
    return moment.timestamp()


def _follow(request: Request) -> bool:
    given = request.query_params.get("follow", "false")
    if given not in _TRUE | _FALSE:
        raise ApiError(400, "query parameter follow must be true or false")
    return given in _TRUE


def rfc3339(epoch: float) -> str:
    """Go's time.Time in JSON (RFC 3339, fraction of a second kept), which OpenFaaS clients parse."""
    moment = datetime.datetime.fromtimestamp(epoch, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@admin
async def function_logs(request: Request, gateway: Gateway) -> Response:
    served = gateway.backend.namespaces()
    name = query_param(request, "name", schemas.FUNCTION_NAME)
    check_namespace(request.query_params.get("namespace"), served, "query parameter namespace")
    tail = query_param(request, "tail", {"type": "integer"}, default=0)
    instance = request.query_params.get("instance") or None
    since = _since(request)
    follow = _follow(request)
    first = await backend_call(gateway.backend.logs, name, tail, since, instance)

    def message(line: LogLine) -> str:
        return (
            json.dumps(
                {
                    "name": name,
                    "namespace": served[0],
                    "instance": line.instance,
                    "timestamp": rfc3339(line.timestamp),
                    "text": line.text,
                }
            )
            + "\n"
        )

    if not follow:
        return Response("".join(message(line) for line in first), media_type=NDJSON)

    async def stream() -> AsyncIterator[str]:
        for line in first:
            yield message(line)
        last = first[-1].timestamp if first else (since if since is not None else 0.0)
        sent = {line for line in first if line.timestamp >= last}  # a line at `last` comes again
        loop = asyncio.get_running_loop()
        ends = loop.time() + gateway.settings.upstream_timeout
        while loop.time() < ends:
            await asyncio.sleep(min(LOG_POLL, max(ends - loop.time(), 0)))
            try:
                lines = await run_in_threadpool(gateway.backend.logs, name, 0, last, instance)
            except FunctionNotFound:
                return  # removed: nothing more will be written
            except BackendError:
                continue  # the backend away a moment: ask again next round
            fresh = [line for line in lines if line not in sent]
            for line in fresh:
                yield message(line)
            if fresh:
                last = max(line.timestamp for line in fresh)
                sent = {line for line in (*sent, *fresh) if line.timestamp >= last}

    return StreamingResponse(stream(), media_type=NDJSON)
