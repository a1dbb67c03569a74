"""/system/nodes and /system/node-removals: the devices functions run on, and those taken away."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..state import Gateway
from .admin import admin, backend_call


@admin
async def list_nodes(request: Request, gateway: Gateway) -> Response:
    nodes = await backend_call(gateway.backend.nodes)
    return JSONResponse([node.to_json() for node in nodes])


@admin
async def node_removals(request: Request, gateway: Gateway) -> Response:
    """Nodes the node authentication server removed, and why (they are gone from /system/nodes)."""
    return JSONResponse(await backend_call(gateway.backend.node_removals))
