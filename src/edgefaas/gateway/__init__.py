"""The EdgeFaaS gateway: OpenFaaS's HTTP API, plus deploying from source, licenses and billing.

``create_app`` builds the ASGI app around a backend (where functions run);
``edgefaas gateway`` (cli.py) serves it with uvicorn. Both are imported lazily, so the
``edgefaas`` command loads without the gateway's extra (starlette, uvicorn, httpx).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import create_app
    from .config import GatewaySettings

__all__ = ["GatewaySettings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .app import create_app

        return create_app
    if name == "GatewaySettings":
        from .config import GatewaySettings

        return GatewaySettings
    raise AttributeError(name)
