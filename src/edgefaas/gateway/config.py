"""The gateway's settings, in one place (the CLI fills them from options and environment)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal


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
    async_workers: int = 8
    async_queue_size: int = 1000
    # "normal": a ledger entry survives the gateway being killed (the OS has it);
    # "full": it also survives a power cut (one fsync per commit group).
    ledger_sync: Literal["normal", "full"] = "normal"
    # None: <data_dir>/gateway.db (SQLite); postgresql://... is shared by every gateway (storage.py).
    storage_url: str | None = None
    # How long a caller's X-Call-Id (an idempotency key) replays its first answer, in seconds;
    # after it the key starts a new, newly billed call.
    idempotency_window: float = 600.0
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

    @property
    def admin_password_file(self) -> Path:
        return self.data_dir / "admin-password"

    @property
    def license_key_file(self) -> Path:
        return self.data_dir / "license-key"
