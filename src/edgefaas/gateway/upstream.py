"""The gateway's hop to functions: a small HTTP/1.1 client with kept-alive connections.

Why not httpx: on this hop httpcore's pool cost more CPU per call than anything else the
gateway does (docs/performance.md, "Gateway overhead", measures what the gateway adds). The
hop needs little of a general client: plain http to a known host and port, a whole body out,
a whole answer in. So this is an asyncio Protocol per connection, a list of idle connections
per upstream, and httptools (llhttp, the parser uvicorn serves the gateway's own callers with)
to read each answer. No cookies are kept, no proxy is read from the environment, no redirect
is followed, nothing is added to the caller's headers but Host and Content-Length, and the
answer's body is passed on as sent (not decoded: its Content-Encoding goes to the caller
with it).

What a failure means for a retry is the caller's decision, made on the exception's class:
``Unreached`` (the request never left this process: no connection, or none free in time) is
safe to try again anywhere; ``AnswerTimeout`` and ``BrokenAnswer`` come after the request was
written, when the function may have run, so they are not retried. An answer that says
``Connection: close`` (a draining runtime's do) or ends with the connection leaves that
connection unused after it; an idle one the server has closed, or sent anything unasked on,
is noticed before use and replaced with a new one, nothing having been sent on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse
from collections import deque
from dataclasses import dataclass
from typing import NoReturn, cast

import httptools

# httptools buffers a head's fields with no limit of its own: past this an upstream's answer is
# taken as malformed.
MAX_HEAD_BYTES = 64 * 1024

# A request target is sent as printable ASCII; anything else the caller's path held is escaped.
_TARGET_SAFE = "".join(chr(c) for c in range(0x21, 0x7F))
_NO_BODY_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE", "TRACE", "CONNECT"})


class UpstreamError(Exception):
    """The function's answer could not be had."""


class Unreached(UpstreamError):
    """The request was never sent (no connection, or none free in time): safe to send again."""


class AnswerTimeout(UpstreamError):
    """The request was sent and no complete answer came in time."""


