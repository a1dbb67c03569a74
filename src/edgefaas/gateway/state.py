"""The gateway's shared state: one Gateway per app, which every route reads from the request."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from edgefaas.backends.base import Backend

from .auth import AdminAuth
from .config import GatewaySettings
from .invoke import Invoker
from .ledger import Ledger
from .licensing.authority import LicenseAuthority
from .licensing.store import LicenseStore
from .metrics import Metrics
from .plots import PrometheusReader
from .registry import FunctionRegistry
from .site_services import Sites


@dataclass
class Gateway:
    """Everything a route may need; one per app, at ``app.state.gateway``."""

    settings: GatewaySettings
    backend: Backend
    registry: FunctionRegistry
    license_store: LicenseStore
    licenses: LicenseAuthority
    ledger: Ledger
    metrics: Metrics
    invoker: Invoker
    admin_auth: AdminAuth
    sites: Sites
    # The site's Prometheus, for the console's plots; None when the gateway was given none.
    prometheus: PrometheusReader | None = None


def gateway_of(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway
