"""Support for the gateway tests: a fake backend, fake functions, and a harness around the app.

The fake functions are an ASGI app reached through httpx's ASGI transport (the gateway's
``upstream_transport``), so route tests run in-process with no ports and no processes.
The harness runs the app's lifespan on an event loop in a thread and offers a plain
blocking client, like Starlette's TestClient, plus ``run`` for concurrent scenarios.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from edgefaas.backends.base import (
    Backend,
    DeployError,
    FunctionExists,
    FunctionNotFound,
    FunctionSpec,
    FunctionStatus,
    FunctionUnavailable,
    LogLine,
    NodeInfo,
    select_lines,
)
from edgefaas.gateway import GatewaySettings, create_app
from edgefaas.runtime.server import REJECTED_HEADER

pytestmark = pytest.mark.unit

ADMIN = ("admin", "test-password")
CODE = '''"""Echoes what it was sent."""

INPUT_SCHEMA = {"type": "object"}
OUTPUT_SCHEMA = {"type": "object", "required": ["function"]}


def handle(event, context):
    return {"function": context.function_name}
'''


class FakeBackend(Backend):
    """Functions as specs in a dict; each reached at http://<name>.fn (see fake_functions)."""

    kind = "fake"
    orchestration = "fake"

    def __init__(self) -> None:
        self.specs: dict[str, FunctionSpec] = {}
        self.versions: dict[str, int] = {}
        self.started = self.closed = False

    def start(self) -> None:
        self.started = True

    def close(self) -> None:
        self.closed = True

    def _status(self, name: str) -> FunctionStatus:
        spec = self.specs[name]
        return FunctionStatus(
            spec, spec.replicas, 1_700_000_000.0, time.time(), self.versions[name], ("fake-node",)
        )

    def deploy(self, spec: FunctionSpec) -> FunctionStatus:
        if spec.name in self.specs:
            raise FunctionExists(spec.name)
        self.specs[spec.name], self.versions[spec.name] = spec, 1
        return self._status(spec.name)

    def update(self, spec: FunctionSpec) -> FunctionStatus:
        self.get(spec.name)
        if spec.env_vars.get("FAIL_START"):
            raise DeployError("the function exited with status 3 while starting")
        self.specs[spec.name] = spec
        self.versions[spec.name] += 1
        return self._status(spec.name)

    def delete(self, name: str) -> None:
        self.get(name)
        del self.specs[name], self.versions[name]

    def get(self, name: str) -> FunctionStatus:
        if name not in self.specs:
            raise FunctionNotFound(name)
        return self._status(name)

    def list(self) -> list[FunctionStatus]:
        return [self._status(name) for name in sorted(self.specs)]

    def scale(self, name: str, replicas: int) -> FunctionStatus:
        self.get(name)
        self.specs[name] = self.specs[name].with_replicas(replicas)
        return self._status(name)

    def endpoint(self, name: str) -> str:
        if name not in self.specs:
            raise FunctionNotFound(name)
        if self.specs[name].replicas == 0:
            raise FunctionUnavailable(f"function {name!r} is scaled to zero", scaled_to_zero=True)
        if self.specs[name].env_vars.get("NEVER_READY"):
            raise FunctionUnavailable(f"function {name!r} has no ready replica: it is (re)starting")
        if self.specs[name].env_vars.get("DOWN_FOR"):
            raise FunctionUnavailable(
                f"function {name!r} has no ready replica: its device is down",
                unready_for=float(self.specs[name].env_vars["DOWN_FOR"]),
            )
        return f"http://{name.lower()}.fn"

    def nodes(self) -> list[NodeInfo]:
        return [
            NodeInfo("fake-node", "jetson", "arm64", "Linux", True, {"count": 4}, {"total_bytes": 4 << 30},
                     ({"vendor": "nvidia", "model": "tegra"},), {"edgefaas.io/profile": "jetson"},
                     tuple(sorted(self.specs)))
        ]  # fmt: skip

    def logs(
        self, name: str, tail: int = 0, since: float | None = None, instance: str | None = None
    ) -> list[LogLine]:
        self.get(name)
        lines = [LogLine(f"{name}-{i % 2}", 1_700_000_000.0 + i, f"{name} line {i}") for i in range(3)]
        return select_lines(lines, tail, since, instance)


