"""The gateway's hop to functions: a small HTTP/1.1 client with kept-alive connections.

Why not httpx: on this hop it cost 1.4-2.8 ms of CPU per call, more with concurrency
(httpcore's pool), and was the largest part of what the gateway adds to a call (README,
"Gateway overhead"). aiohttp's ClientSession costs ~0.3 ms; this client ~0.1 ms (one POST
with a small JSON answer, loopback, 1 and 16 in flight). The hop needs little of a general
client: plain http to a known host and port, a whole body out, a whole answer in. So this is
an asyncio Protocol per connection, a list of idle connections per upstream, a strict parser
for the answer's head, and Content-Length, chunked or read-to-close bodies. No cookies are
kept, no proxy is read from the environment, no redirect is followed, nothing is added to
the caller's headers but Host and Content-Length, and the answer's body is passed on as sent
(not decoded: its Content-Encoding goes to the caller with it).

What a failure means for a retry is the caller's decision, made on the exception's class:
``Unreached`` (the request never left this process: no connection, or none free in time) is
safe to try again anywhere; ``AnswerTimeout`` and ``BrokenAnswer`` come after the request was
written, when the function may have run, so they are not retried (as with httpx before). An
answer that says ``Connection: close`` (a draining runtime's do) or ends with the connection
leaves that connection unused after it; an idle one the server has closed, or sent anything
unasked on, is noticed before use and replaced with a new one, nothing having been sent on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import urllib.parse
from collections import deque
from dataclasses import dataclass
from typing import cast

# Limits on what an upstream may send before the gateway gives up on it as malformed.
MAX_HEAD_BYTES = 64 * 1024
MAX_CHUNK_LINE_BYTES = 4096

_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([1-9][0-9][0-9])(?: [^\x00-\x08\x0a-\x1f\x7f]*)?")
# A field name is a token; its value may hold no control character but tab (RFC 9110 5.5).
_FIELD = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([^\x00-\x08\x0a-\x1f\x7f]*?)[ \t]*")
# A request target is sent as printable ASCII; anything else the caller's path held is escaped.
_TARGET_SAFE = "".join(chr(c) for c in range(0x21, 0x7F))
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,15}")
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


class _Closed(Exception):
    """The peer closed the connection (or it broke) before the bytes wanted arrived."""


class _Connection(asyncio.Protocol):
    """One TCP connection: received bytes in a buffer, and one reader waiting for more of them."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.closed = False
        self.idle_since = 0.0
        self.generation = 0  # its origin's generation when it connected (see Pool.forget)
        # The idle list this connection sits in, so a close while idle takes it out at once.
        self.idle_in: deque[_Connection] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._want = 0  # wake the reader once the buffer holds this many bytes (0: any new byte)

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # No isinstance check: uvloop's transports do not derive from asyncio's classes.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self._waiter is not None and len(self.buffer) >= self._want:
            self._wake()

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
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- reading ------------------------------------------------------------------------------

    async def _wait_for(self, want: int) -> None:
        """Wait until the buffer holds ``want`` bytes (0: more than now); _Closed if none will come."""
        if self.closed:
            raise _Closed
        self._want = want
        self._waiter = self._loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    async def read_line(self, limit: int) -> bytes:
        """Up to and without the next CRLF; ``BrokenAnswer`` past ``limit`` bytes."""
        start = 0
        while True:
            end = self.buffer.find(b"\r\n", start)
            if end >= 0:
                line = bytes(self.buffer[:end])
                del self.buffer[: end + 2]
                return line
            if len(self.buffer) > limit:
                raise BrokenAnswer(f"a line over {limit} bytes")
            start = max(len(self.buffer) - 1, 0)
            await self._wait_for(0)

    async def read_head(self) -> bytes:
        """Up to and without the blank line that ends a head."""
        start = 0
        while True:
            end = self.buffer.find(b"\r\n\r\n", start)
            if end >= 0:
                head = bytes(self.buffer[:end])
                del self.buffer[: end + 4]
                return head
            if len(self.buffer) > MAX_HEAD_BYTES:
                raise BrokenAnswer(f"a head over {MAX_HEAD_BYTES} bytes")
            start = max(len(self.buffer) - 3, 0)
            await self._wait_for(0)

    async def read_exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            await self._wait_for(size)
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    async def read_to_close(self) -> bytes:
        try:
            while True:
                await self._wait_for(0)
        except _Closed:
            pass
        data = bytes(self.buffer)
        self.buffer.clear()
        return data

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
            # Sent now (asyncio writes at once, and buffers what the socket does not take).
            assert connection.transport is not None
            if len(body) < 65536:
                connection.transport.write(head + body)
            else:
                connection.transport.writelines((head, body))
            keep = False
            try:
                async with asyncio.timeout(timeout):
                    answer, keep = await _read_answer(connection, method)
            except TimeoutError:
                raise AnswerTimeout(f"no answer within {timeout:g}s") from None
            except _Closed:
                raise BrokenAnswer("the connection closed before the answer was complete") from None
            finally:
                if keep and not connection.closed and not connection.buffer:
                    self._checkin(origin, connection, loop)
                else:
                    connection.close()
            return answer
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
            if connection.closed or connection.buffer or connection.idle_since < stale_before:
                connection.close()
                continue
            return connection
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, connection = await loop.create_connection(
                    lambda: _Connection(loop), origin.host, origin.port
                )
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


