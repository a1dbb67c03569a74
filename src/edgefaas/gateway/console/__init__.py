"""The web console: one static page at ``/``, its assets under ``/console/static/``, and the perf report.

The page is plain HTML, CSS and ES modules shipped in this package (``static/``): the gateway
serves it with no build step and no network, so it works on a lab with no route out. It talks
to the gateway's own API with the admin's basic credentials, which the browser keeps in
sessionStorage; the page itself carries no secret and needs no login to load.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..errors import not_found
from ..routes.perf_report import get_perf_report

STATIC = Path(__file__).resolve().parent / "static"
MEDIA_TYPES = {".html": "text/html", ".css": "text/css", ".js": "text/javascript"}


def _load_assets() -> dict[str, tuple[bytes, str, str]]:
    """name -> (bytes, media type, ETag), read once: a path parameter can name nothing else."""
    assets = {}
    for path in sorted(STATIC.iterdir()):
        if path.suffix in MEDIA_TYPES:
            data = path.read_bytes()
            assets[path.name] = (data, MEDIA_TYPES[path.suffix], f'"{hashlib.sha256(data).hexdigest()[:20]}"')
    return assets


ASSETS = _load_assets()
# The page loads only its own files and talks only to this gateway: were a function's answer or
# a device name ever rendered as markup, no injected script or outside address would run.
# Inline styles are allowed for one reason: the perf report is shown from a blob: frame, which
# inherits this policy, and its layout is inline CSS; a style cannot run code or reach outside.
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; "
    "img-src 'self' blob: data:; frame-src blob:; base-uri 'none'; form-action 'none'"
)


def _serve(request: Request, name: str) -> Response:
    data, media_type, etag = ASSETS[name]
    # no-cache, not no-store: the browser revalidates (a 304 when unchanged), so a new gateway
    # release shows at the next load while repeat loads cost no transfer.
    headers = {"Cache-Control": "no-cache", "ETag": etag}
    if media_type == "text/html":
        headers["Content-Security-Policy"] = PAGE_POLICY
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(data, media_type=media_type, headers=headers)


async def index(request: Request) -> Response:
    return _serve(request, "index.html")


async def asset(request: Request) -> Response:
    name = request.path_params["asset"]
    if name not in ASSETS:
        raise not_found(f"console file {name!r}")
    return _serve(request, name)


def console_routes() -> list[BaseRoute]:
    """The console's routes, for the gateway's route list."""
    return [
        Route("/", index, methods=["GET"]),
        Route("/console/static/{asset}", asset, methods=["GET"]),
        Route("/console/perf-report", get_perf_report, methods=["GET"]),
    ]
