"""Functions served at their own WAN service addresses, and what the switch's announcer reads.

The WAN plan (edgefaas.deploy.wan renders it, /etc/edgefaas/wan.json) gives every public
function an address that the switch announces into the SD-WAN (edgefaas.sonic.announce).
A request whose local address (ASGI scope["server"]) is a function's address is that
function's call with no path prefix: `/<path>` becomes `/function/<name>/<path>`, so a WAN
client needs only the address. The gateway listens on the plan's service port (80) beside
its API port; a request to the anycast address is an ordinary API request.

`GET /wan` (no credentials, like /healthz) lists the plan's functions with whether each is
served here and its version: what the announcer turns into announcements and communities.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from edgefaas.backends.base import FunctionStatus
from edgefaas.sonic.announce import PlanError, WanPlan, load_plan

log = logging.getLogger("edgefaas.gateway")


class ServiceAddresses:
    """The WAN plan, read again when its file changes (checked at most every `recheck` seconds)."""

    def __init__(self, plan_path: Path | None, recheck: float = 1.0) -> None:
        self.plan_path = plan_path
        self.recheck = recheck
        self._plan: WanPlan | None = None
        self._by_address: dict[str, str] = {}
        self._stamp: tuple[int, int] | None = None
        self._checked = -1e9
        self.plan()

    def plan(self) -> WanPlan | None:
        if self.plan_path is None:
            return None
        now = time.monotonic()
        if now - self._checked < self.recheck:
            return self._plan
        self._checked = now
        try:
            stat = self.plan_path.stat()
            stamp: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            stamp = None
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                self._plan = load_plan(self.plan_path)
            except PlanError as exc:
                log.error("the WAN plan is refused, keeping the previous one: %s", exc)
                return self._plan
            self._by_address = self._plan.by_address() if self._plan else {}
            if self._plan:
                log.info(
                    "WAN plan: %d function address(es), anycast %s", len(self._by_address), self._plan.anycast
                )
        return self._plan

    def function_at(self, address: str) -> str | None:
        """The function served at this local address, if it is a function's service address."""
        self.plan()
        return self._by_address.get(address)

    def entry(self, name: str, version: int | None) -> dict[str, Any] | None:
        """A function's WAN fields for /system/apis: address, URL, large community, the API's anycast."""
        plan = self.plan()
        if plan is None or name not in plan.functions:
            return None
        address = plan.functions[name].address
        scheme = "https" if plan.ca_file else "http"
        port = "" if plan.service_port == {"https": 443, "http": 80}[scheme] else f":{plan.service_port}"
        return {
            "address": str(address),
            "url": f"{scheme}://{address}{port}/",
            "community": plan.community(name, version) if version is not None else None,
            "anycast": str(plan.anycast),
        }


class ServiceAddressRouting:
    """ASGI middleware: a request to a function's service address is a call of that function."""

    def __init__(self, app: ASGIApp, addresses: ServiceAddresses) -> None:
        self.app = app
        self.addresses = addresses

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        server = scope.get("server") if scope["type"] == "http" else None
        name = self.addresses.function_at(server[0]) if server else None
        if name is not None:
            scope = dict(scope)
            path = scope["path"]
            raw = scope.get("raw_path") or path.encode()
            rest_raw = b"" if raw in (b"", b"/") else raw
            scope["path"] = f"/function/{name}" + ("" if path in ("", "/") else path)
            scope["raw_path"] = f"/function/{name}".encode() + rest_raw
        await self.app(scope, receive, send)


def _available(status: FunctionStatus) -> bool:
    return status.available_replicas > 0


async def wan_state(request: Request) -> Response:
    """GET /wan: the plan's functions, each with `available` (served here) and `version`."""
    gateway = request.app.state.gateway
    addresses: ServiceAddresses = request.app.state.service_addresses
    plan = addresses.plan()
    if plan is None:
        return JSONResponse({"anycast": None, "functions": {}})
    statuses = {s.name: s for s in await run_in_threadpool(gateway.backend.list)}
    functions = {}
    for name, function in sorted(plan.functions.items()):
        status = statuses.get(name)
        functions[name] = {
            "address": str(function.address),
            "available": bool(status and _available(status)),
            "version": status.version if status else None,
            "community": plan.community(name, status.version) if status else None,
        }
    return JSONResponse({"anycast": str(plan.anycast), "functions": functions})
