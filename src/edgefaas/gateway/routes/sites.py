"""Routes between sites: the catalogue an edge pulls, the usage it pushes, the calls it forwards
(each with the site's credential), and what the admin reads (status, catalogue key, roll-up)."""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from .. import schemas
from ..errors import ApiError
from ..licensing.es256_key import public_pem
from ..site_services import Sites
from ..state import Gateway, gateway_of
from ..usage import USAGE_PUSH
from .admin import admin, json_body, query_param

SiteHandler = Callable[[Request, Gateway, Sites, str], Awaitable[Response]]


def _cloud(gateway: Gateway) -> Sites:
    sites = gateway.sites
    if sites.settings is None or not sites.settings.is_cloud:
        role = f"the {sites.settings.role} site {sites.settings.name!r}" if sites.settings else "no site"
        raise ApiError(404, f"this gateway is {role}, not a cloud: it has no catalogue or site usage")
    return sites


def from_site(route: SiteHandler) -> Callable[[Request], Awaitable[Response]]:
    """A cloud route for edge sites: their credential checked, the site's name handed on."""

    @functools.wraps(route)
    async def wrapped(request: Request) -> Response:
        gateway = gateway_of(request)
        try:
            sites = _cloud(gateway)
            assert sites.settings is not None
            site = sites.settings.authenticate(request.headers.get("authorization"))
            return await route(request, gateway, sites, site)
        except ApiError as exc:
            return exc.response()

    return wrapped


@from_site
async def catalogue(request: Request, gateway: Gateway, sites: Sites, site: str) -> Response:
    since = query_param(request, "since", {"type": "integer", "minimum": 0}, default=0)
    assert sites.catalogue is not None
    latest, entries = await run_in_threadpool(sites.catalogue.feed, site, since)
    return JSONResponse(
        {
            "publisher": sites.catalogue.publisher,
            "site": site,
            "version": latest,
            "entries": [e.to_json() for e in entries],
        }
    )


@from_site
async def push_usage(request: Request, gateway: Gateway, sites: Sites, site: str) -> Response:
    data = await json_body(request, gateway, USAGE_PUSH)
    assert sites.usage is not None
    acked = await run_in_threadpool(sites.usage.record, site, data["records"], time.time())
    return JSONResponse({"site": site, "acked": acked})


async def call_for_site(request: Request) -> Response:
    gateway = gateway_of(request)
    try:
        sites = _cloud(gateway)
        assert sites.settings is not None
        site = sites.settings.authenticate(request.headers.get("authorization"))
    except ApiError as exc:
        return gateway.sites.placement.refused_for_site(exc.response())
    return await gateway.invoker.call_for_site(request, site)


@admin
async def catalogue_key(request: Request, gateway: Gateway) -> Response:
    sites = _cloud(gateway)
    assert sites.catalogue is not None
    return PlainTextResponse(public_pem(sites.catalogue.public_key), media_type="application/x-pem-file")


@admin
async def usage_rollup(request: Request, gateway: Gateway) -> Response:
    sites = _cloud(gateway)
    assert sites.usage is not None
    license_id = None
    if "license" in request.query_params:
        license_id = query_param(request, "license", schemas.LICENSE_ID)
    return JSONResponse(await run_in_threadpool(sites.usage.rollup, license_id))


@admin
async def status(request: Request, gateway: Gateway) -> Response:
    return JSONResponse(await gateway.sites.status())
