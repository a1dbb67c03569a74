"""Calling functions: /function/{name}[/path] (synchronous) and /async-function/{name} (queued).

One call, in order: the function exists (404), the caller's license is good (401/403),
the body fits (413), the quota has room (429), then the call goes to the backend's
endpoint for the function, and an answer from the function is billed before it is
passed back. What is billed: every call the function answered (whatever its status,
timeouts the runtime reports included). What is not: calls refused before the function
(401/403/404/413/429), the runtime's own in-flight refusals, and calls the gateway got no
answer for (502/503/504). A connection that was never made is retried on a fresh
endpoint (the function never saw it), which is what lets a rollout or a restart happen
under load without failing a call.

The hop to the function goes through ``upstream.Pool``, a lean keep-alive client (httpx cost
several times the CPU per call there). httpx stays for callbacks to callers' URLs (any
scheme, rare) and, through ``_HttpxUpstream``, wherever a transport is given in place of the
network (the tests call ASGI apps) or an endpoint is not plain http.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.cookiejar
import json
import logging
import math
import re
import time
import uuid
from dataclasses import dataclass, replace

import httpx
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from edgefaas.backends.base import (
    Backend,
    BackendError,
    FunctionNotFound,
    FunctionUnavailable,
    valid_function_name,
)
from edgefaas.runtime.event import PARENT_CALL_ID_HEADER
from edgefaas.runtime.server import REJECTED_HEADER

from .async_queue import (
    TAKE_WAIT,
    AsyncCall,
    AsyncQueue,
    CallTooLarge,
    Delivery,
    JetStreamQueue,
    JetStreamSettings,
    MemoryQueue,
    QueueDepth,
    QueueFull,
    QueueUnavailable,
    parse_servers,
)
from .callbacks import RetryPolicy, check_callback_url, deliver
from .config import GatewaySettings
from .database import StorageUnavailable
from .errors import ApiError
from .idempotency import REPLAY_HEADER, Hold, StoredAnswer, check_key, too_large_to_replay
from .ledger import PUBLIC_LICENSE, Ledger, LedgerEntry
from .licensing.authority import Caller, LicenseAuthority
from .metrics import Metrics
from .naming import function_name
from .offload import CLOUD_UNREACHABLE, NOT_DEPLOYED, CloudUnreachable, Placement
from .quota import QuotaGate, Ticket
from .registry import FunctionInfo, FunctionRegistry
from .upstream import Answer, AnswerTimeout, BrokenAnswer, Pool, Unreached

log = logging.getLogger("edgefaas.gateway.invoke")

CALL_ID_HEADER = "X-Call-Id"
# How long a name the backend did not have is answered 404 without asking it again, and how
# many such names are remembered at most.
MISSING_TTL = 1.0
MISSING_CACHE_SIZE = 1024
LICENSE_HEADER = "X-Edgefaas-License"
CALLBACK_HEADER = "X-Callback-Url"
# A caller's X-Call-Id kept as an async call's id: what OpenFaaS clients send (uuids), nothing
# that could smuggle a header or a path.
_CALLER_CALL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
# Headers only the gateway may set towards a function: a caller's copies are dropped.
_GATEWAY_SET = frozenset(
    {"x-call-id", LICENSE_HEADER.lower(), "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto"}
)
_REJECTED = REJECTED_HEADER.lower().encode()
_NOT_RETURNED = _HOP_BY_HOP | {"x-call-id", "x-duration-seconds", REJECTED_HEADER.lower(), "server", "date"}


class _KeepNoCookies(http.cookiejar.CookieJar):
    """The httpx client's cookie jar, which never keeps one (``upstream.Pool`` has no jar).

    A function's Set-Cookie is relayed to its caller, whose cookie it is. The gateway's one
    client serves every caller: a cookie it kept would go to the function again with other
    callers' calls, as if they had sent it.
    """

    def set_cookie(self, cookie: http.cookiejar.Cookie) -> None:
        return

    def extract_cookies(self, response: object, request: object) -> None:
        return


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, or ApiError(413) as soon as it is known to be over ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise ApiError(400, "Content-Length is not a number")
        if int(declared) > limit:
            raise ApiError(413, f"request body over the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"request body over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


@dataclass(frozen=True)
class Upstream:
    status: int
    headers: list[tuple[bytes, bytes]]  # raw, as the function sent them
    body: bytes
    duration_us: int
    reached: bool  # the function itself answered (bill it)


@dataclass(frozen=True)
class _Admitted:
    info: FunctionInfo
    caller: Caller | None
    ticket: Ticket
    body: bytes
    target: str  # extra path and query, passed through as sent
    headers: list[tuple[bytes, bytes]]
    parent_call_id: str
    offload: str | None = None  # an edge sends it to its cloud, and why (offload.py)
    site: str | None = None  # a cloud runs it for this edge site, which billed it

    @property
    def payer(self) -> str:
        if self.caller is not None:
            return self.caller.license.id
        return f"site:{self.site}" if self.site else PUBLIC_LICENSE


class Invoker:
    def __init__(
        self,
        backend: Backend,
        registry: FunctionRegistry,
        licenses: LicenseAuthority,
        quota: QuotaGate,
        ledger: Ledger,
        metrics: Metrics,
        settings: GatewaySettings,
        transport: httpx.AsyncBaseTransport | None = None,
        placement: Placement | None = None,
    ) -> None:
        self.backend = backend
        self.placement = placement or Placement(None)
        self.registry = registry
        self.licenses = licenses
        self.quota = quota
        self.ledger = ledger
        self.metrics = metrics
        self.settings = settings
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._pool: Pool | None = None
        self._fallback: _HttpxUpstream | None = None
        self._queue: AsyncQueue | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._busy: set[asyncio.Task[None] | None] = set()  # workers running a call now
        self._waking: dict[str, asyncio.Lock] = {}
        self._missing: dict[str, float] = {}

    async def start(self) -> None:
        timeout = self.settings.upstream_timeout
        self._client = httpx.AsyncClient(
            transport=self._transport,
            timeout=httpx.Timeout(timeout, connect=2.0, pool=timeout),
            limits=httpx.Limits(max_connections=1000, max_keepalive_connections=200),
            trust_env=False,  # functions are the gateway's neighbours: never through a proxy
            follow_redirects=False,
            cookies=_KeepNoCookies(),
        )
        # Only what the caller sent goes to the function (and to a callback): not httpx's own
        # Accept, Accept-Encoding (the answer is relayed undecoded), User-Agent or Connection.
        for name in list(self._client.headers):
            del self._client.headers[name]
        self._fallback = _HttpxUpstream(self._client)
        if self._transport is None:
            self._pool = Pool(connect_timeout=2.0, max_connections=1000, max_idle=200)
        self._queue = make_queue(self.settings)
        await self._queue.start()
        self._workers = [asyncio.create_task(self._work()) for _ in range(self.settings.async_workers)]

    async def close(self) -> None:
        if self._queue is not None:
            self._queue.stop_taking()
        # Running calls are handed back at once (another gateway runs them); idle workers run out
        # (a JetStream pull cancelled as the server answers it would strand a call).
        cancel_all = self._queue is None or self._queue.cancel_waiting_safely
        for task in self._workers if cancel_all else list(self._busy):
            if task is not None:
                task.cancel()
        if self._workers:
            _, stuck = await asyncio.wait(self._workers, timeout=TAKE_WAIT + 5)
            for task in stuck:
                task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        if self._queue is not None:
            await self._queue.close()
        if self._pool:
            await self._pool.aclose()
        if self._client:
            await self._client.aclose()

    # -- routes ------------------------------------------------------------------------------

    def forget_connections(self, name: str) -> None:
        """After ``name`` is updated or deleted: no kept-alive connection to its old pods is reused."""
        if self._pool is None:
            return
        try:
            base = self.backend.endpoint(name)
        except (FunctionNotFound, FunctionUnavailable):
            return  # nothing answers there now, so nothing is pooled for it that could be reused
        self._pool.forget(base)

    async def call(self, request: Request) -> Response:
        call_id = uuid.uuid4().hex
        key = request.headers.get(CALL_ID_HEADER)
        name = request.path_params["name"]
        started = time.perf_counter()
        try:
            name = function_name(name, self.backend.namespaces())
            if self.registry.lookup(name) is not None:
                self.metrics.started(name)
            if key is not None:
                check_key(key)
            admitted = await self._admit(request, name, "/function/")
            if key is None:
                upstream = await self._run(admitted, request.method, call_id)
                response = _relay(upstream, call_id)
            else:
                response = await self._run_once(admitted, request.method, key)
        except ApiError as exc:
            if self.registry.lookup(name) is not None:
                self.metrics.observe(name, exc.status, time.perf_counter() - started)
            return exc.response(key or call_id)
        self.metrics.observe(name, response.status_code, time.perf_counter() - started)
        return response

    async def _run_once(self, admitted: _Admitted, method: str, key: str) -> Response:
        """The call under the caller's idempotency key: run and billed once, else its first answer."""
        payer = admitted.payer
        # Short, and renewed while the call runs: a retry through another gateway takes over the
        # key of a gateway that died mid-call within a lease, not after the upstream timeout.
        lease = self.settings.idempotency_lease
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.settings.upstream_timeout
        delay = 0.02
        try:
            while True:
                try:
                    claim = await run_in_threadpool(
                        self.ledger.claim, payer, key, lease, self.settings.idempotency_window
                    )
                except StorageUnavailable as exc:
                    raise ApiError(
                        503, f"the call cannot be billed now: {exc}", {"Retry-After": "1"}
                    ) from None
                if claim.outcome != "wait":
                    break
                if loop.time() >= give_up:
                    raise ApiError(
                        409,
                        f"a call with X-Call-Id {key!r} is still running; retry to get its answer",
                        {"Retry-After": str(max(1, math.ceil(claim.retry_after)))},
                    )
                delay = await _pause(delay, give_up - loop.time())
        except BaseException:
            admitted.ticket.release()
            raise
        if claim.outcome == "replay":
            admitted.ticket.release()  # nothing new is billed
            assert claim.answer is not None
            limit = self.settings.idempotency_max_answer_bytes
            if claim.answer.body is None:
                raise too_large_to_replay(claim.answer, limit)
            response = Response(content=claim.answer.body, status_code=claim.answer.status)
            response.raw_headers = [*claim.answer.headers, (REPLAY_HEADER.lower().encode(), b"true")]
            return response
        assert claim.hold is not None
        renewing = asyncio.create_task(self._renew(claim.hold, lease))
        try:
            upstream = await self._run(admitted, method, claim.call_id, claim.hold, key)
        except BaseException:
            await run_in_threadpool(self.ledger.release, claim.hold)
            raise
        finally:
            renewing.cancel()
        if not upstream.reached:
            await run_in_threadpool(self.ledger.release, claim.hold)
        return _relay(upstream, key)

    async def call_for_site(self, request: Request, site: str) -> Response:
        """A call the edge ``site`` forwarded (its credential checked): billed at that site, so run
        here once per its X-Call-Id, recorded unpriced under the payer ``site:<name>``."""
        name = request.path_params["name"]
        key = request.headers.get(CALL_ID_HEADER)
        started = time.perf_counter()
        try:
            if key is None:
                raise ApiError(400, "X-Call-Id is required: a forwarded call runs once per its call id")
            check_key(key)
            admitted = await self._admit(request, name, "/site-function/", site=site)
            response = await self._run_once(admitted, request.method, key)
        except ApiError as exc:
            return self.placement.refused_for_site(exc.response(key))
        self.metrics.observe(name, response.status_code, time.perf_counter() - started)
        return response

    async def call_async(self, request: Request) -> Response:
        """Queue the call and answer 202 with its id; a worker on any gateway runs it later.

        Nothing is queued unless everything about the call is right: the caller learns of a
        bad callback URL or body now, not never.
        """
        call_id = uuid.uuid4().hex
        name = request.path_params["name"]
        try:
            name = function_name(name, self.backend.namespaces())
            key = _caller_call_id(request)
            call_id = key or call_id
            callback = request.headers.get(CALLBACK_HEADER)
            if callback is not None:
                try:
                    check_callback_url(callback)
                except ValueError as exc:
                    raise ApiError(400, f"{CALLBACK_HEADER} {exc}") from None
            # A function not deployed at this edge queues here too: its worker sends it to the cloud.
            admitted = await self._admit(request, name, "/async-function/")
            try:
                _check_async_body(request, admitted.body)
                queued = await self._enqueue(admitted, request.method, call_id, callback, key is not None)
            except BaseException:
                admitted.ticket.release()
                raise
            if not queued:
                admitted.ticket.release()  # the first enqueue of this call id holds the slot
        except ApiError as exc:
            return exc.response(call_id)
        return Response(status_code=202, headers={CALL_ID_HEADER: call_id})

    async def _enqueue(
        self, admitted: _Admitted, method: str, call_id: str, callback: str | None, caller_key: bool
    ) -> bool:
        assert self._queue is not None, "invoker not started"
        caller = admitted.caller
        call = AsyncCall(
            call_id=call_id,
            # Billed under an id of the gateway's making: a caller's key reused later, or one
            # another payer chose, is a new call and is paid for.
            ledger_id=uuid.uuid4().hex,
            payer=caller.license.id if caller else PUBLIC_LICENSE,
            license_id=caller.license.id if caller else None,
            function=admitted.info.name,
            method=method,
            target=admitted.target,
            headers=admitted.headers,
            body=admitted.body,
            parent_call_id=admitted.parent_call_id,
            callback_url=callback,
            caller_key=caller_key,
        )
        try:
            queued = await self._queue.put(call, admitted.ticket)
        except QueueFull as exc:
            raise ApiError(429, f"{exc}; try again later", {"Retry-After": "1"}) from None
        except QueueUnavailable as exc:
            raise ApiError(503, f"{exc}; try again later (with the same X-Call-Id, it queues once)",
                           {"Retry-After": "2"}) from None  # fmt: skip
        except CallTooLarge as exc:
            raise ApiError(413, str(exc)) from None
        self.metrics.async_event("queued" if queued else "duplicate")
        if not queued:
            log.info("async call %s of %s was queued already; not queued again", call_id, call.function)
        return queued

    # -- the steps of one call ---------------------------------------------------------------

    async def _renew(self, hold: Hold, lease: float) -> None:
        """Renew ``hold``'s lease every third of it until cancelled (the call finished)."""
        while True:
            await asyncio.sleep(lease / 3)
            try:
                if not await run_in_threadpool(self.ledger.renew, hold, lease):
                    return  # taken over: its lease ran out while this gateway could not renew
            except StorageUnavailable as exc:
                log.warning("could not renew the claim on X-Call-Id %r: %s", hold.key, exc)

    async def _function(self, name: str, not_found: str) -> FunctionInfo:
        """What the registry knows of `name`, else what the backend has (deployed through another
        gateway since this one last listed the functions); ApiError 404 `not_found` or 503."""
        info = self.registry.lookup(name)
        if info is not None:
            return info
        # A name just found missing is not asked of the backend again at once: callers of
        # unknown names must not turn into a stream of Kubernetes API requests.
        now = time.monotonic()
        if self._missing.get(name, 0.0) > now:
            raise ApiError(404, not_found)
        try:
            return self.registry.remember(await run_in_threadpool(self.backend.get, name))
        except FunctionNotFound:
            if len(self._missing) >= MISSING_CACHE_SIZE:
                self._missing.clear()
            self._missing[name] = now + MISSING_TTL
            raise ApiError(404, not_found) from None
        except BackendError as exc:
            raise ApiError(503, f"function {name!r} could not be looked up: {exc}") from None

    async def _admit(self, request: Request, name: str, route: str, site: str | None = None) -> _Admitted:
        offload = None
        try:
            info = await self._function(name, f"function {name!r} not found")
        except ApiError as exc:
            if exc.status != 404 or site or not self.placement.offloads or not valid_function_name(name):
                raise
            # Not deployed at this edge: its cloud may have it. Only a licensed caller is sent on
            # (the edge cannot know if the cloud's function is public, and it pays for the call).
            info, offload = FunctionInfo(name, False, "", None, None), NOT_DEPLOYED
        # A forwarded call's caller was authorized (and its quota counted) at the edge it entered.
        authorization = request.headers.get("authorization")
        try:
            caller = None if site else self.licenses.authorize(authorization, info.public)
        except ApiError as exc:
            self.metrics.refused("no_license" if exc.status == 401 else "token_refused")
            raise
        body = await read_body(request, self.settings.max_body_bytes)
        try:
            ticket = self.quota.admit(caller)
        except ApiError:
            self.metrics.refused("quota")
            raise
        raw_path = request.scope.get("raw_path") or request.url.path.encode()
        # The extra path as the caller sent it (still percent-encoded): everything after the name.
        after_route = raw_path.decode("latin-1")[len(route) :]
        slash = after_route.find("/")
        rest = after_route[slash:] if slash >= 0 else ""
        query = request.scope.get("query_string", b"").decode("latin-1")
        target = (rest or "/") + (f"?{query}" if query else "")
        return _Admitted(
            info=info,
            caller=caller,
            ticket=ticket,
            body=body,
            target=target,
            headers=_forward_headers(request, caller),
            parent_call_id=request.headers.get(PARENT_CALL_ID_HEADER, "")[:64],
            offload=offload,
            site=site,
        )

    async def _run(
        self,
        admitted: _Admitted,
        method: str,
        call_id: str,
        hold: Hold | None = None,
        key: str = "",
        shown_id: str = "",
    ) -> Upstream:
        """Forward, then bill under ``call_id``; the quota slot is given back if the function never
        answered.

        ``hold``: the idempotency claim it runs under; its answer (as relayed, X-Call-Id ``key``)
        is stored with the ledger entry. ``shown_id``: the X-Call-Id the function sees, when it is
        not the ledger's (a queued call keeps its caller's id end to end).
        """
        started_at = self.ledger.now()  # the site's clock: quota periods agree across gateways
        try:
            if self.ledger.degraded:  # refused before the function runs, not run and then unbilled
                try:
                    await run_in_threadpool(self.ledger.ensure_available)
                except StorageUnavailable as exc:
                    raise ApiError(
                        503, f"the call cannot be billed now: {exc}", {"Retry-After": "1"}
                    ) from None
            upstream = await self._place(admitted, method, shown_id or call_id)
        except BaseException:
            admitted.ticket.release()
            raise
        if not upstream.reached:
            admitted.ticket.release()
            return upstream
        caller = admitted.caller
        entry = LedgerEntry(
            call_id=call_id,
            license_id=admitted.payer,
            function=admitted.info.name,
            started_at=started_at,
            duration_us=upstream.duration_us,
            status=upstream.status,
            amount_micros=caller.plan.price(upstream.duration_us) if caller else 0,
            parent_call_id=admitted.parent_call_id,
        )
        done = None
        if hold is not None:
            done = (hold, _stored(_relay(upstream, key), self.settings.idempotency_max_answer_bytes))
        try:
            # Durable before answered: the answer waits for the ledger's commit.
            await asyncio.wrap_future(self.ledger.record(entry, done))
        except StorageUnavailable as exc:  # logged once per episode by the database's health
            raise ApiError(
                503, f"the call could not be billed, so its answer is withheld: {exc}", {"Retry-After": "1"}
            ) from None
        except Exception:
            log.exception("billing call %s of %s failed", call_id, admitted.info.name)
            raise ApiError(503, "the call could not be billed, so its answer is withheld") from None
        self.metrics.billed(entry.license_id, entry.amount_micros)
        return upstream

    async def _place(self, admitted: _Admitted, method: str, call_id: str) -> Upstream:
        """Run the call here or at the cloud (offload.py), its answer labelled with where and why."""
        name = admitted.info.name
        reason = admitted.offload or self.placement.overflow(name)
        if reason is not None:
            try:
                cloud = await self.placement.forward(
                    name, method, admitted.target, admitted.headers, admitted.body, call_id
                )
            except CloudUnreachable as exc:
                if reason == NOT_DEPLOYED:
                    raise ApiError(
                        503,
                        f"function {name!r} is not deployed at this site and its cloud is unreachable: {exc}",
                        {"Retry-After": "5"},
                    ) from None
                reason = CLOUD_UNREACHABLE  # an overflow runs here after all
            else:
                headers = self.placement.label(cloud.headers, name, reason, None, True)
                return Upstream(cloud.status, headers, cloud.body, cloud.duration_us, reached=True)
        with self.placement.here(name):
            upstream = await self._forward(admitted, method, call_id)
        headers = self.placement.label(upstream.headers, name, reason, admitted.site, upstream.reached)
        return replace(upstream, headers=headers)

    async def _forward(self, admitted: _Admitted, method: str, call_id: str) -> Upstream:
        assert self._fallback is not None, "invoker not started"
        name = admitted.info.name
        headers = [*admitted.headers, (b"x-call-id", call_id.encode())]
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.settings.unavailable_wait
        delay = 0.02
        woken = False
        while True:
            try:
                base = self.backend.endpoint(name)
            except FunctionNotFound:
                raise ApiError(404, f"function {name!r} not found") from None
            except FunctionUnavailable as exc:
                if exc.scaled_to_zero and not woken:
                    woken = True
                    await self._wake(name)
                    give_up = loop.time() + self.settings.unavailable_wait
                    continue
                if loop.time() >= give_up:
                    raise ApiError(503, str(exc), {"Retry-After": "1"}) from None
                if exc.unready_for >= self.settings.unavailable_wait:
                    # Down for longer than a restart takes: holding this call would only add a hang.
                    raise ApiError(
                        503, f"{exc} (no ready replica for {exc.unready_for:.0f} s)", {"Retry-After": "5"}
                    ) from None
                delay = await _pause(delay, give_up - loop.time())
                continue
            client = self._pool if self._pool is not None and base.startswith("http://") else self._fallback
            began = time.perf_counter()
            try:
                answer = await client.request(
                    method, base, admitted.target, headers, admitted.body, self.settings.upstream_timeout
                )
            except Unreached as exc:
                # The function never saw this request: trying again cannot run it twice.
                if loop.time() >= give_up:
                    raise ApiError(502, f"function {name!r} could not be reached: {exc}") from None
                delay = await _pause(delay, give_up - loop.time())
                continue
            except AnswerTimeout:
                raise ApiError(
                    504, f"function {name!r} did not answer within {self.settings.upstream_timeout:g}s"
                ) from None
            except BrokenAnswer as exc:
                raise ApiError(502, f"function {name!r} broke off its answer: {exc}") from None
            duration_us = int((time.perf_counter() - began) * 1_000_000)
            return Upstream(
                status=answer.status,
                headers=answer.headers,
                body=answer.body,
                duration_us=duration_us,
                reached=not any(key.lower() == _REJECTED for key, _ in answer.headers),
            )

    async def _wake(self, name: str) -> None:
        """Scale a function from zero to one for a call, once however many calls arrive together."""
        lock = self._waking.setdefault(name, asyncio.Lock())
        async with lock:
            try:
                status = await run_in_threadpool(self.backend.get, name)
                if status.replicas == 0:
                    log.info("waking %s from zero replicas for a call", name)
                    await run_in_threadpool(self.backend.scale, name, 1)
            except FunctionNotFound:
                raise ApiError(404, f"function {name!r} not found") from None
            except BackendError as exc:
                raise ApiError(503, f"function {name!r} could not be woken from zero: {exc}") from None

    # -- async calls -------------------------------------------------------------------------

    async def _work(self) -> None:
        assert self._queue is not None
        while True:
            try:
                delivery = await self._queue.get()
            except Exception:
                log.exception("async queue: taking the next call failed")
                await asyncio.sleep(1)
                continue
            if delivery is None:
                return  # the gateway is stopping
            me = asyncio.current_task()
            self._busy.add(me)
            try:
                await self._finish(delivery)
            finally:
                self._busy.discard(me)

    async def _finish(self, delivery: Delivery) -> None:
        """Run the call and its callback, then acknowledge it; stopped midway, hand it back."""
        try:
            async with delivery.running():
                await self._run_job(delivery)
        except asyncio.CancelledError:
            # Another gateway (or this one, restarted) runs it again; the ledger's key (the
            # call id) keeps a second run from being billed twice.
            with contextlib.suppress(Exception):
                await asyncio.shield(delivery.give_back())
            raise
        except Exception:
            log.exception("async call %s failed", delivery.call.call_id)
        try:
            await delivery.done()
        except Exception as exc:
            log.warning("async call %s: its ack was lost (%s); it may run again", delivery.call.call_id, exc)

    async def _readmit(self, delivery: Delivery) -> _Admitted:
        """The queued call as admitted again on this gateway: its function and payer looked up now."""
        call = delivery.call
        offload = None
        try:
            info = await self._function(
                call.function, f"function {call.function!r} not found (removed since the call was queued)"
            )
        except ApiError as exc:
            # Queued for the cloud (not deployed here), as the sync path sends a licensed call on.
            if exc.status != 404 or call.license_id is None or not self.placement.offloads:
                raise
            info, offload = FunctionInfo(call.function, False, "", None, None), NOT_DEPLOYED
        caller = None
        if call.license_id is not None:
            caller = self.licenses.caller(call.license_id)
            if caller is None:
                raise ApiError(
                    403, "license token refused: the license was revoked since the call was queued"
                )
        return _Admitted(
            info=info,
            caller=caller,
            # A call admitted on another gateway took its quota slot there.
            ticket=delivery.ticket or Ticket(None, ("", 0), call.queued_at),
            body=call.body,
            target=call.target,
            headers=call.headers,
            parent_call_id=call.parent_call_id,
            offload=offload,
        )

    async def _run_job(self, delivery: Delivery) -> None:
        call = delivery.call
        if delivery.attempt > 1:
            self.metrics.async_event("redelivered")
            log.info("async call %s: delivery %d (a gateway stopped before it finished)", call.call_id,
                     delivery.attempt)  # fmt: skip
        started = time.perf_counter()
        try:
            admitted = await self._readmit(delivery)
            # The sync path with the call's own id: a redelivered call is billed once (the ledger's key).
            upstream = await self._run(admitted, call.method, call.ledger_id, shown_id=call.call_id)
            status, body, headers = upstream.status, upstream.body, upstream.headers
            self.metrics.async_event("completed" if upstream.reached else "failed")
        except ApiError as exc:
            response = exc.response()
            status, body, headers = exc.status, bytes(response.body), [(b"content-type", b"application/json")]
            if delivery.ticket is not None:
                delivery.ticket.release()  # not billed: its quota slot is free again
            self.metrics.async_event("failed")
            log.warning("async call %s of %s: %d %s", call.call_id, call.function, exc.status, exc.message)
        if self.registry.lookup(call.function) is not None:
            self.metrics.observe(call.function, status, time.perf_counter() - started)
        if not call.callback_url:
            return
        assert self._client is not None
        send: list[tuple[str | bytes, str | bytes]] = [
            (k, v) for k, v in headers if k.lower() == b"content-type"
        ]
        send += [
            (CALL_ID_HEADER, call.call_id),
            ("X-Function-Name", call.function),
            ("X-Function-Status", str(status)),
        ]
        outcome = await deliver(
            self._client, call.callback_url, body, send, self._callback_policy, call.call_id
        )
        self.metrics.callback(outcome)

    @property
    def _callback_policy(self) -> RetryPolicy:
        s = self.settings
        return RetryPolicy(
            s.callback_attempts, s.callback_backoff, s.callback_backoff_max, s.callback_timeout
        )

    @property
    def queue_kind(self) -> str:
        return self._queue.kind if self._queue else "none"

    async def queue_depth(self) -> QueueDepth | None:
        return await self._queue.depth() if self._queue else None


