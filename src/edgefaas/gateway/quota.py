"""Quotas: at most N calls per license per fixed window; past it 429, and nothing billed.

Counting happens at admission, in memory, so concurrent calls cannot slip past the
limit between check and bill: a call takes its slot before it runs and gives it back if
it never reached the function (not billed). The count for a window starts from the
ledger, so a restarted gateway remembers what was already used. (Several gateway
replicas would need this counter in the shared store; one gateway per site does not.)
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .errors import ApiError
from .ledger import Ledger
from .licensing.authority import Caller


@dataclass
class Ticket:
    """A call's slot in its license's window; release() it if the call was not billed."""

    gate: QuotaGate | None
    key: tuple[str, int]
    window_start: float
    released: bool = False

    def release(self) -> None:
        if self.gate is not None and not self.released:
            self.released = True
            self.gate._give_back(self.key)


class QuotaGate:
    def __init__(self, ledger: Ledger, clock: Callable[[], float] = time.time) -> None:
        self._ledger = ledger
        self._clock = clock
        self._used: dict[tuple[str, int], int] = {}
        self._lock = threading.Lock()

    def admit(self, caller: Caller | None) -> Ticket:
        """A slot for this call, or ApiError(429) with Retry-After when the window is used up."""
        now = self._clock()
        if caller is None or caller.plan.quota_calls is None:
            return Ticket(None, ("", 0), now)
        period = caller.plan.quota_period_s
        window = int(now // period)
        key = (caller.license.id, window)
        with self._lock:
            used = self._used.get(key)
            if used is None:
                used = self._ledger.count_since(caller.license.id, window * period)
                # Forget this license's earlier windows: they can never be asked about again.
                for old in [k for k in self._used if k[0] == key[0] and k[1] < window]:
                    del self._used[old]
            if used >= caller.plan.quota_calls:
                self._used[key] = used
                retry = math.ceil((window + 1) * period - now)
                raise ApiError(
                    429,
                    f"quota of {caller.plan.quota_calls} calls per {period}s used up for license "
                    f"{caller.license.id}",
                    {"Retry-After": str(max(retry, 1))},
                )
            self._used[key] = used + 1
        return Ticket(self, key, now)

    def _give_back(self, key: tuple[str, int]) -> None:
        with self._lock:
            if self._used.get(key, 0) > 0:
                self._used[key] -= 1
