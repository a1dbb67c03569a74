"""Where a call runs, between an edge site and its cloud, and every answer labelled with it.

An edge runs a call itself unless the function is not deployed there (``not_deployed``) or the
edge is past the function's objective: as many of its calls running here as ``max_inflight``
(``queue_depth``), or its recent latency here above ``max_latency_ms`` (``latency``). Those go
to the cloud's ``/site-function/<name>``, with the edge's site credential and the call's id,
and are billed here, at the site the caller entered: the cloud runs a forwarded call once per
call id and bills nothing for it. An overflow whose cloud cannot be reached runs here after
all (``cloud_unreachable``); a function deployed nowhere here is then 503.

An answer from the cloud is taken only if it is the cloud's answer to this call of this
function: its ``X-EdgeFaaS-Site`` the cloud's name, ``X-Call-Id`` the id sent and
``X-EdgeFaaS-Function`` the function called. Anything else is 502 and is not billed.

Every answer says where it ran (``X-EdgeFaaS-Site``) and why (``X-EdgeFaaS-Offload-Reason``:
``local`` or one of the above; ``forwarded`` on the cloud's side of an offloaded call);
``edgefaas_site_calls_total{function_name, site, reason}`` counts them.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
from starlette.responses import Response

from .errors import ApiError
from .sites import FUNCTION_HEADER, REACHED_HEADER, REASON_HEADER, SITE_HEADER, SiteSettings

NOT_DEPLOYED = "not_deployed"
QUEUE_DEPTH = "queue_depth"
LATENCY = "latency"
CLOUD_UNREACHABLE = "cloud_unreachable"
LOCAL = "local"
FORWARDED = "forwarded"
# Latency is a moving average of local calls; while it is over the objective one call in this
# many seconds still runs here, or the average could never come down again.
LATENCY_PROBE_S = 1.0
_EWMA = 0.3

_LABELS = {h.lower().encode() for h in (SITE_HEADER, REASON_HEADER, FUNCTION_HEADER, REACHED_HEADER)}
_SITE, _REASON = SITE_HEADER.lower().encode(), REASON_HEADER.lower().encode()
_FUNCTION, _REACHED = FUNCTION_HEADER.lower().encode(), REACHED_HEADER.lower().encode()
# Never sent on to the cloud: the caller's credential is for this site (the edge checked it).
_NOT_FORWARDED = {b"authorization", b"x-call-id", b"cookie"}


class CloudUnreachable(Exception):
    """No connection to the cloud: it never saw the call, so the call may run elsewhere."""


@dataclass(frozen=True)
class CloudAnswer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    duration_us: int


class Placement:
    """The edge's choice of site per call, its offloads, and the labels of every answer."""

    def __init__(
        self,
        settings: SiteSettings | None,
        client: httpx.AsyncClient | None = None,
        reachable: Callable[[], bool | None] = lambda: None,
    ) -> None:
        self.settings = settings
        self.client = client
        # Whether the last catalogue round got an answer (edgefaas.gateway.catalogue_follower):
        # False while a WAN cut lasts. A cut that drops packets silently would hold each offload on
        # a kept-alive connection until the call's timeout; a round knows it within seconds.
        self._reachable = reachable
        self._inflight: dict[str, int] = defaultdict(int)
        self._latency_ms: dict[str, float] = {}
        self._last_local: dict[str, float] = {}
        self.calls: dict[tuple[str, str, str], int] = defaultdict(int)

    @property
    def offloads(self) -> bool:
        return self.settings is not None and self.settings.is_edge and self.client is not None

    # -- the choice -------------------------------------------------------------------------

    def overflow(self, name: str) -> str | None:
        """Why a call of ``name`` (deployed here) goes to the cloud now, or None to run it here."""
        if not self.offloads:
            return None
        assert self.settings is not None
        objective = self.settings.objectives.get(name)
        if objective is None:
            return None
        if objective.max_inflight is not None and self._inflight[name] >= objective.max_inflight:
            return QUEUE_DEPTH
        if objective.max_latency_ms is not None:
            recent = self._latency_ms.get(name)
            probe_due = time.monotonic() - self._last_local.get(name, 0.0) >= LATENCY_PROBE_S
            if recent is not None and recent > objective.max_latency_ms and not probe_due:
                return LATENCY
        return None

    @contextlib.contextmanager
    def here(self, name: str) -> Iterator[None]:
        """Around a call run at this site: counted while it runs, its latency remembered."""
        began = time.monotonic()
        self._inflight[name] += 1
        self._last_local[name] = began
        try:
            yield
        finally:
            self._inflight[name] -= 1
            took = (time.monotonic() - began) * 1000
            before = self._latency_ms.get(name)
            self._latency_ms[name] = took if before is None else before + _EWMA * (took - before)

    # -- the cloud's side of it -------------------------------------------------------------

    async def forward(
        self,
        name: str,
        method: str,
        target: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        call_id: str,
    ) -> CloudAnswer:
        """The cloud's answer to this call, checked to be its; CloudUnreachable, or ApiError."""
        assert self.settings is not None and self.client is not None
        cloud = self.settings.cloud_site
        if self._reachable() is False:
            raise CloudUnreachable(f"{self.settings.cloud_url}: no answer at the last catalogue round")
        sent = [(k, v) for k, v in headers if k.lower() not in _NOT_FORWARDED]
        sent += [(b"authorization", self.settings.auth_header().encode()), (b"x-call-id", call_id.encode())]
        began = time.perf_counter()
        try:
            request = self.client.build_request(method, f"/site-function/{name}{target}", headers=sent,
                                                content=body)  # fmt: skip
            response = await self.client.send(request, stream=True)
            try:
                raw = b"".join([chunk async for chunk in response.aiter_raw()])
            finally:
                await response.aclose()
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise CloudUnreachable(f"{self.settings.cloud_url}: {exc}") from None
        except httpx.TimeoutException:
            raise ApiError(504, f"the cloud {cloud!r} did not answer the call of {name!r} in time") from None
        except httpx.HTTPError as exc:
            raise ApiError(502, f"the cloud {cloud!r} broke off its answer for {name!r}: {exc}") from None
        duration_us = int((time.perf_counter() - began) * 1_000_000)
        got = response.headers
        if got.get(SITE_HEADER) != cloud:
            raise ApiError(
                502,
                f"the answer for {name!r} is not from the cloud: {SITE_HEADER} is "
                f"{got.get(SITE_HEADER)!r}, expected {cloud!r}",
            )
        if got.get("x-call-id") != call_id:
            raise ApiError(502, f"the cloud's answer for {name!r} is for another call (X-Call-Id differs)")
        if got.get(REACHED_HEADER) != "true":
            # The cloud's gateway refused or could not run it: nothing ran, nothing is billed here.
            try:
                why = json.loads(raw).get("error", "")
            except (ValueError, AttributeError):
                why = ""
            retry = {"Retry-After": got["retry-after"]} if "retry-after" in got else None
            raise ApiError(
                response.status_code, f"in the cloud {cloud!r}: {why or response.reason_phrase}", retry
            )
        if got.get(FUNCTION_HEADER) != name:
            raise ApiError(
                502,
                f"the cloud's answer is for function {got.get(FUNCTION_HEADER)!r}, not {name!r}",
            )
        return CloudAnswer(response.status_code, list(got.raw), raw, duration_us)

    # -- the labels -------------------------------------------------------------------------

    def label(
        self,
        headers: list[tuple[bytes, bytes]],
        name: str,
        reason: str | None,
        for_site: str | None,
        reached: bool,
    ) -> list[tuple[bytes, bytes]]:
        """``headers`` with where the call ran and why (nothing added on a gateway that is no site).

        ``reason`` set: the answer is the cloud's (checked), its site kept. ``for_site``: this
        cloud ran it for that edge, and says whether the function itself answered."""
        if self.settings is None:
            return headers
        if reason and reason != CLOUD_UNREACHABLE:
            site = next((v.decode("latin-1") for k, v in headers if k.lower() == _SITE), "")
            kept = [(k, v) for k, v in headers if k.lower() not in (_REASON, _REACHED)]
            self.calls[(name, site, reason)] += 1
            return [*kept, (_REASON, reason.encode())]
        # A function's own copies of these headers are dropped: only the gateway says where it ran.
        kept = [(k, v) for k, v in headers if k.lower() not in _LABELS]
        shown = FORWARDED if for_site else (reason or LOCAL)
        self.calls[(name, self.settings.name, shown)] += 1
        kept += [(_SITE, self.settings.name.encode()), (_REASON, shown.encode())]
        if for_site:
            kept += [(_FUNCTION, name.encode()), (_REACHED, b"true" if reached else b"false")]
        return kept

    def refused_for_site(self, response: Response) -> Response:
        """A refusal of a forwarded call, marked as this cloud's and as not having run."""
        if self.settings is not None:
            response.headers[SITE_HEADER] = self.settings.name
            response.headers[REACHED_HEADER] = "false"
        return response

    def metrics_text(self) -> str:
        if self.settings is None:
            return ""
        lines = [
            "# HELP edgefaas_site_calls_total Answered calls, by function, the site that ran them and why.",
            "# TYPE edgefaas_site_calls_total counter",
        ]
        for (name, site, reason), count in sorted(self.calls.items()):
            lines.append(
                f'edgefaas_site_calls_total{{function_name="{name}",site="{site}",reason="{reason}"}} {count}'
            )
        return "\n".join(lines) + "\n"
