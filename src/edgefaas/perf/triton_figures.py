"""The Triton bench's figures from locust samples, and the targets they are judged by."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from edgefaas.perf.locust_run import LatencyFigures
from edgefaas.perf.perf_analyzer import PerfRow
from edgefaas.perf.stats import percentile

TARGET_FPS = 20.0
FPS_CONCURRENCY = (1, 2)
TARGET_P50_RATIO = 1.15
SAME_SERVER_MIN_CALLS = 20  # fewer calls on the chosen server: judge the ratio over all calls
MAX_ERROR_SHARE = 0.01  # more failed calls than this in a run: the figures are not trusted


@dataclass
class Figures(LatencyFigures):
    served_by: dict[str, int] = field(default_factory=dict)
    # function path only: p50 of the function's own Triton round trip, and of the rest of the path
    inference_p50_ms: float = math.nan
    outside_inference_p50_ms: float = math.nan


def summarize(runs: Iterable[dict[str, Any]], warmup: float, server: str | None = None) -> Figures:
    """Figures over runs' samples, each run's first `warmup` seconds left out.

    With `server`, latencies are only those of calls served by it (throughput stays over all
    calls: a closed loop's rate is not the rate of a subset).
    """
    times: list[float] = []
    inference: list[float] = []
    outside: list[float] = []
    calls = errors = 0
    seconds = 0.0
    served: Counter = Counter()
    for run in runs:
        kept = [s for s in run.get("samples", []) if s["t"] >= warmup]
        if not kept:
            continue
        seconds += max(s["t"] for s in kept) - warmup
        for sample in kept:
            if not sample["ok"]:
                errors += 1
                continue
            calls += 1
            by = (sample.get("served_by") or "").rstrip("/")
            if by:
                served[by] += 1
            if server is None or by == server.rstrip("/"):
                times.append(sample["ms"])
                if isinstance(sample.get("inference_ms"), int | float):
                    inference.append(sample["inference_ms"])
                    outside.append(sample["ms"] - sample["inference_ms"])
    return Figures.of(
        times,
        calls,
        errors,
        seconds,
        served_by=dict(served.most_common()),
        inference_p50_ms=round(percentile(sorted(inference), 50), 3),
        outside_inference_p50_ms=round(percentile(sorted(outside), 50), 3),
    )


def failure_problem(label: str, figures: Figures, limit: float = MAX_ERROR_SHARE) -> str | None:
    """A sentence when more than `limit` of the calls behind `figures` failed, else None."""
    total = figures.calls + figures.errors
    if total == 0:
        return f"{label}: no call finished"
    if figures.errors / total > limit:
        return f"{label}: {figures.errors} of {total} calls failed ({figures.errors / total:.1%})"
    return None


# -- targets --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    name: str
    value: float | None
    target: float
    at_least: bool  # True: value >= target passes; False: value <= target passes
    source: str = ""

    @property
    def ok(self) -> bool:
        if self.value is None or math.isnan(self.value):
            return False
        return self.value >= self.target if self.at_least else self.value <= self.target

    @property
    def label(self) -> str:
        return "PASS" if self.ok else "FAIL"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def ratio(numerator: float, denominator: float) -> float | None:
    """numerator / denominator; None when either is missing, NaN, or the denominator not positive."""
    if any(v is None or math.isnan(v) for v in (numerator, denominator)) or denominator <= 0:
        return None
    return numerator / denominator


def fps_verdicts(
    perf_rows: Sequence[PerfRow], direct: dict[int, Figures], target: float = TARGET_FPS
) -> list[Verdict]:
    """>= target fps at each of FPS_CONCURRENCY: perf_analyzer's figure, else locust's direct rps."""
    by_level = {row.concurrency: row for row in perf_rows}
    verdicts = []
    for level in FPS_CONCURRENCY:
        if level in by_level:
            value, source = by_level[level].throughput, "perf_analyzer"
        elif level in direct and direct[level].calls:
            value, source = direct[level].rps, "locust TritonUser"
        else:
            value, source = None, "not measured"
        verdicts.append(Verdict(f"fps at concurrency {level}", value, target, True, source))
    return verdicts


def ratio_verdict(
    users: int,
    direct: Figures,
    function: Figures,
    same_server: Figures,
    server_url: str,
    limit: float = TARGET_P50_RATIO,
) -> Verdict:
    """function/direct p50 <= limit.

    Judged over the function calls that `server_url` (the direct side's server) ran when there
    are at least SAME_SERVER_MIN_CALLS of them, else over all the function's calls: the
    function's offloader may send calls elsewhere, and only same-server calls compare alike.
    """
    on_server = function.served_by.get(server_url.rstrip("/"), 0)
    if on_server >= SAME_SERVER_MIN_CALLS:
        judged, source = same_server, f"the {on_server} function calls the direct server ran"
    else:
        judged, source = function, "all function calls"
    name = f"function/direct p50 at {users} users"
    return Verdict(name, ratio(judged.p50_ms, direct.p50_ms), limit, False, source)
