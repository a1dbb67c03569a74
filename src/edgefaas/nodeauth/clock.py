"""How far a node's clock is from the authentication server's, measured in the challenge.

The agent writes its wall-clock time into its answer; the server notes its own time just
before sending the challenge and just after the answer came. The agent's moment lies in
that window, so the skew is its time minus the window's middle, give or take half the
round trip (which `ClockReading.error_s` says). The agent's time is not signed: a lying
agent can only misreport its own skew, and no decision depends on it (the server decides
certificate validity by its own clock).

A skew beyond the tolerance opens an episode: reported once when it starts (an Event,
an annotation, a log line) and once when it ends, not on every review.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

# Past this, a node's clock is reported. Far above what the measurement itself can be off
# by (half the agent's answer time, under its 3 s timeout), and well under the 5 minutes
# node certificates are backdated by, so it shows before anything on the node that trusts
# its own clock (TLS checks, log correlation, Prometheus sample times) is misled.
DEFAULT_TOLERANCE_S = 30.0


@dataclass(frozen=True)
class ClockReading:
    skew_s: float  # the node's clock minus the server's: positive, the node is ahead
    error_s: float  # half the round trip: the skew is known to within this


def reading(agent_time: Any, sent: float, received: float) -> ClockReading | None:
    """The skew from an answer's `time` (seconds since the epoch); None if it sent none usable."""
    if isinstance(agent_time, bool) or not isinstance(agent_time, int | float):
        return None
    if not math.isfinite(agent_time):
        return None
    middle = (sent + received) / 2
    return ClockReading(float(agent_time) - middle, max(0.0, (received - sent) / 2))


def beyond(reading: ClockReading, tolerance_s: float) -> bool:
    """Whether the clock is surely off by more than the tolerance (not just maybe, by the error)."""
    return abs(reading.skew_s) - reading.error_s > tolerance_s


def describe(reading: ClockReading, tolerance_s: float) -> str:
    side = "ahead of" if reading.skew_s >= 0 else "behind"
    return (
        f"clock {abs(reading.skew_s):.1f} s {side} the authentication server's "
        f"(±{reading.error_s:.2f} s; tolerance {tolerance_s:g} s)"
    )
