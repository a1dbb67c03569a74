"""The real gateway app with the local backend, served by uvicorn on a free loopback port in a
thread: for unit tests that must talk HTTP to it as a device or a caller would."""

from __future__ import annotations

import socket
import ssl as ssl_module
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from edgefaas.backends.local import LocalBackend
from edgefaas.gateway import GatewaySettings, create_app


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LiveGateway:
    """``port``: a given one (a gateway restarted where its peers expect it); ``settings``: more
    GatewaySettings fields; ``tls``: (certificate, key) files to serve HTTPS with, ``ca`` the CA
    file the admin client verifies it by."""

    def __init__(
        self,
        data_dir: Path,
        password: str,
        *,
        port: int | None = None,
        tls: tuple[Path, Path] | None = None,
        ca: Path | None = None,
        **settings: Any,
    ) -> None:
        port = port or free_port()
        self.port = port
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
        self.backend = LocalBackend(data_dir / "local", gateway_url=self.url, drain_delay=0.3)
        app = create_app(
            GatewaySettings(data_dir=data_dir, admin_password=password, **settings), self.backend
        )
        self.app = app
        ssl = {"ssl_certfile": str(tls[0]), "ssl_keyfile": str(tls[1])} if tls else {}
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", **ssl)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.server.started, "the gateway did not start within 10 s"
        verify = ssl_module.create_default_context(cafile=str(ca)) if ca else True
        self.admin = httpx.Client(
            base_url=self.url, auth=("admin", password), timeout=30, trust_env=False, verify=verify
        )

    def functions(self) -> dict[str, dict]:
        return {f["name"]: f for f in self.admin.get("/system/functions").json()}

    def stop(self) -> None:
        self.admin.close()
        self.server.should_exit = True
        self.thread.join(15)