class BrokenAnswer(UpstreamError):
    """The request was sent and the answer broke off or was not HTTP/1.1."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]  # as the function sent them: names in its case, in its order
    body: bytes


class _Settled(Exception):
    """Raised in a parser callback to stop parsing once the answer is settled."""


class _Exchange:
    """The answer to one request, as httptools reads it: its callbacks, and the answer's future.

    httptools (llhttp) enforces the framing rules that keep an answer from being read two ways:
    a single well-formed Content-Length, well-formed chunk sizes each followed by CRLF, no bare
    CR or LF, no folded lines, valid field names and values. What it leaves to its caller is
    decided here: it does not limit a head's size, accepts HTTP/0.9 and HTTP/2.0 status lines,
    cannot be told that the request was HEAD (whose answer has no body), and has no call for the
    end of input (so a body that ends with the connection is recognised from the head).
    """

    __slots__ = ("answer", "body", "ends_with_close", "head_bytes", "head_done", "head_only", "headers",
                 "keep", "parser", "reuse", "status")  # fmt: skip

    def __init__(self, loop: asyncio.AbstractEventLoop, method: str) -> None:
        self.answer: asyncio.Future[Answer] = loop.create_future()
        self.parser = httptools.HttpResponseParser(self)
        # An answer framed by both Transfer-Encoding and Content-Length is read by its chunked
        # coding (RFC 9112 6.3), and its connection is not used again (``reuse``).
        self.parser.set_dangerous_leniencies(lenient_chunked_length=True)
        self.head_only = method == "HEAD"
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.head_done = False
        self.head_bytes = 0
        self.ends_with_close = False
        self.reuse = True
        self.keep = False  # whether the connection may carry another request, once settled

    def feed(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            # Also how a callback's _Settled comes out, the answer already settled.
            self._fail(f"a malformed answer: {exc}")
        if not self.head_done:  # the head is still coming, held by httptools until it ends
            self.head_bytes += len(data)
            if self.head_bytes > MAX_HEAD_BYTES:
                self._fail(f"a head over {MAX_HEAD_BYTES} bytes")

    def connection_lost(self) -> None:
        """The end of a body read to the close; else the answer broke off."""
        if self.head_done and self.ends_with_close:
            self._finish(keep=False)
        else:
            self._fail("the connection closed before the answer was complete")

    def _finish(self, keep: bool) -> None:
        if not self.answer.done():
            self.keep = keep and self.reuse
            self.answer.set_result(Answer(self.status, self.headers, b"".join(self.body)))

    def _fail(self, reason: str) -> None:
        self.keep = False
        if not self.answer.done():
            self.answer.set_exception(BrokenAnswer(reason))

    def _refuse(self, reason: str) -> NoReturn:
        self._fail(reason)
        raise _Settled

    # -- httptools callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.answer.done():
            self._refuse("bytes after the answer")  # it is settled: only the connection is dropped

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.head_done:  # trailer fields (after a chunked body) are dropped
            # llhttp keeps the whitespace that ends a value, which is not part of it (RFC 9110 5.5).
            self.headers.append((name, value.rstrip(b" \t")))

    def on_headers_complete(self) -> None:
        self.status = status = self.parser.get_status_code()
        version = self.parser.get_http_version()
        if version not in ("1.0", "1.1") or status < 100:
            self._refuse(f"not an HTTP/1.x answer: HTTP/{version} {status:03d}")
        if status == 101:
            self._refuse("the function switched protocols, which the gateway never asks for")
        if sum(len(name) + len(value) for name, value in self.headers) > MAX_HEAD_BYTES:
            self._refuse(f"a head over {MAX_HEAD_BYTES} bytes")
        if status < 200:
            return  # 100 Continue and other interim answers come before the real one
        self.head_done = True
        framing = {
            lowered: value
            for name, value in self.headers
            if (lowered := name.lower()) in (b"content-length", b"transfer-encoding")
        }
        self.reuse = len(framing) < 2
        codings = framing.get(b"transfer-encoding", b"")
        chunked = codings.rsplit(b",", 1)[-1].strip().lower() == b"chunked"
        self.ends_with_close = b"content-length" not in framing and not chunked
        if self.head_only:
            self._finish(self.parser.should_keep_alive())

    def on_body(self, body: bytes) -> None:
        if self.answer.done():
            self._refuse("a body after an answer to HEAD")
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.head_done:
            self._finish(self.parser.should_keep_alive())
        else:
            self.headers = []  # an interim answer's: the real answer's own follow


class _Connection(asyncio.Protocol):
    """One TCP connection, and the exchange its received bytes go to (None while idle)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.exchange: _Exchange | None = None
        self.closed = False
        self.unasked = False  # bytes came while idle (say a 408 before closing): it is unusable
        self.idle_since = 0.0
        self.generation = 0  # its origin's generation when it connected (see Pool.forget)
        # The idle list this connection sits in, so a close while idle takes it out at once.
        self.idle_in: deque[_Connection] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # No isinstance check: uvloop's transports do not derive from asyncio's classes.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.exchange is None:
            self.unasked = True
        else:
            self.exchange.feed(data)

    def eof_received(self) -> bool:
        self._lost()
        return False  # close our side too: a half-closed connection is of no further use

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost()

    def _lost(self) -> None:
        self.closed = True
        if self.idle_in is not None:
            with contextlib.suppress(ValueError):
                self.idle_in.remove(self)
            self.idle_in = None
        if self.exchange is not None:
            self.exchange.connection_lost()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class _Origin:
    """One upstream (scheme http, host, port): how to name it, and its idle connections."""

    __slots__ = ("generation", "host", "host_header", "idle", "port", "prefix")

    def __init__(self, base: str) -> None:
        parts = urllib.parse.urlsplit(base)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"not an http:// URL with a host: {base!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.host_header = parts.netloc.rpartition("@")[2].encode("ascii")
        self.prefix = parts.path.rstrip("/")
        # Most recently used last: a call takes the warmest connection, and the oldest age out.
        self.idle: deque[_Connection] = deque()
        self.generation = 0


