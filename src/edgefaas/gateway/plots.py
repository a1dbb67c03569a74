"""The console's live plots: a fixed set of PromQL range queries asked of the site's Prometheus.

The browser names a panel, never a query: the gateway holds every query here, so an admin
session cannot run arbitrary PromQL (a costly query would load the Prometheus every device
reports to) and the answer is only ever the series of these panels. Labels come from the
scrape configuration deploys/monitoring.py writes: `device` (the inventory name) on every
target, `function_name` ("<name>.<namespace>", as OpenFaaS labels it) on the gateways' own
metrics, `model` on Triton's.

`{window}` in a query is the rate window: at least a minute (four scrapes at Prometheus's
default 15 s) and at least two steps, so each point averages over what lies between points.
"""

from __future__ import annotations

import math
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from .errors import ApiError

# One range query returns at most this many points per series (Prometheus refuses > 11000).
MAX_POINTS = 240
MIN_STEP = 5
MIN_WINDOW = 60
MAX_MINUTES = 24 * 60
DEFAULT_MINUTES = 30
TIMEOUT = 10.0


@dataclass(frozen=True)
class Panel:
    title: str
    unit: str
    query: str
    label: str  # the series label that names a line


PANELS: dict[str, Panel] = {
    "calls": Panel(
        "Calls per function",
        "calls/s",
        "sum by (function_name) (rate(gateway_function_invocation_total[{window}]))",
        "function_name",
    ),
    "latency": Panel(
        "Mean latency per function",
        "s",
        "sum by (function_name) (rate(gateway_functions_seconds_sum[{window}]))"
        " / sum by (function_name) (rate(gateway_functions_seconds_count[{window}]))",
        "function_name",
    ),
    "latency_p95": Panel(
        "95th percentile latency per function",
        "s",
        "histogram_quantile(0.95,"
        " sum by (function_name, le) (rate(gateway_functions_seconds_bucket[{window}])))",
        "function_name",
    ),
    "triton_inferences": Panel(
        "Triton inferences per device",
        "inferences/s",
        "sum by (device) (rate(nv_inference_count[{window}]))",
        "device",
    ),
    "triton_queue": Panel(
        "Triton queue time per request",
        "ms",
        # Triton counts queue time in microseconds, summed over requests.
        "sum by (device) (rate(nv_inference_queue_duration_us[{window}])) / 1000"
        " / sum by (device) (rate(nv_inference_request_success[{window}]))",
        "device",
    ),
    "cpu": Panel(
        "CPU busy per device",
        "%",
        '100 * (1 - avg by (device) (rate(node_cpu_seconds_total{{mode="idle"}}[{window}])))',
        "device",
    ),
    "memory": Panel(
        "Memory in use per device",
        "%",
        "100 * (1 - sum by (device) (node_memory_MemAvailable_bytes)"
        " / sum by (device) (node_memory_MemTotal_bytes))",
        "device",
    ),
}


def panel_list() -> list[dict[str, str]]:
    """What /system/plots lists: each panel's name, title and unit."""
    return [{"panel": name, "title": p.title, "unit": p.unit} for name, p in PANELS.items()]


def _number(params: Mapping[str, str], field: str, default: int, low: int, high: int) -> int:
    text = params.get(field)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise ApiError(400, f"{field} must be a whole number, not {text!r}") from None
    if not low <= value <= high:
        raise ApiError(400, f"{field} must be between {low} and {high}, not {value}")
    return value


@dataclass(frozen=True)
class RangeQuery:
    panel: str
    query: str
    start: float
    end: float
    step: int


def range_query(panel: str, params: Mapping[str, str], now: float | None = None) -> RangeQuery:
    """The panel's query over the last `minutes` (query parameter) at `step` seconds; 4xx naming the field."""
    if panel not in PANELS:
        raise ApiError(404, f"panel {panel!r} not found: one of {', '.join(PANELS)}")
    minutes = _number(params, "minutes", DEFAULT_MINUTES, 1, MAX_MINUTES)
    span = minutes * 60
    step = _number(params, "step", max(MIN_STEP, math.ceil(span / MAX_POINTS)), MIN_STEP, span)
    if span / step > MAX_POINTS:
        raise ApiError(400, f"step must be at least {math.ceil(span / MAX_POINTS)} s for {minutes} minutes")
    window = max(MIN_WINDOW, 2 * step)
    end = time.time() if now is None else now
    return RangeQuery(panel, PANELS[panel].query.format(window=f"{window}s"), end - span, end, step)


def _points(values: list[list[Any]]) -> list[list[float]]:
    points = []
    for at, text in values:
        value = float(text)
        # A ratio with nothing below it (no calls in the window) is NaN: a gap, not a point.
        if math.isfinite(value):
            points.append([float(at), value])
    return points


class PrometheusReader:
    """Asks the site's Prometheus for panels' range queries (HTTP API v1)."""

    def __init__(self, url: str, ca_file: Path | None = None) -> None:
        verify: ssl.SSLContext | bool = True
        if ca_file is not None:
            verify = ssl.create_default_context(cafile=str(ca_file))
        self.url = url.rstrip("/")
        self._client = httpx.AsyncClient(timeout=TIMEOUT, verify=verify, trust_env=False)

    async def close(self) -> None:
        await self._client.aclose()

    async def plot(self, wanted: RangeQuery) -> dict[str, Any]:
        """The panel's series as {"labels", "name", "points": [[unix seconds, value], ...]}."""
        panel = PANELS[wanted.panel]
        params = {"query": wanted.query, "start": wanted.start, "end": wanted.end, "step": wanted.step}
        try:
            answer = await self._client.get(f"{self.url}/api/v1/query_range", params=params)
        except httpx.HTTPError as exc:
            raise ApiError(
                503, f"Prometheus at {self.url} cannot be reached: {exc}", {"Retry-After": "5"}
            ) from None
        try:
            body = answer.json()
        except ValueError:
            body = {}
        if answer.status_code != 200 or body.get("status") != "success":
            reason = body.get("error") or answer.text[:200]
            raise ApiError(502, f"Prometheus answered {answer.status_code}: {reason}")
        series = []
        for item in body["data"]["result"]:
            labels = item.get("metric", {})
            series.append(
                {
                    "name": labels.get(panel.label, "") or "(none)",
                    "labels": labels,
                    "points": _points(item.get("values", [])),
                }
            )
        series.sort(key=lambda s: s["name"])
        return {
            "panel": wanted.panel,
            "title": panel.title,
            "unit": panel.unit,
            "query": wanted.query,
            "start": wanted.start,
            "end": wanted.end,
            "step": wanted.step,
            "series": series,
        }
