"""Idempotent calls: a caller's ``X-Call-Id`` is a key that runs a call once and bills it once.

A key belongs to its payer (a license id, or the public payer), so two callers' keys never
meet. The first call with a key claims it: a row (payer, key) -> a fresh call id, state
``running``, held under a lease a little longer than the upstream timeout. When the function's
answer is billed, the same transaction stores that answer (status, headers, body) and marks
the row ``done``. A retry within the window, through any gateway sharing the database:

- ``done``: the first answer is replayed (``X-Idempotent-Replay: true``), not billed again;
  an answer larger than ``idempotency_max_answer_bytes`` was billed but not kept: 409 says so;
- ``running`` with a live lease: waits for it (at most the upstream timeout), then replays,
  or answers 409 with Retry-After;
- ``running`` with an expired lease (its gateway died): takes it over with the same call id,
  so the ledger's primary key still bills it once.

A call that was never billed (the function unreached, a 502/503/504) gives its key back, so a
retry runs it. After the window the key starts a new call with a new call id: a key reused
later is a new call and is paid again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from .errors import ApiError

MAX_KEY_LENGTH = 128
REPLAY_HEADER = "X-Idempotent-Replay"


@dataclass(frozen=True)
class StoredAnswer:
    """An answer as relayed to the caller; ``body`` None when it was over the size limit."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes | None
    body_size: int

    def headers_json(self) -> str:
        return json.dumps([[k.decode("latin-1"), v.decode("latin-1")] for k, v in self.headers])

    @staticmethod
    def headers_from_json(text: str) -> list[tuple[bytes, bytes]]:
        return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in json.loads(text)]


@dataclass(frozen=True)
class Hold:
    """A claimed key: the call id to run under, and who holds it (gives back only its own claim)."""

    payer: str
    key: str
    call_id: str
    holder: str


@dataclass(frozen=True)
class Claim:
    outcome: Literal["run", "replay", "wait"]
    call_id: str
    hold: Hold | None = None  # for "run"
    answer: StoredAnswer | None = None  # for "replay"
    retry_after: float = 0.0  # for "wait": seconds left on the lease


def check_key(key: str) -> str:
    """The key as given, or ApiError(400) naming what is wrong with it."""
    if not key or len(key) > MAX_KEY_LENGTH or not key.isascii() or not key.isprintable() or " " in key:
        raise ApiError(
            400,
            f"X-Call-Id (the idempotency key) must be 1 to {MAX_KEY_LENGTH} printable ASCII characters "
            "without spaces",
        )
    return key


def too_large_to_replay(answer: StoredAnswer, limit: int) -> ApiError:
    return ApiError(
        409,
        f"this X-Call-Id's call already ran and was billed once, but its answer ({answer.body_size} bytes) "
        f"was over the {limit}-byte limit the gateway keeps for replays: use a new X-Call-Id to call again",
    )