def fake_functions(backend: FakeBackend, callbacks: list) -> Starlette:
    """Answers as the function named by the Host: Echo* echo, Slow* sleep, Boom* 500, Busy* 429."""

    async def any_call(request: Request) -> Response:
        host = request.url.hostname or ""
        if host == "callback.fn":
            # ?fail=N&status=S: the first N deliveries to this path answer S (default 503).
            path = request.url.path
            tries = 1 + sum(1 for seen in callbacks if seen["path"] == path)
            failing = tries <= int(request.query_params.get("fail", "0"))
            status = int(request.query_params.get("status", "503")) if failing else 200
            callbacks.append(
                {
                    "headers": dict(request.headers),
                    "body": await request.body(),
                    "path": path,
                    "answered": status,
                }
            )
            return Response(status_code=status)
        name = next((n for n in backend.specs if n.lower() + ".fn" == host), "?")
        body = await request.body()
        if name.startswith("Slow"):
            await asyncio.sleep(float(request.query_params.get("s", "0.05")))
        if name.startswith("Boom"):
            return JSONResponse({"error": "ValueError: boom"}, status_code=500)
        if name.startswith("Busy"):
            return JSONResponse(
                {"error": "at max in-flight"}, status_code=429, headers={REJECTED_HEADER: "max-inflight"}
            )
        if name.startswith("Text"):
            response = Response("plain words", media_type="text/plain", headers={"X-Custom": "kept"})
            response.raw_headers += [(b"set-cookie", b"a=1"), (b"set-cookie", b"b=2")]
            return response
        return JSONResponse(
            {
                "function": name,
                "version": backend.versions.get(name),
                "method": request.method,
                "path": request.url.path,
                "query": request.url.query,
                "headers": dict(request.headers),
                "body": body.decode(errors="replace"),
            }
        )

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
    return Starlette(routes=[Route("/{path:path}", any_call, methods=methods)])


class RefusingTransport(httpx.AsyncBaseTransport):
    """Passes calls to the fake functions, except ``refuse[host]`` first connections (never delivered)."""

    def __init__(self, app: Starlette) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.refuse: dict[str, int] = {}
        self.delivered = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        if self.refuse.get(host, 0) > 0:
            self.refuse[host] -= 1
            raise httpx.ConnectError("connection refused", request=request)
        self.delivered += 1
        return await self.inner.handle_async_request(request)


class Harness:
    """The gateway app, started, with a blocking client (``get``/``post``/...) and ``run`` for coroutines."""

    def __init__(self, data_dir: Path, backend: FakeBackend | None = None, **settings: object) -> None:
        # A backend given: another gateway's, as gateways sharing one cluster share its functions.
        self.backend = backend or FakeBackend()
        self.callbacks: list = []
        self.transport = RefusingTransport(fake_functions(self.backend, self.callbacks))
        settings = {"admin_password": ADMIN[1], "unavailable_wait": 0.3, **settings}
        self.settings = GatewaySettings(data_dir=data_dir, **settings)  # type: ignore[arg-type]
        self.app = create_app(self.settings, self.backend, upstream_transport=self.transport)
        self.gateway = self.app.state.gateway
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self._lifespan = self.app.router.lifespan_context(self.app)
        self.run(self._lifespan.__aenter__())
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://gateway", timeout=30
        )

    def run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=60)

    def request(self, method: str, url: str, **kwargs) -> httpx.Response:
        return self.run(self.client.request(method, url, **kwargs))

    def get(self, url: str, **kwargs) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def put(self, url: str, **kwargs) -> httpx.Response:
        return self.request("PUT", url, **kwargs)

    def delete(self, url: str, **kwargs) -> httpx.Response:
        return self.request("DELETE", url, **kwargs)

    def deploy(self, name: str, code: str = CODE, **fields) -> httpx.Response:
        answer = self.post("/system/functions", json={"service": name, "code": code, **fields}, auth=ADMIN)
        assert answer.status_code == 202, answer.text
        return answer

    def license(self, plan: str = "standard", name: str = "acme") -> tuple[str, str]:
        answer = self.post("/system/licenses", json={"name": name, "plan": plan}, auth=ADMIN)
        assert answer.status_code == 201, answer.text
        return answer.json()["id"], answer.json()["token"]

    def plan(self, name: str, **fields) -> None:
        answer = self.post("/system/plans", json={"name": name, **fields}, auth=ADMIN)
        assert answer.status_code == 201, answer.text

    def call(self, name: str, token: str | None = None, method: str = "POST", path: str = "", **kwargs):
        headers = dict(kwargs.pop("headers", {}))
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return self.request(method, f"/function/{name}{path}", headers=headers, **kwargs)

    def bill(self, license_id: str, **params) -> httpx.Response:
        return self.get("/system/billing", params={"license": license_id, **params}, auth=ADMIN)

    def close(self) -> None:
        self.run(self.client.aclose())
        self.run(self._lifespan.__aexit__(None, None, None))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


@pytest.fixture(name="harness")
def harness_fixture(tmp_path):
    gateway = Harness(tmp_path)
    yield gateway
    gateway.close()


def test_the_harness_starts_and_stops_the_backend(tmp_path):
    gateway = Harness(tmp_path)
    assert gateway.backend.started and not gateway.backend.closed
    gateway.close()
    assert gateway.backend.closed
