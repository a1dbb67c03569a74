"""Where queued (asynchronous) calls wait until a worker runs them: one interface, two kinds.

- ``MemoryQueue``: in this process, the default without a NATS URL. One gateway; a
  restart loses what was queued. Unit tests and single-switch sites use it.
- ``JetStreamQueue``: a NATS JetStream stream with work-queue retention on file storage,
  replicated over a NATS cluster (one server per switch). Every gateway publishes into it
  and pulls from ONE durable consumer that all of them share, so whichever gateway is
  alive runs any queued call. A call is acknowledged only after it ran and its callback
  ended; while it runs, in-progress acks keep it claimed, so a gateway that dies mid-call
  stops sending them and the call is redelivered to another gateway after ``ack_wait``
  (at most ``max_deliver`` times, so a call that kills its gateway cannot loop forever).

A queued call is an ``AsyncCall``: plain data, encoded as JSON, so that a gateway other
than the one that admitted it can run it. Both kinds drop a second enqueue of the same
(payer, call id) within the dedup window (JetStream's own ``Nats-Msg-Id`` dedup there): a
caller retrying an enqueue whose answer it never got queues the call once.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nats.aio.client import Client as NatsClient
    from nats.aio.msg import Msg
    from nats.js.client import JetStreamContext

    from .quota import Ticket

log = logging.getLogger("edgefaas.gateway.async_queue")

# The consumer every gateway pulls from; one name, so they share the work.
CONSUMER = "gateways"
# How long one wait for a call lasts (a JetStream pull's expiry): a stopping gateway waits this long.
TAKE_WAIT = 1.0


class QueueError(Exception):
    """The call was not queued (and nothing of it was); the message says why."""


class QueueFull(QueueError):
    pass


class QueueUnavailable(QueueError):
    pass


class CallTooLarge(QueueError):
    pass


@dataclass(frozen=True)
class AsyncCall:
    """Everything a gateway needs to run a queued call, whichever gateway admitted it."""

    call_id: str
    payer: str  # the license id, or the public payer
    license_id: str | None  # None: an anonymous call of a public function
    function: str
    method: str
    target: str  # extra path and query, as the caller sent them
    headers: list[tuple[bytes, bytes]]
    body: bytes
    parent_call_id: str
    callback_url: str | None
    queued_at: float = field(default_factory=time.time)
    # The call id is the caller's own X-Call-Id (an idempotency key), not one the gateway made.
    caller_key: bool = False
    # The ledger's key: made when the call was queued, so every delivery of it bills once.
    ledger_id: str = ""

    def __post_init__(self) -> None:
        if not self.ledger_id:
            object.__setattr__(self, "ledger_id", self.call_id)

    @property
    def dedup_key(self) -> str:
        return f"{self.payer}/{self.call_id}"

    def encode(self) -> bytes:
        return json.dumps(
            {
                "v": 1,
                "call_id": self.call_id,
                "payer": self.payer,
                "license_id": self.license_id,
                "function": self.function,
                "method": self.method,
                "target": self.target,
                "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in self.headers],
                "body": base64.b64encode(self.body).decode("ascii"),
                "parent_call_id": self.parent_call_id,
                "callback_url": self.callback_url,
                "queued_at": self.queued_at,
                "caller_key": self.caller_key,
                "ledger_id": self.ledger_id,
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def decode(cls, data: bytes) -> AsyncCall:
        """The call in ``data``, or ValueError naming what is wrong with it."""
        try:
            raw: dict[str, Any] = json.loads(data)
            if raw.get("v") != 1:
                raise ValueError(f"unknown queued call version {raw.get('v')!r}")
            return cls(
                call_id=str(raw["call_id"]),
                payer=str(raw["payer"]),
                license_id=raw["license_id"],
                function=str(raw["function"]),
                method=str(raw["method"]),
                target=str(raw["target"]),
                headers=[(k.encode("latin-1"), v.encode("latin-1")) for k, v in raw["headers"]],
                body=base64.b64decode(raw["body"], validate=True),
                parent_call_id=str(raw["parent_call_id"]),
                callback_url=raw["callback_url"],
                queued_at=float(raw["queued_at"]),
                caller_key=bool(raw.get("caller_key", False)),
                ledger_id=str(raw.get("ledger_id") or raw["call_id"]),
            )
        except (KeyError, TypeError, AttributeError, UnicodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"malformed queued call: {exc!r}") from None


@dataclass(frozen=True)
class QueueDepth:
    waiting: int  # queued, not yet taken by a worker
    running: int  # taken by a worker, not yet acknowledged


class Delivery(ABC):
    """One queued call handed to a worker: ``done()`` once it ran and its callback ended."""

    call: AsyncCall
    attempt: int  # 1 the first time; more when a gateway died or gave it back
    ticket: Ticket | None  # the quota slot, while the call is still on the gateway that admitted it

    @abstractmethod
    async def done(self) -> None: ...

    @abstractmethod
    async def give_back(self) -> None:
        """This gateway is stopping before the call finished: let another run it now."""

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Keep the call claimed by this gateway while the block runs."""
        yield


