"""/system/plots: the console's live plots, each a fixed PromQL range query (edgefaas.gateway.plots)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..errors import ApiError
from ..plots import PrometheusReader, panel_list, range_query
from ..state import Gateway
from .admin import admin


def _reader_of(gateway: Gateway) -> PrometheusReader:
    if gateway.prometheus is None:
        raise ApiError(
            503,
            "this gateway has no Prometheus to plot from: start it with --prometheus-url "
            "(deploys/monitoring.py sets it where Prometheus runs)",
        )
    return gateway.prometheus


@admin
async def list_plots(request: Request, gateway: Gateway) -> Response:
    return JSONResponse({"prometheus": gateway.settings.prometheus_url is not None, "panels": panel_list()})


@admin
async def plot(request: Request, gateway: Gateway) -> Response:
    wanted = range_query(request.path_params["panel"], request.query_params)
    return JSONResponse(await _reader_of(gateway).plot(wanted))