def make_queue(settings: GatewaySettings) -> AsyncQueue:
    """JetStream when a NATS URL is set, else the in-process queue."""
    if not settings.nats_url:
        return MemoryQueue(settings.async_queue_size, settings.async_dedup_window)
    return JetStreamQueue(
        JetStreamSettings(
            servers=parse_servers(settings.nats_url),
            stream=settings.nats_stream,
            replicas=settings.nats_replicas,
            max_calls=settings.async_queue_size,
            # Never shorter than a call plus a callback try: in-progress acks renew it, but a
            # missed one must not hand a running call to another gateway.
            ack_wait=settings.async_ack_wait,
            max_deliver=settings.async_max_deliver,
            dedup_window=settings.async_dedup_window,
        )
    )


class _HttpxUpstream:
    """``upstream.Pool``'s interface on httpx: errors sorted the same way, the body relayed raw."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def request(
        self,
        method: str,
        base: str,
        target: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        timeout: float,  # the client's own timeouts apply
    ) -> Answer:
        try:
            request = self._client.build_request(method, base + target, headers=headers, content=body)
            response = await self._client.send(request, stream=True)
            try:
                raw = b"".join([chunk async for chunk in response.aiter_raw()])
            finally:
                await response.aclose()
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise Unreached(str(exc)) from None
        except httpx.TimeoutException as exc:
            raise AnswerTimeout(str(exc)) from None
        except httpx.HTTPError as exc:
            raise BrokenAnswer(str(exc)) from None
        return Answer(response.status_code, list(response.headers.raw), raw)


async def _pause(delay: float, remaining: float) -> float:
    """Sleep before trying again (never past the deadline); the next, longer delay."""
    await asyncio.sleep(max(min(delay, remaining), 0))
    return min(delay * 2, 0.25)


def _forward_headers(request: Request, caller: Caller | None) -> list[tuple[bytes, bytes]]:
    """The caller's headers as sent (raw bytes), less hop-by-hop ones and those the gateway sets."""
    named_in_connection = {
        token.strip().lower() for token in request.headers.get("connection", "").split(",") if token.strip()
    }
    skip = _HOP_BY_HOP | _GATEWAY_SET | named_in_connection
    headers = [(k, v) for k, v in request.headers.raw if k.decode("latin-1").lower() not in skip]
    if request.client and request.client.host:
        headers.append((b"x-forwarded-for", request.client.host.encode("latin-1")))
    if "host" in request.headers:
        headers.append((b"x-forwarded-host", request.headers["host"].encode("latin-1")))
    headers.append((b"x-forwarded-proto", request.url.scheme.encode("latin-1")))
    if caller is not None:
        headers.append((LICENSE_HEADER.lower().encode(), caller.license.id.encode()))
    return headers