class AsyncQueue(ABC):
    kind: str
    # Whether a worker waiting in ``get`` may be cancelled without stranding a call.
    cancel_waiting_safely = False
    _stopping = False  # set by stop_taking

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def put(self, call: AsyncCall, ticket: Ticket | None = None) -> bool:
        """Queue ``call``: True; False if the same (payer, call id) was queued within the dedup window.

        Raises QueueFull, QueueUnavailable or CallTooLarge, having queued nothing.
        """

    @abstractmethod
    async def get(self) -> Delivery | None:
        """The next call to run (waits for one), or None once ``stop_taking`` was called."""

    def stop_taking(self) -> None:
        """The gateway is stopping: ``get`` hands out no more calls and returns None within ``TAKE_WAIT``.

        Workers waiting for a call are let run out rather than cancelled: a JetStream pull that
        is cancelled while the server answers it would strand that call until ``ack_wait``.
        """
        self._stopping = True

    @abstractmethod
    async def depth(self) -> QueueDepth | None:
        """How many calls wait and run now; None when the queue cannot be asked."""


class _Recent:
    """Keys seen within the last ``window`` seconds (the memory queue's dedup)."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._seen: OrderedDict[str, float] = OrderedDict()

    def add(self, key: str) -> bool:
        now = time.monotonic()
        while self._seen and next(iter(self._seen.values())) < now - self.window:
            self._seen.popitem(last=False)
        if key in self._seen:
            return False
        self._seen[key] = now
        return True


class _MemoryDelivery(Delivery):
    def __init__(self, queue: MemoryQueue, call: AsyncCall, ticket: Ticket | None, attempt: int) -> None:
        self._queue = queue
        self.call = call
        self.ticket = ticket
        self.attempt = attempt

    async def done(self) -> None:
        self._queue._running -= 1

    async def give_back(self) -> None:
        # Lost with the process anyway, but queued again for whatever still runs in it.
        self._queue._running -= 1
        with contextlib.suppress(asyncio.QueueFull):
            self._queue._queue.put_nowait((self.call, self.ticket, self.attempt + 1))


class MemoryQueue(AsyncQueue):
    kind = "memory"
    cancel_waiting_safely = True  # asyncio.Queue.get gives nothing to a cancelled getter

    def __init__(self, size: int, dedup_window: float) -> None:
        self._queue: asyncio.Queue[tuple[AsyncCall, Ticket | None, int]] = asyncio.Queue(maxsize=size)
        self._recent = _Recent(dedup_window)
        self._running = 0
        self.size = size

    async def start(self) -> None:
        return

    async def close(self) -> None:
        return

    async def put(self, call: AsyncCall, ticket: Ticket | None = None) -> bool:
        # Running calls count, as in JetStream, where a call leaves the stream when acknowledged.
        if self._queue.qsize() + self._running >= self.size:
            raise QueueFull(f"the async queue is full ({self.size} calls)")
        if not self._recent.add(call.dedup_key):
            return False
        self._queue.put_nowait((call, ticket, 1))
        return True

    async def get(self) -> Delivery | None:
        while not self._stopping:
            try:
                call, ticket, attempt = await asyncio.wait_for(self._queue.get(), TAKE_WAIT)
            except TimeoutError:
                continue
            break
        else:
            return None
        self._running += 1
        return _MemoryDelivery(self, call, ticket, attempt)

    async def depth(self) -> QueueDepth | None:
        return QueueDepth(self._queue.qsize(), self._running)


@dataclass(frozen=True)
class JetStreamSettings:
    servers: list[str]
    stream: str = "EDGEFAAS_ASYNC"
    replicas: int = 1
    max_calls: int = 1000
    ack_wait: float = 30.0  # a dead gateway's calls are redelivered this long after its last in-progress ack
    max_deliver: int = 5
    dedup_window: float = 120.0
    timeout: float = 2.0  # for each JetStream request (publish, stream and consumer calls)

    @property
    def subject(self) -> str:
        return f"edgefaas.async.{self.stream.lower()}"


def parse_servers(text: str) -> list[str]:
    """``nats://a:4222,nats://b:4222`` (or bare host:port) -> URLs; ValueError naming a bad one."""
    servers = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        url = item if "://" in item else f"nats://{item}"
        scheme, _, rest = url.partition("://")
        if scheme not in ("nats", "tls") or not rest or any(c.isspace() for c in rest):
            raise ValueError(f"not a NATS server URL: {item!r} (nats://host:port)")
        servers.append(url)
    if not servers:
        raise ValueError("no NATS server given")
    return servers


