"""Real nats-server processes (Debian's, with JetStream) on free loopback ports, for unit tests.

``NatsServer`` is one server with its JetStream store in a directory of its own; ``cluster``
starts several routed to one another, as one server per switch would be, so a stream
with replicas outlives one of them.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import httpx

from .live_gateway import free_port


def nats_binary() -> str:
    binary = shutil.which("nats-server") or shutil.which("nats-server", path="/usr/sbin:/usr/bin")
    assert binary, "nats-server is missing: apt-get install nats-server (scripts/setup installs it)"
    return binary


class NatsServer:
    def __init__(self, root: Path, name: str = "n1", routes: list[int] | None = None) -> None:
        self.root = root
        self.name = name
        self.port = free_port()
        self.http_port = free_port()
        self.cluster_port = free_port() if routes is not None else None
        self.routes = routes
        self.store = root / "jetstream"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def config(self) -> str:
        lines = [
            f"server_name: {self.name}",
            f"listen: 127.0.0.1:{self.port}",
            f"http: 127.0.0.1:{self.http_port}",
            f'jetstream {{ store_dir: "{self.store}" }}',
        ]
        if self.cluster_port is not None:
            routes = ", ".join(f"nats-route://127.0.0.1:{port}" for port in self.routes or [])
            lines.append(
                f"cluster {{ name: edgefaas, listen: 127.0.0.1:{self.cluster_port}, routes: [{routes}] }}"
            )
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        conf = self.root / "nats.conf"
        conf.write_text(self.config())
        log = (self.root / "nats.log").open("ab")
        self.process = subprocess.Popen(
            [nats_binary(), "-c", str(conf)], stdout=log, stderr=log, cwd=self.root
        )
        log.close()

    def wait_ready(self, timeout: float = 20) -> None:
        """Until JetStream answers healthy (a cluster's servers only once its meta leader is elected)."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            assert self.process and self.process.poll() is None, (
                f"nats-server {self.name} exited: {self.log()}"
            )
            try:
                answer = httpx.get(f"http://127.0.0.1:{self.http_port}/healthz", timeout=1, trust_env=False)
                if answer.status_code == 200:
                    return
                last = answer.text
            except httpx.HTTPError as exc:
                last = str(exc)
            time.sleep(0.05)
        raise AssertionError(f"nats-server {self.name} not healthy within {timeout}s: {last}\n{self.log()}")

    def log(self) -> str:
        path = self.root / "nats.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def stop(self, kill: bool = False) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        if kill:
            self.process.kill()
        else:
            self.process.terminate()
        self.process.wait(timeout=15)


def cluster(root: Path, size: int = 3) -> list[NatsServer]:
    """``size`` servers routed to one another (not started)."""
    servers = [NatsServer(root / f"n{i + 1}", name=f"n{i + 1}", routes=[]) for i in range(size)]
    for server in servers:
        server.routes = [other.cluster_port for other in servers if other is not server]  # type: ignore[misc]
    return servers