class Pool:
    """Kept-alive HTTP/1.1 connections to the gateway's functions, one idle list per upstream.

    ``max_connections`` bounds the calls in flight (a call over it waits, and past its timeout
    gets ``Unreached``); ``max_idle`` bounds the connections kept per upstream between calls;
    an idle connection older than ``keepalive_expiry`` seconds is closed rather than reused,
    well inside the runtime's own idle timeout (120 s), so a server never closes one under a
    request it is being sent.
    """

    def __init__(
        self,
        *,
        connect_timeout: float = 2.0,
        max_connections: int = 1000,
        max_idle: int = 200,
        keepalive_expiry: float = 5.0,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.max_idle = max_idle
        self.keepalive_expiry = keepalive_expiry
        self._slots = asyncio.Semaphore(max_connections)
        self._origins: dict[str, _Origin] = {}

    async def request(
        self,
        method: str,
        base: str,
        target: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        timeout: float,
    ) -> Answer:
        """``method`` ``target`` (path and query, as sent by the caller) on the function at ``base``.

        ``timeout`` bounds the wait for a free slot, and separately the exchange once sent.
        """
        origin = self._origins.get(base) or self._add_origin(base)
        head = _request_head(method, origin, target, headers, body)
        loop = asyncio.get_running_loop()
        if self._slots.locked():  # all slots busy: wait, as httpx's pool timeout did
            try:
                async with asyncio.timeout(timeout):
                    await self._slots.acquire()
            except TimeoutError:
                raise Unreached(f"no free connection within {timeout:g}s") from None
        else:
            await self._slots.acquire()
        try:
            connection = await self._checkout(origin, loop)
            exchange = connection.exchange = _Exchange(loop, method)
            if connection.closed:  # while it was being made
                exchange.connection_lost()
            # Sent now (asyncio writes at once, and buffers what the socket does not take).
            assert connection.transport is not None
            if len(body) < 65536:
                connection.transport.write(head + body)
            else:
                connection.transport.writelines((head, body))
            try:
                async with asyncio.timeout(timeout):
                    return await exchange.answer
            except TimeoutError:
                raise AnswerTimeout(f"no answer within {timeout:g}s") from None
            finally:
                connection.exchange = None
                if exchange.keep and not connection.closed:
                    self._checkin(origin, connection, loop)
                else:
                    connection.close()
        finally:
            self._slots.release()

    def forget(self, base: str) -> None:
        """Never reuse a connection made to ``base`` so far: idle ones close now, busy ones after.

        A function's address (its Service) stays the same across an update, but a kept-alive
        connection stays with the pod it first reached, which may be an old one still draining:
        after an update the gateway's next call must reach the new version.
        """
        origin = self._origins.get(base)
        if origin is None:
            return
        origin.generation += 1
        while origin.idle:
            origin.idle.pop().close()

    async def aclose(self) -> None:
        for origin in self._origins.values():
            while origin.idle:
                origin.idle.pop().close()
        self._origins.clear()

    # -- connections --------------------------------------------------------------------------

    def _add_origin(self, base: str) -> _Origin:
        if len(self._origins) >= 1024:
            # Local functions get a new port on each rollout: forget upstreams with nothing idle.
            self._origins = {key: known for key, known in self._origins.items() if known.idle}
        origin = self._origins[base] = _Origin(base)
        return origin

    async def _checkout(self, origin: _Origin, loop: asyncio.AbstractEventLoop) -> _Connection:
        """The warmest usable idle connection to ``origin``, else a new one (``Unreached`` if not)."""
        idle = origin.idle
        stale_before = loop.time() - self.keepalive_expiry
        while idle:
            connection = idle.pop()
            connection.idle_in = None
            # Closed by the server, or holding bytes nobody asked for (say a 408 before closing):
            # it cannot carry a request. Nothing has been sent on it, so a fresh one is safe.
            if connection.closed or connection.unasked or connection.idle_since < stale_before:
                connection.close()
                continue
            return connection
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, connection = await loop.create_connection(_Connection, origin.host, origin.port)
        except TimeoutError:
            raise Unreached(f"no connection within {self.connect_timeout:g}s") from None
        except OSError as exc:
            raise Unreached(str(exc) or type(exc).__name__) from None
        connection.generation = origin.generation
        return connection

    def _checkin(self, origin: _Origin, connection: _Connection, loop: asyncio.AbstractEventLoop) -> None:
        if len(origin.idle) >= self.max_idle or connection.generation != origin.generation:
            connection.close()
            return
        connection.idle_since = loop.time()
        connection.idle_in = origin.idle
        origin.idle.append(connection)


def _request_head(
    method: str, origin: _Origin, target: str, headers: list[tuple[bytes, bytes]], body: bytes
) -> bytes:
    if not (target.isascii() and target.isprintable() and " " not in target):
        # The caller's path came through the gateway's own HTTP parser, which may let bytes
        # past that are not for a request line: escape them rather than send them raw.
        target = urllib.parse.quote(target, safe=_TARGET_SAFE, encoding="latin-1")
    parts = [f"{method} {origin.prefix}{target} HTTP/1.1\r\nhost: ".encode("latin-1"), origin.host_header]
    for name, value in headers:
        parts += (b"\r\n", name, b": ", value)
    if body or method not in _NO_BODY_METHODS:
        parts.append(b"\r\ncontent-length: %d" % len(body))
    parts.append(b"\r\n\r\n")
    return b"".join(parts)
