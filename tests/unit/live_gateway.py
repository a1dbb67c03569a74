"""The real gateway app with the local backend, served by uvicorn on a free loopback port in a
thread: for unit tests that must talk HTTP to it as a device or a caller would."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import httpx
import uvicorn

from edgefaas.backends.local import LocalBackend
from edgefaas.gateway import GatewaySettings, create_app


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LiveGateway:
    def __init__(self, data_dir: Path, password: str) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.backend = LocalBackend(data_dir / "local", gateway_url=self.url, drain_delay=0.3)
        app = create_app(GatewaySettings(data_dir=data_dir, admin_password=password), self.backend)
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.server.started, "the gateway did not start within 10 s"
        self.admin = httpx.Client(base_url=self.url, auth=("admin", password), timeout=30, trust_env=False)

    def functions(self) -> dict[str, dict]:
        return {f["name"]: f for f in self.admin.get("/system/functions").json()}

    def stop(self) -> None:
        self.admin.close()
        self.server.should_exit = True
        self.thread.join(15)
