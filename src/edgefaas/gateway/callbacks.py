"""Callbacks of queued calls: which URLs a caller may give, and delivering the answer there.

A callback is retried with exponential back-off up to a limit: the caller's endpoint being
down for a moment must not lose an answer that was already paid for. What ends the tries:
a 2xx (delivered) or a 4xx other than 408/429 (the receiver refuses it; trying again would
get the same answer). 5xx, 408, 429 and connection errors are tried again.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
from dataclasses import dataclass
from typing import Literal

import httpx

log = logging.getLogger("edgefaas.gateway.callbacks")

MAX_CALLBACK_URL = 2048
_RETRIED_4XX = frozenset({408, 429})


def check_callback_url(url: str) -> str:
    """``url`` if it is an absolute http(s) URL a callback can go to, else ValueError naming why."""
    if len(url) > MAX_CALLBACK_URL:
        raise ValueError(f"is over {MAX_CALLBACK_URL} characters")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise ValueError("contains spaces or control characters")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"does not parse: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError("must be an absolute http:// or https:// URL")
    if not parts.hostname:
        raise ValueError("names no host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry credentials (user:password@): they would be stored with the call")
    if parts.fragment:
        raise ValueError("must not have a #fragment")
    if port == 0:
        raise ValueError("names port 0")
    return url


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    backoff: float = 1.0  # seconds before the second attempt; doubles each time
    backoff_max: float = 30.0
    timeout: float = 10.0  # for one attempt

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return min(self.backoff * 2 ** (attempt - 1), self.backoff_max)


Outcome = Literal["delivered", "refused", "gave_up"]


async def deliver(
    client: httpx.AsyncClient,
    url: str,
    body: bytes,
    headers: list[tuple[str | bytes, str | bytes]],
    policy: RetryPolicy,
    call_id: str,
) -> Outcome:
    """POST the answer of call ``call_id`` to ``url`` until it is taken, refused, or the tries run out."""
    for attempt in range(1, policy.attempts + 1):
        try:
            response = await client.post(url, content=body, headers=headers, timeout=policy.timeout)
        except httpx.HTTPError as exc:
            problem = f"{type(exc).__name__}: {exc}"
        else:
            status = response.status_code
            if 200 <= status < 300:
                log.info("callback for async call %s: attempt %d delivered (%d)", call_id, attempt, status)
                return "delivered"
            if 400 <= status < 500 and status not in _RETRIED_4XX:
                log.warning(
                    "callback for async call %s: attempt %d refused by %s with %d; not retried",
                    call_id,
                    attempt,
                    url,
                    status,
                )
                return "refused"
            problem = f"status {status}"
        if attempt == policy.attempts:
            log.warning(
                "callback for async call %s: attempt %d of %d to %s failed (%s); giving up",
                call_id,
                attempt,
                policy.attempts,
                url,
                problem,
            )
            break
        delay = policy.delay(attempt)
        log.warning(
            "callback for async call %s: attempt %d of %d to %s failed (%s); next in %.1fs",
            call_id,
            attempt,
            policy.attempts,
            url,
            problem,
            delay,
        )
        await asyncio.sleep(delay)
    return "gave_up"