class _JetStreamDelivery(Delivery):
    def __init__(self, msg: Msg, call: AsyncCall, keep_alive: float) -> None:
        self._msg = msg
        self.call = call
        self.ticket = None
        self.attempt = msg.metadata.num_delivered
        self._keep_alive = keep_alive

    async def done(self) -> None:
        await self._msg.ack()

    async def give_back(self) -> None:
        await self._msg.nak()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        task = asyncio.create_task(self._claim())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _claim(self) -> None:
        while True:
            await asyncio.sleep(self._keep_alive)
            try:
                await self._msg.in_progress()
            except Exception as exc:  # a lost connection: the ack may fail too, and redelivery follows
                log.warning("in-progress ack for async call %s failed: %s", self.call.call_id, exc)


class JetStreamQueue(AsyncQueue):
    kind = "nats"

    def __init__(self, settings: JetStreamSettings) -> None:
        self.settings = settings
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._ready = asyncio.Event()
        self._connecting: asyncio.Task[None] | None = None
        self._subscriptions: dict[asyncio.Task[Any] | None, Any] = {}
        self._closing = False

    async def start(self) -> None:
        """Connect and set up the stream; if NATS is not there yet, keep trying in the background.

        The gateway serves synchronous calls meanwhile; async calls answer 503 until NATS is up.
        """
        self._connecting = asyncio.create_task(self._connect_until_ready())
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._ready.wait(), self.settings.timeout)

    async def _connect_until_ready(self) -> None:
        import nats

        delay = 0.2
        while True:
            try:
                if self._nc is None or self._nc.is_closed:
                    self._nc = await nats.connect(
                        servers=self.settings.servers,
                        name="edgefaas-gateway",
                        connect_timeout=int(max(self.settings.timeout, 1)),
                        allow_reconnect=True,
                        max_reconnect_attempts=-1,  # a gateway outlives any NATS server restart
                        reconnect_time_wait=0.5,
                        error_cb=self._on_error,
                        disconnected_cb=self._on_disconnected,
                        reconnected_cb=self._on_reconnected,
                    )
                self._js = self._nc.jetstream(timeout=self.settings.timeout)
                await self._ensure_stream()
                self._ready.set()
                log.info(
                    "async queue: JetStream stream %s (replicas %d) on %s",
                    self.settings.stream,
                    self.settings.replicas,
                    ",".join(self.settings.servers),
                )
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("async queue: NATS at %s not ready: %s", ",".join(self.settings.servers), exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    # The client's own default logs each of these with a traceback: one line says enough.
    async def _on_error(self, exc: Exception) -> None:
        log.warning("async queue: NATS: %s", str(exc) or type(exc).__name__)

    async def _on_disconnected(self) -> None:
        if self._closing:
            return
        log.warning("async queue: disconnected from NATS; async calls answer 503 until it is back")

    async def _on_reconnected(self) -> None:
        url = self._nc.connected_url if self._nc else None
        log.info("async queue: reconnected to NATS at %s", url.netloc if url else "?")

    async def _ensure_stream(self) -> None:
        """Create the stream and the shared consumer, or bring them to this gateway's settings.

        Whichever gateway starts first creates them; the others find them. Two starting at
        once both try: the loser's create fails as "already in use" and it updates instead,
        which changes nothing when the settings agree.
        """
        from nats.js.api import (
            AckPolicy,
            ConsumerConfig,
            DiscardPolicy,
            RetentionPolicy,
            StorageType,
            StreamConfig,
        )
        from nats.js.errors import BadRequestError, NotFoundError

        assert self._js is not None
        s = self.settings
        config = StreamConfig(
            name=s.stream,
            subjects=[s.subject],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            num_replicas=s.replicas,
            max_msgs=s.max_calls,
            discard=DiscardPolicy.NEW,  # full means refused, never an older call dropped
            duplicate_window=s.dedup_window,
        )
        try:
            await self._js.stream_info(s.stream)
        except NotFoundError:
            try:
                await self._js.add_stream(config)
            except BadRequestError:
                await self._js.update_stream(config)
        else:
            await self._js.update_stream(config)
        await self._js.add_consumer(
            s.stream,
            ConsumerConfig(
                durable_name=CONSUMER,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=s.ack_wait,
                max_deliver=s.max_deliver,
                max_ack_pending=-1,
            ),
        )

    async def close(self) -> None:
        self._closing = True
        if self._connecting is not None:
            self._connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._connecting
        if self._nc is not None and not self._nc.is_closed:
            with contextlib.suppress(Exception):
                await self._nc.close()

    def _unavailable(self, why: object) -> QueueUnavailable:
        return QueueUnavailable(f"the async queue (NATS JetStream) is unreachable: {why}")

    async def put(self, call: AsyncCall, ticket: Ticket | None = None) -> bool:
        from nats.errors import Error as NatsError
        from nats.js.errors import APIError

        if not self._ready.is_set() or self._js is None or self._nc is None or not self._nc.is_connected:
            raise self._unavailable("not connected")
        payload = call.encode()
        if len(payload) > self._nc.max_payload:
            raise CallTooLarge(
                f"the queued call would be {len(payload)} bytes, over the NATS server's "
                f"max_payload of {self._nc.max_payload}"
            )
        try:
            ack = await self._js.publish(
                self.settings.subject,
                payload,
                timeout=self.settings.timeout,
                headers={"Nats-Msg-Id": call.dedup_key},
            )
        except APIError as exc:
            # 10077: the stream's max_msgs (DiscardPolicy.NEW refuses the new message).
            if exc.err_code == 10077 or "maximum messages" in (exc.description or ""):
                raise QueueFull(f"the async queue is full ({self.settings.max_calls} calls)") from None
            raise self._unavailable(exc) from None
        except (TimeoutError, NatsError, OSError) as exc:
            raise self._unavailable(str(exc) or type(exc).__name__) from None
        return not ack.duplicate

    async def get(self) -> Delivery | None:
        """Pull one call; each worker task keeps its own pull subscription on the shared consumer."""
        from nats.errors import Error as NatsError
        from nats.errors import TimeoutError as NatsTimeout

        task = asyncio.current_task()
        while not self._stopping:
            if not self._ready.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._ready.wait(), TAKE_WAIT)
                continue
            assert self._js is not None
            try:
                sub = self._subscriptions.get(task)
                if sub is None:
                    sub = self._subscriptions[task] = await self._js.pull_subscribe_bind(
                        CONSUMER, self.settings.stream
                    )
                msgs = await sub.fetch(1, timeout=TAKE_WAIT)
            except (TimeoutError, NatsTimeout):
                continue
            except NatsError as exc:
                log.warning("async queue: pulling from NATS failed: %s", exc)
                self._subscriptions.pop(task, None)
                await asyncio.sleep(0.5)
                continue
            for msg in msgs:
                if self._stopping:
                    await msg.nak()  # taken as the gateway stops: another gateway's, at once
                    continue
                try:
                    call = AsyncCall.decode(msg.data)
                except ValueError as exc:
                    # Not a call any gateway can run: terminated, or it would come back max_deliver times.
                    log.error("async queue: dropping a message from %s: %s", msg.subject, exc)
                    await msg.term()
                    continue
                return _JetStreamDelivery(msg, call, keep_alive=self.settings.ack_wait / 3)
        return None

    async def depth(self) -> QueueDepth | None:
        if not self._ready.is_set() or self._js is None:
            return None
        try:
            info = await self._js.consumer_info(self.settings.stream, CONSUMER)
        except Exception as exc:
            log.warning("async queue: reading its depth from NATS failed: %s", exc)
            return None
        return QueueDepth(info.num_pending or 0, info.num_ack_pending or 0)
