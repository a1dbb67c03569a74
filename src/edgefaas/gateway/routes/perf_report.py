"""The perf report the console shows: PUT /system/perf-report stores it, GET /console/perf-report serves it.

The report is the HTML page `edgefaas perf` writes; the gateway keeps the latest one in its
data dir and serves it sandboxed, since it is uploaded markup.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..errors import ApiError
from ..invoke import read_body
from ..state import Gateway
from ..timestamps import iso_time
from .admin import admin

PERF_REPORT_FILE = "perf-report.html"
# `edgefaas perf` reports embed their plots as base64 PNGs: 4 MiB leaves room for longer runs
# while keeping a stray upload from filling the gateway's data dir.
PERF_REPORT_MAX_BYTES = 4 * 1024 * 1024
# The report is uploaded HTML: served in a sandbox (an opaque origin, no scripts) so that a
# report cannot read the console's stored credentials or call the API as the admin.
REPORT_HEADERS = {
    "Content-Security-Policy": "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


def _report_path(gateway: Gateway) -> Path:
    return gateway.settings.data_dir / PERF_REPORT_FILE


def _looks_like_html(text: str) -> bool:
    head = text.lstrip("\ufeff \t\r\n")[:64].lower()
    return head.startswith("<!doctype html") or head.startswith("<html")


def _replace_file(path: Path, data: bytes) -> None:
    # Write-then-rename: a reader never sees half a report, even while a new one arrives.
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as handle:
        handle.write(data)
    Path(handle.name).replace(path)


@admin
async def put_perf_report(request: Request, gateway: Gateway) -> Response:
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media != "text/html":
        raise ApiError(415, "send the report as Content-Type: text/html")
    body = await read_body(request, min(PERF_REPORT_MAX_BYTES, gateway.settings.max_body_bytes))
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "the report is not UTF-8 text") from None
    if not _looks_like_html(text):
        raise ApiError(400, "not an HTML document: it must start with <!DOCTYPE html> or <html>")
    await run_in_threadpool(_replace_file, _report_path(gateway), body)
    return JSONResponse(
        {"bytes": len(body), "stored_at": iso_time(time.time()), "url": "/console/perf-report"},
        status_code=201,
    )


@admin
async def get_perf_report(request: Request, gateway: Gateway) -> Response:
    path = _report_path(gateway)
    try:
        body = await run_in_threadpool(path.read_bytes)
    except FileNotFoundError:
        raise ApiError(
            404,
            "no perf report yet: run `edgefaas perf --inventory ...` (it uploads report.html here) "
            "or PUT one to /system/perf-report",
        ) from None
    return Response(body, media_type="text/html; charset=utf-8", headers=REPORT_HEADERS)
