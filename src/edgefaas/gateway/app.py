"""The gateway's ASGI app: its parts wired together, its route table, and its lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import httpx
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from edgefaas.backends.base import Backend

from .auth import AdminAuth, ensure_admin_password
from .config import GatewaySettings
from .console import console_routes
from .database import StorageUnavailable
from .errors import ApiError
from .invoke import Invoker
from .ledger import Ledger
from .licensing.authority import LicenseAuthority
from .licensing.store import LicenseStore
from .licensing.tokens import TokenSigner
from .metrics import Metrics
from .openapi import build_openapi
from .plots import PrometheusReader
from .quota import QuotaGate
from .registry import FunctionRegistry
from .routes import (
    alert,
    billing,
    functions,
    logs,
    monitoring,
    namespaces,
    nodes,
    perf_report,
    plots,
    secrets,
)
from .routes import sites as site_routes
from .routes.admin import Handler
from .service_addresses import ServiceAddresses, ServiceAddressRouting, wan_state
from .site_services import Sites
from .state import Gateway
from .storage import license_signer, open_storage

log = logging.getLogger("edgefaas.gateway")

ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.response()


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def _storage_unavailable(request: Request, exc: Exception) -> Response:
    # The database is away (restarting, its host gone): a reason and a retry, not an internal error.
    return JSONResponse(
        {"error": f"the gateway's database is unavailable: {exc}"},
        status_code=503,
        headers={"Retry-After": "1"},
    )


async def _unexpected(request: Request, exc: Exception) -> Response:
    # A bug, not a bad request: logged with its traceback; the caller gets no internals.
    log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"error": "internal error"}, status_code=500)


def _route(path: str, **by_method: Handler) -> Route:
    """One route for several methods, so a 405's Allow header names all of them."""

    async def dispatch(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        return await by_method[method](request)

    return Route(path, dispatch, methods=list(by_method))


async def _refresh(registry: FunctionRegistry, every: float) -> None:
    """Keep the registry in step with the backend, where other gateways deploy, update and remove
    functions too: a change made through one is seen by every gateway within `every` seconds."""
    while True:
        await asyncio.sleep(every)
        try:
            await run_in_threadpool(registry.sync)
        except Exception as exc:  # the next round tries again; calls go on with what is known
            log.warning("could not refresh the functions from the backend: %s", exc)


def create_app(
    settings: GatewaySettings,
    backend: Backend,
    *,
    license_store: LicenseStore | None = None,
    ledger: Ledger | None = None,
    signer: TokenSigner | None = None,
    upstream_transport: httpx.AsyncBaseTransport | None = None,
) -> Starlette:
    """Build the gateway around ``backend``; storage and signer default to the data dir's.

    ``upstream_transport`` replaces the HTTP transport to functions (tests call ASGI apps).
    """
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    password = ensure_admin_password(settings.admin_password_file, settings.admin_password)
    if license_store is None or ledger is None:
        opened_store, opened_ledger = open_storage(settings)
        license_store = license_store or opened_store
        ledger = ledger or opened_ledger
    authority = LicenseAuthority(license_store, signer or license_signer(settings))
    registry = FunctionRegistry(backend)
    quota = QuotaGate(ledger, clock=ledger.now)
    gateway_metrics = Metrics(backend.namespaces()[0])
    sites = Sites(settings, backend, registry, ledger)
    invoker = Invoker(
        backend, registry, authority, quota, ledger, gateway_metrics, settings, transport=upstream_transport,
        placement=sites.placement,
    )  # fmt: skip
    gateway = Gateway(
        settings=settings,
        backend=backend,
        registry=registry,
        license_store=license_store,
        licenses=authority,
        ledger=ledger,
        metrics=gateway_metrics,
        invoker=invoker,
        admin_auth=AdminAuth(password),
        sites=sites,
        prometheus=(
            PrometheusReader(settings.prometheus_url, settings.prometheus_ca)
            if settings.prometheus_url
            else None
        ),
    )
    openapi = build_openapi(functions.gateway_version()["release"])

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(openapi)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await run_in_threadpool(backend.start)
        await run_in_threadpool(registry.sync)
        await invoker.start()
        await sites.start()
        refresher = asyncio.create_task(_refresh(registry, settings.registry_refresh))
        log.info("gateway ready: %s backend, %d functions", backend.kind, len(registry.all()))
        try:
            yield
        finally:
            refresher.cancel()
            if gateway.prometheus is not None:
                await gateway.prometheus.close()
            await sites.close()
            await invoker.close()
            await run_in_threadpool(backend.close)
            await run_in_threadpool(ledger.close)
            await run_in_threadpool(license_store.close)

    routes = [
        Route("/healthz", monitoring.healthz, methods=["GET"]),
        Route("/metrics", monitoring.metrics, methods=["GET"]),
        Route("/wan", wan_state, methods=["GET"]),
        Route("/openapi.json", openapi_json, methods=["GET"]),
        Route("/system/info", functions.system_info, methods=["GET"]),
        _route(
            "/system/functions",
            GET=functions.list_functions,
            POST=functions.deploy_function,
            PUT=functions.update_function,
            DELETE=functions.delete_function,
        ),
        Route("/system/function/{name}", functions.get_function, methods=["GET"]),
        Route("/system/function/{name}/code", functions.function_code, methods=["GET"]),
        Route("/system/scale-function/{name}", functions.scale_function, methods=["POST"]),
        Route("/system/namespaces", namespaces.list_namespaces, methods=["GET"]),
        # GET only: creating, changing or deleting one is 405, as OpenFaaS CE's providers answer.
        Route("/system/namespace/{name}", namespaces.get_namespace, methods=["GET"]),
        _route(
            "/system/secrets",
            GET=secrets.list_secrets,
            POST=secrets.create_secret,
            PUT=secrets.update_secret,
            DELETE=secrets.delete_secret,
        ),
        Route("/system/alert", alert.alert, methods=["POST"]),
        Route("/system/plots", plots.list_plots, methods=["GET"]),
        Route("/system/plots/{panel}", plots.plot, methods=["GET"]),
        Route("/system/logs", logs.function_logs, methods=["GET"]),
        Route("/system/apis", functions.list_apis, methods=["GET"]),
        Route("/system/nodes", nodes.list_nodes, methods=["GET"]),
        Route("/system/node-removals", nodes.node_removals, methods=["GET"]),
        _route("/system/plans", GET=billing.list_plans, POST=billing.create_plan),
        _route("/system/licenses", GET=billing.list_licenses, POST=billing.create_license),
        Route("/system/licenses/{license_id}", billing.revoke_license, methods=["DELETE"]),
        Route("/system/billing", billing.bill, methods=["GET"]),
        Route("/system/perf-report", perf_report.put_perf_report, methods=["PUT"]),
        Route("/function/{name}", invoker.call, methods=ALL_METHODS),
        Route("/function/{name}/{path:path}", invoker.call, methods=ALL_METHODS),
        Route("/system/sites", site_routes.status, methods=["GET"]),
        Route("/system/catalogue-key", site_routes.catalogue_key, methods=["GET"]),
        Route("/system/site-usage", site_routes.usage_rollup, methods=["GET"]),
        Route("/sites/catalogue", site_routes.catalogue, methods=["GET"]),
        Route("/sites/usage", site_routes.push_usage, methods=["POST"]),
        Route("/site-function/{name}/{path:path}", site_routes.call_for_site, methods=ALL_METHODS),
        Route("/async-function/{name}", invoker.call_async, methods=["POST"]),
        Route("/async-function/{name}/{path:path}", invoker.call_async, methods=["POST"]),
        *console_routes(),
    ]
    service_addresses = ServiceAddresses(settings.wan_plan)
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(ServiceAddressRouting, addresses=service_addresses)],
        exception_handlers={
            ApiError: _api_error,
            HTTPException: _http_error,
            StorageUnavailable: _storage_unavailable,
            Exception: _unexpected,
        },
    )
    app.state.gateway = gateway
    app.state.service_addresses = service_addresses
    return app