async def _read_answer(connection: _Connection, method: str) -> tuple[Answer, bool]:
    """The answer to the request just sent, and whether the connection may carry another."""
    while True:
        status, version, headers = _parse_head(await connection.read_head())
        if status >= 200:
            break
        if status == 101:
            raise BrokenAnswer("the function switched protocols, which the gateway never asks for")
        # 100 Continue and other interim answers come before the real one: skip them.
    keep = version == 1
    lengths: list[bytes] = []
    codings = b""
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"content-length":
            lengths += (length.strip() for length in value.split(b","))
        elif lowered == b"transfer-encoding":
            codings += b"," + value.lower()
        elif lowered == b"connection" and b"close" in (token.strip() for token in value.lower().split(b",")):
            keep = False  # the runtime says so while draining: the next call goes to a new connection
    if method == "HEAD" or status in (204, 304):
        return Answer(status, headers, b""), keep
    if codings:
        # Transfer-Encoding overrides Content-Length; with both, the connection is not trusted
        # for another request (RFC 9112 6.3), nor when the body ends only with the connection.
        if lengths:
            keep = False
        if codings.rsplit(b",", 1)[-1].strip() == b"chunked":
            return Answer(status, headers, await _read_chunked(connection)), keep
        return Answer(status, headers, await connection.read_to_close()), False
    if lengths:
        if len(set(lengths)) != 1 or not lengths[0].isdigit():
            raise BrokenAnswer(f"a bad Content-Length: {b', '.join(lengths)!r}")
        return Answer(status, headers, await connection.read_exactly(int(lengths[0]))), keep
    return Answer(status, headers, await connection.read_to_close()), False


def _parse_head(head: bytes) -> tuple[int, int, list[tuple[bytes, bytes]]]:
    """Status, minor HTTP version, and raw headers, from a head without its blank line."""
    lines = head.split(b"\r\n")
    status_line = _STATUS_LINE.fullmatch(lines[0])
    if status_line is None:
        raise BrokenAnswer(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    headers = []
    for line in lines[1:]:
        field = _FIELD.fullmatch(line)
        if field is None:
            # Also a line folded onto the one before (obsolete), or a bare CR or LF in a line:
            # relaying what other parsers would read differently is how smuggling starts.
            raise BrokenAnswer(f"a malformed header line: {line[:80]!r}")
        headers.append((field[1], field[2]))
    return int(status_line[2]), int(status_line[1]), headers


async def _read_chunked(connection: _Connection) -> bytes:
    chunks = []
    while True:
        # The size in hex, then perhaps ";extensions", which mean nothing to the gateway.
        size_line = (await connection.read_line(MAX_CHUNK_LINE_BYTES)).split(b";", 1)[0].strip(b" \t")
        if not _CHUNK_SIZE.fullmatch(size_line):
            raise BrokenAnswer(f"a bad chunk size: {size_line[:40]!r}")
        size = int(size_line, 16)
        if size == 0:
            # Trailer fields are dropped, as they were with httpx; the blank line ends the body.
            while await connection.read_line(MAX_HEAD_BYTES):
                pass
            return b"".join(chunks)
        chunk = await connection.read_exactly(size + 2)
        if not chunk.endswith(b"\r\n"):
            raise BrokenAnswer("a chunk not ended by CRLF")
        chunks.append(chunk[:-2])
