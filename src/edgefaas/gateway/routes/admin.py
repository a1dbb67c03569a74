"""What every admin route shares: the admin's credentials, the Gateway, backend calls, and parsing.

Every /system route (and the console's perf report) needs the admin's basic credentials.
Backend calls block (they may start processes or talk to an API server), so they run on a
worker thread, their errors turned into answers.
"""

from __future__ import annotations

import errno
import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from edgefaas.backends.base import (
    BackendError,
    BackendUnreachable,
    DeployError,
    FunctionExists,
    FunctionNotFound,
    FunctionUnavailable,
    SecretExists,
    SecretNotFound,
    Unsupported,
)

from .. import schemas
from ..errors import ApiError
from ..invoke import read_body
from ..state import Gateway, gateway_of
from ..validation import check, parse_json

T = TypeVar("T")
Handler = Callable[[Request], Awaitable[Response]]
AdminHandler = Callable[[Request, Gateway], Awaitable[Response]]


def admin(route: AdminHandler) -> Handler:
    """Require the admin's credentials, hand the route its Gateway, and answer ApiErrors."""

    @functools.wraps(route)
    async def wrapped(request: Request) -> Response:
        gateway = gateway_of(request)
        try:
            gateway.admin_auth.check(request)
            return await route(request, gateway)
        except ApiError as exc:
            return exc.response()

    return wrapped


async def backend_call(call: Callable[..., T], *args: Any) -> T:
    """Run a backend method off the event loop, its errors turned into answers."""
    try:
        return await run_in_threadpool(call, *args)
    except (FunctionNotFound, SecretNotFound) as exc:
        raise ApiError(404, str(exc)) from None
    except (FunctionExists, SecretExists) as exc:
        raise ApiError(409, str(exc)) from None
    except (Unsupported, DeployError, ValueError) as exc:
        raise ApiError(400, str(exc)) from None
    except FunctionUnavailable as exc:
        raise ApiError(503, str(exc)) from None
    except BackendUnreachable as exc:
        raise ApiError(503, f"{exc}; try again shortly", {"Retry-After": "5"}) from None
    except BackendError as exc:
        raise ApiError(502, f"the backend failed: {exc}") from None
    except OSError as exc:
        # The local backend keeps functions in the data dir: a full disk is a wait, not a bug.
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise ApiError(503, f"no space left on the gateway's disk: {exc}", {"Retry-After": "5"}) from None
        raise


async def json_body(request: Request, gateway: Gateway, schema: schemas.Schema) -> Any:
    return parse_json(await read_body(request, gateway.settings.max_body_bytes), schema)


def query_param(request: Request, name: str, schema: schemas.Schema, default: Any = None) -> Any:
    """A query parameter checked against ``schema``; 400 if missing (and no default) or invalid."""
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
