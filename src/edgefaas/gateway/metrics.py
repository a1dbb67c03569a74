"""Prometheus metrics under OpenFaaS's names, so existing dashboards and alerts work.

As OpenFaaS's gateway names them (its metrics package), ``function_name`` being
``<name>.<namespace>``:

- gateway_function_invocation_total{function_name, code}: counter of finished calls
- gateway_functions_seconds{function_name, code}: histogram, Prometheus's default buckets
- gateway_function_invocation_started{function_name}: counter of calls begun
- gateway_service_count{function_name}: gauge of replicas

and the async queue's own, which OpenFaaS's gateway has none of (its queue-worker is apart):

- edgefaas_async_queue_depth: gauge of queued calls not yet taken by a worker
- edgefaas_async_running: gauge of queued calls taken by a worker, not yet finished
- edgefaas_async_calls_total{event}: counter; queued, completed (the function answered),
  failed (it did not: not found, unreachable, timed out), redelivered (taken again after a
  gateway died or stopped, by NATS's delivery count), duplicate (an enqueue of a call id already queued)
- edgefaas_async_callbacks_total{outcome}: counter; delivered, refused (4xx), gave_up
- edgefaas_storage_errors_total{reason}: counter of failed database operations; unreachable,
  disk_full (no space left where the database writes), failed (another I/O error)

and billing's and licensing's:

- edgefaas_billed_calls_total{license}: counter of calls this gateway billed, by payer (a
  license id, or "public" for anonymous calls of public functions: metered, not charged)
- edgefaas_billed_amount_total{license}: counter of what those calls cost, in currency units
- edgefaas_license_refusals_total{reason}: counter of calls refused before they ran;
  no_license (401), token_refused (403: forged, edited, unknown or revoked), quota (429)
- edgefaas_licenses{state}: gauge of the site's licenses; active, revoked

The depth gauges count the whole queue (every gateway's), the counters this gateway's work.

Only functions that exist get series (a caller probing random names must not be able to
grow the metrics without bound). Written by hand: the text format is simple and the
gateway's hot path then costs two dict updates.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Mapping
from typing import Literal

from .ledger import MICROS

# The Go Prometheus client's default buckets (prometheus.DefBuckets): OpenFaaS's gateway declares
# gateway_functions_seconds without buckets of its own, so these are its buckets.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

AsyncEvent = Literal["queued", "completed", "failed", "redelivered", "duplicate"]
ASYNC_EVENTS: tuple[AsyncEvent, ...] = ("queued", "completed", "failed", "redelivered", "duplicate")
CALLBACK_OUTCOMES = ("delivered", "refused", "gave_up")
Refusal = Literal["no_license", "token_refused", "quota"]
REFUSALS: tuple[Refusal, ...] = ("no_license", "token_refused", "quota")


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class _Histogram:
    __slots__ = ("buckets", "count", "sum")

    def __init__(self) -> None:
        self.buckets = [0] * len(BUCKETS)
        self.count = 0
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        index = bisect_left(BUCKETS, seconds)
        if index < len(BUCKETS):
            self.buckets[index] += 1  # non-cumulative here; rendering accumulates
        self.count += 1
        self.sum += seconds


class Metrics:
    """Counted by plain function name; shown as ``<name>.<namespace>``, as OpenFaaS labels them."""

    def __init__(self, namespace: str = "") -> None:
        self.namespace = namespace
        self._started: dict[str, int] = defaultdict(int)
        self._invocations: dict[tuple[str, int], int] = defaultdict(int)
        self._seconds: dict[tuple[str, int], _Histogram] = defaultdict(_Histogram)
        self.async_events: dict[str, int] = dict.fromkeys(ASYNC_EVENTS, 0)
        self.callbacks: dict[str, int] = dict.fromkeys(CALLBACK_OUTCOMES, 0)
        self._billed: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # payer: [calls, micros]
        self.refusals: dict[str, int] = dict.fromkeys(REFUSALS, 0)

    def started(self, function: str) -> None:
        self._started[function] += 1

    def _name(self, function: str) -> str:
        return _label(f"{function}.{self.namespace}" if self.namespace else function)

    def observe(self, function: str, code: int, seconds: float) -> None:
        self._invocations[(function, code)] += 1
        self._seconds[(function, code)].observe(seconds)

    def async_event(self, event: AsyncEvent) -> None:
        self.async_events[event] += 1

    def callback(self, outcome: str) -> None:
        self.callbacks[outcome] += 1

    def billed(self, payer: str, amount_micros: int) -> None:
        """A call billed to `payer` (a license id, created by an admin: bounded)."""
        tally = self._billed[payer]
        tally[0] += 1
        tally[1] += amount_micros

    def refused(self, reason: Refusal) -> None:
        self.refusals[reason] += 1

    def invocation_count(self, function: str) -> int:
        return sum(n for (name, _), n in self._invocations.items() if name == function)

    def render(
        self,
        replicas: Mapping[str, int],
        async_depth: tuple[int, int] | None = None,
        storage_errors: Mapping[str, int] | None = None,
        licenses: Mapping[str, int] | None = None,
    ) -> str:
        """The text format; ``async_depth`` is (waiting, running), None when the queue cannot tell;
        ``storage_errors``: failed database operations by reason; ``licenses``: the site's
        licenses by state, None when the store cannot tell."""
        lines = [
            "# HELP gateway_function_invocation_total Function invocations, by function and HTTP status.",
            "# TYPE gateway_function_invocation_total counter",
        ]
        for (name, code), count in sorted(self._invocations.items()):
            labels = f'function_name="{self._name(name)}",code="{code}"'
            lines.append(f"gateway_function_invocation_total{{{labels}}} {count}")
        lines += [
            "# HELP gateway_function_invocation_started Function invocations begun, by function.",
            "# TYPE gateway_function_invocation_started counter",
        ]
        for name, count in sorted(self._started.items()):
            lines.append(f'gateway_function_invocation_started{{function_name="{self._name(name)}"}} {count}')
        lines += [
            "# HELP gateway_functions_seconds Seconds each call took as the gateway saw it.",
            "# TYPE gateway_functions_seconds histogram",
        ]
        for (name, code), hist in sorted(self._seconds.items()):
            labels = f'function_name="{self._name(name)}",code="{code}"'
            cumulative = 0
            for bound, count in zip(BUCKETS, hist.buckets, strict=True):
                cumulative += count
                # As Go prints them ("1", not "1.0"), so a query naming le="1" matches.
                lines.append(f'gateway_functions_seconds_bucket{{{labels},le="{bound:g}"}} {cumulative}')
            lines.append(f'gateway_functions_seconds_bucket{{{labels},le="+Inf"}} {hist.count}')
            lines.append(f"gateway_functions_seconds_sum{{{labels}}} {hist.sum:.6f}")
            lines.append(f"gateway_functions_seconds_count{{{labels}}} {hist.count}")
        lines += [
            "# HELP gateway_service_count Replicas of each function.",
            "# TYPE gateway_service_count gauge",
        ]
        for name, count in sorted(replicas.items()):
            lines.append(f'gateway_service_count{{function_name="{self._name(name)}"}} {count}')
        if async_depth is not None:
            lines += [
                "# HELP edgefaas_async_queue_depth Queued calls waiting for a worker (all gateways).",
                "# TYPE edgefaas_async_queue_depth gauge",
                f"edgefaas_async_queue_depth {async_depth[0]}",
                "# HELP edgefaas_async_running Queued calls a worker is running (all gateways).",
                "# TYPE edgefaas_async_running gauge",
                f"edgefaas_async_running {async_depth[1]}",
            ]
        lines += [
            "# HELP edgefaas_async_calls_total Async calls on this gateway, by event.",
            "# TYPE edgefaas_async_calls_total counter",
        ]
        lines += [f'edgefaas_async_calls_total{{event="{e}"}} {n}' for e, n in self.async_events.items()]
        lines += [
            "# HELP edgefaas_async_callbacks_total Callbacks of async calls on this gateway, by outcome.",
            "# TYPE edgefaas_async_callbacks_total counter",
        ]
        lines += [f'edgefaas_async_callbacks_total{{outcome="{o}"}} {n}' for o, n in self.callbacks.items()]
        if storage_errors is not None:
            lines += [
                "# HELP edgefaas_storage_errors_total Failed operations on the gateway database, by reason.",
                "# TYPE edgefaas_storage_errors_total counter",
            ]
            lines += [f'edgefaas_storage_errors_total{{reason="{r}"}} {n}' for r, n in storage_errors.items()]
        lines += [
            "# HELP edgefaas_billed_calls_total Calls this gateway billed, by license.",
            "# TYPE edgefaas_billed_calls_total counter",
        ]
        billed = sorted(self._billed.items())
        lines += [f'edgefaas_billed_calls_total{{license="{_label(p)}"}} {calls}' for p, (calls, _) in billed]
        lines += [
            "# HELP edgefaas_billed_amount_total What the calls this gateway billed cost, by license.",
            "# TYPE edgefaas_billed_amount_total counter",
        ]
        for payer, (_, micros) in billed:
            lines.append(f'edgefaas_billed_amount_total{{license="{_label(payer)}"}} {micros / MICROS:.6f}')
        lines += [
            "# HELP edgefaas_license_refusals_total Calls refused before they ran, by reason.",
            "# TYPE edgefaas_license_refusals_total counter",
        ]
        lines += [f'edgefaas_license_refusals_total{{reason="{r}"}} {n}' for r, n in self.refusals.items()]
        if licenses is not None:
            lines += [
                "# HELP edgefaas_licenses The site's licenses, by state.",
                "# TYPE edgefaas_licenses gauge",
            ]
            lines += [f'edgefaas_licenses{{state="{state}"}} {n}' for state, n in licenses.items()]
        return "\n".join(lines) + "\n"