def _relay(upstream: Upstream, call_id: str) -> Response:
    response = Response(content=upstream.body, status_code=upstream.status)
    kept = [(k.lower(), v) for k, v in upstream.headers if k.lower().decode("latin-1") not in _NOT_RETURNED]
    response.raw_headers = [
        (b"content-length", str(len(upstream.body)).encode()),
        *kept,
        (b"x-call-id", call_id.encode()),
        (b"x-duration-seconds", f"{upstream.duration_us / 1_000_000:.6f}".encode()),
    ]
    return response


def _stored(response: Response, limit: int) -> StoredAnswer:
    body = bytes(response.body)
    return StoredAnswer(
        response.status_code, list(response.raw_headers), body if len(body) <= limit else None, len(body)
    )


def _caller_call_id(request: Request) -> str | None:
    """The caller's X-Call-Id, kept as the async call's id; ApiError(400) if it is not a plain id."""
    given = request.headers.get(CALL_ID_HEADER)
    if given is None:
        return None
    if not _CALLER_CALL_ID.fullmatch(given):
        raise ApiError(
            400,
            f"{CALL_ID_HEADER} must be 1-128 letters, digits, '.', '_', ':' or '-', "
            "starting with a letter or digit",
        )
    return given


def _check_async_body(request: Request, body: bytes) -> None:
    """A body declared JSON must be JSON: an async caller would otherwise learn only from the callback."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not body or not (media_type == "application/json" or media_type.endswith("+json")):
        return
    try:
        json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, f"the body is declared {media_type} but is not JSON: {exc}") from None
