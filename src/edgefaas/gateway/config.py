"""The gateway's settings, in one place (the CLI fills them from options and environment)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .sites import SiteSettings


@dataclass(frozen=True)
class GatewaySettings:
    data_dir: Path
    # None: read <data_dir>/admin-password, or create it with a random one.
    admin_password: str | None = None
    # Largest request body (function calls and admin bodies alike); larger -> 413.
    max_body_bytes: int = 10 * 1024 * 1024
    # How long the gateway waits for a function's answer (the runtime's exec_timeout should be shorter).
    upstream_timeout: float = 60.0
    # How long a call waits for a function with no ready replica (restarting, rolling) before 503.
    unavailable_wait: float = 5.0
    # Seconds between re-reads of the functions from the backend (other gateways change them too).
    registry_refresh: float = 5.0
    async_workers: int = 8
    # At most this many queued calls (waiting and running); past it an async call gets 429.
    async_queue_size: int = 1000
    # None: async calls queue in this process (lost on restart). Else NATS servers,
    # comma-separated ("nats://10.0.0.1:4222,nats://10.0.0.2:4222"): a JetStream stream every
    # gateway shares, so a queued call survives any gateway and runs on whichever is alive.
    nats_url: str | None = None
    # Copies of the stream in a NATS cluster (1, or 3 to survive a server's loss; at most the servers).
    nats_replicas: int = 1
    nats_stream: str = "EDGEFAAS_ASYNC"
    # A gateway that stops acking a call this long (it died) loses it to another gateway.
    async_ack_wait: float = 30.0
    # Deliveries of one queued call at most (a call that kills every gateway it runs on stops).
    async_max_deliver: int = 5
    # A second enqueue with the same (payer, X-Call-Id) this soon is not queued again.
    async_dedup_window: float = 120.0
    # Callbacks: tries in all, the back-off before the second (doubling, capped), one try's timeout.
    callback_attempts: int = 5
    callback_backoff: float = 1.0
    callback_backoff_max: float = 30.0
    callback_timeout: float = 10.0
    # "normal": a ledger entry survives the gateway being killed (the OS has it);
    # "full": it also survives a power cut (one fsync per commit group).
    ledger_sync: Literal["normal", "full"] = "normal"
    # None: <data_dir>/gateway.db (SQLite); postgresql://... is shared by every gateway (storage.py).
    storage_url: str | None = None
    # How long a caller's X-Call-Id (an idempotency key) replays its first answer, in seconds;
    # after it the key starts a new, newly billed call.
    idempotency_window: float = 600.0
    # Seconds a running call's key stays claimed without a renewal (its gateway renews it every
    # third): a retry after its gateway died runs after at most this long.
    idempotency_lease: float = 6.0
    # Largest answer body kept for replays; a larger one is billed once and a replay is 409.
    idempotency_max_answer_bytes: int = 1024 * 1024
    # None: read <data_dir>/license-key, or create it. Every gateway replica must share it.
    license_key: bytes | None = None
    # "parsec": license tokens signed by an ECDSA key held in the Parsec service at
    # parsec_endpoint (None: PARSEC_SERVICE_ENDPOINT or Parsec's default socket).
    license_signer: Literal["hmac", "parsec"] = "hmac"
    parsec_endpoint: str | None = None
    # The switch's WAN plan (edgefaas.deploy.wan): functions served at their own addresses.
    # None, or no file there: no WAN.
    wan_plan: Path | None = None
    # This gateway's part among cloud and edge sites (sites.py); None: a site alone.
    sites: SiteSettings | None = None
    # /metrics behind the admin's credentials (Prometheus then scrapes with basic auth); off,
    # it answers anyone, as OpenFaaS's gateway does.
    metrics_auth: bool = False
    # The site's Prometheus (deploys/monitoring.py), read by the console's live plots through
    # /system/plots; None: no plots. prometheus_ca verifies an https:// one.
    prometheus_url: str | None = None
    prometheus_ca: Path | None = None

    @property
    def admin_password_file(self) -> Path:
        return self.data_dir / "admin-password"

    @property
    def license_key_file(self) -> Path:
        return self.data_dir / "license-key"
