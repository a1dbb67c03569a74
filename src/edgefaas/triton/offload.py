"""Offloading (the second seed's use case): run inference on this device's Triton or another's.

Each request goes to the server expected to answer soonest: the moving average of the
latency this process measured on it (network, queueing and inference, all in one
figure), scaled by the requests this process already has in flight there. The device's
own server wins ties within `local_margin`, because staying local spares the network.
Every `explore_every`-th request goes to the server measured longest ago, so a server
that got faster (or came back) is noticed; a server that fails is skipped for
`down_for` seconds and the request is retried once elsewhere. Each answer says which
server ran it and why it was chosen.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from edgefaas.triton.client import Face, FaceExpressionClient, InferenceError


@dataclass
class _Server:
    url: str
    client: FaceExpressionClient
    latency_ms: float | None = None
    measured_at: float = float("-inf")
    in_flight: int = 0
    down_until: float = float("-inf")
    calls: int = 0
    failures: int = 0


@dataclass(frozen=True)
class Decision:
    url: str
    reason: str


@dataclass
class Offloader:
    urls: Sequence[str]
    local_url: str | None = None
    explore_every: int = 20
    smoothing: float = 0.3
    local_margin: float = 0.1
    down_for: float = 30.0
    clock: Callable[[], float] = time.monotonic
    client_factory: Callable[[str], FaceExpressionClient] = FaceExpressionClient
    _servers: dict[str, _Server] = field(init=False)
    _count: int = field(init=False, default=0)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        urls = list(dict.fromkeys(self.urls))
        if self.local_url and self.local_url not in urls:
            urls.insert(0, self.local_url)
        if not urls:
            raise ValueError("no Triton server to send inference to (set TRITON_URLS)")
        self._servers = {url: _Server(url, self.client_factory(url)) for url in urls}

    def choose(self, exclude: frozenset[str] = frozenset()) -> Decision:
        """The server for the next request, and why."""
        now = self.clock()
        with self._lock:
            self._count += 1
            up = [s for s in self._servers.values() if s.down_until <= now and s.url not in exclude]
            if not up:  # every server failed lately: try the one that failed longest ago
                up = sorted(
                    (s for s in self._servers.values() if s.url not in exclude), key=lambda s: s.down_until
                )[:1]
                if not up:
                    raise InferenceError("no Triton server left to try")
                return self._take(up[0], "every server failed lately; retrying the oldest failure")
            local = self._servers.get(self.local_url or "")
            if local in up and local.latency_ms is None:
                return self._take(local, "local server, not measured yet")
            unmeasured = [s for s in up if s.latency_ms is None]
            if unmeasured:
                return self._take(unmeasured[0], "not measured yet")
            if len(up) > 1 and self._count % self.explore_every == 0:
                return self._take(min(up, key=lambda s: s.measured_at), "re-measuring the stalest server")
            best = min(up, key=self._expected)
            if (
                local in up
                and local is not best
                and self._expected(local) <= self._expected(best) * (1 + self.local_margin)
            ):
                best = local
            reason = "local server, fastest expected" if best is local else "fastest expected"
            return self._take(best, f"{reason} ({self._expected(best):.1f} ms)")

    def _expected(self, server: _Server) -> float:
        return (server.latency_ms or 0.0) * (1 + server.in_flight)

    def _take(self, server: _Server, reason: str) -> Decision:
        server.in_flight += 1
        return Decision(server.url, reason)

    def record(self, url: str, latency_ms: float | None) -> None:
        """A finished request: its latency, or None when it failed."""
        now = self.clock()
        with self._lock:
            server = self._servers[url]
            server.in_flight = max(0, server.in_flight - 1)
            server.calls += 1
            if latency_ms is None:
                server.failures += 1
                server.down_until = now + self.down_for
                return
            if server.latency_ms is None:
                server.latency_ms = latency_ms
            else:
                server.latency_ms += self.smoothing * (latency_ms - server.latency_ms)
            server.measured_at = now

    def recognize(self, image: np.ndarray) -> tuple[list[Face], dict]:
        """Faces in `image`, from the server chosen; retried once elsewhere if that one fails."""
        tried: set[str] = set()
        errors = []
        for _ in range(2):
            try:
                decision = self.choose(frozenset(tried))
            except InferenceError:
                break
            tried.add(decision.url)
            try:
                faces, ms = self._servers[decision.url].client.recognize(image)
            except InferenceError as exc:
                self.record(decision.url, None)
                errors.append(str(exc))
                continue
            self.record(decision.url, ms)
            return faces, {"served_by": decision.url, "reason": decision.reason, "inference_ms": round(ms, 2)}
        raise InferenceError("; ".join(errors) or "no Triton server could be tried")

    def snapshot(self) -> list[dict]:
        """What this process knows of each server (for the function's status answer)."""
        with self._lock:
            return [
                {
                    "url": s.url,
                    "local": s.url == self.local_url,
                    "latency_ms": None if s.latency_ms is None else round(s.latency_ms, 2),
                    "in_flight": s.in_flight,
                    "calls": s.calls,
                    "failures": s.failures,
                    "down": s.down_until > self.clock(),
                }
                for s in self._servers.values()
            ]
