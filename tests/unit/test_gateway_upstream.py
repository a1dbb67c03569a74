"""edgefaas.gateway.upstream.Pool against scripted raw HTTP servers (scratch, not in the tree)."""

from __future__ import annotations

import asyncio
import gzip

import pytest

from edgefaas.gateway.upstream import MAX_HEAD_BYTES, AnswerTimeout, BrokenAnswer, Pool, Unreached

pytestmark = pytest.mark.unit


class Scripted:
    """A TCP server; ``answer(request_head, body) -> bytes | None`` (None: close without answering)."""

    def __init__(self, answer, close_after: bool = False) -> None:
        self.answer = answer
        self.close_after = close_after
        self.connections = 0
        self.requests: list[tuple[bytes, bytes]] = []
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                self.requests.append((head, body))
                out = self.answer(head, body)
                if out is None:
                    writer.close()
                    return
                if asyncio.iscoroutine(out):
                    out = await out
                writer.write(out)
                await writer.drain()
                if self.close_after:
                    writer.close()
                    return
        finally:
            writer.close()

    async def stop(self) -> None:
        self.server.close()
        for writer in self.writers:
            writer.close()


def run(coro):
    import os

    if os.environ.get("UVLOOP"):
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)


OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


def test_keep_alive_reuses_one_connection_and_sends_host_and_length():
    async def main():
        server = Scripted(lambda head, body: OK)
        base = await server.start()
        pool = Pool()
        for _ in range(5):
            answer = await pool.request("POST", base, "/a?b=1", [(b"x-custom", b"v")], b"", 5)
            assert answer.status == 200 and answer.body == b"ok"
            assert answer.headers == [(b"Content-Type", b"text/plain"), (b"Content-Length", b"2")]
        assert server.connections == 1
        head = server.requests[0][0]
        assert head.startswith(b"POST /a?b=1 HTTP/1.1\r\n")
        assert b"\r\nhost: 127.0.0.1:" in head and b"\r\nx-custom: v\r\n" in head
        assert b"content-length: 0" in head
        assert b"accept-encoding" not in head.lower() and b"user-agent" not in head.lower()
        # GET with no body: no Content-Length
        await pool.request("GET", base, "/", [], b"", 5)
        assert b"content-length" not in server.requests[-1][0].lower()
        await pool.aclose()
        await server.stop()

    run(main())


def test_chunked_and_read_to_close_and_gzip_raw():
    async def main():
        gz = gzip.compress(b"hello world")
        answers = iter(
            [
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(gz) + gz,
                b"HTTP/1.1 200 OK\r\n\r\nuntil close",
            ]
        )
        server = Scripted(lambda head, body: next(answers))
        base = await server.start()
        pool = Pool()
        first = await pool.request("GET", base, "/", [], b"", 5)
        assert first.body == b"hello world"
        second = await pool.request("GET", base, "/", [], b"", 5)
        assert second.body == gz  # relayed as sent, with its Content-Encoding
        assert server.connections == 1

        async def close_soon():
            return b"HTTP/1.1 200 OK\r\n\r\nuntil close"

        server.answer = lambda head, body: None
        # read-to-close body needs the server to close: use close_after
        server.close_after = True
        server.answer = lambda head, body: b"HTTP/1.1 200 OK\r\n\r\nuntil close"
        third = await pool.request("GET", base, "/", [], b"", 5)
        assert third.body == b"until close"
        await pool.aclose()
        await server.stop()

    run(main())


def test_connection_close_is_honoured_and_a_new_connection_made():
    async def main():
        server = Scripted(
            lambda h, b: b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
            close_after=True,
        )
        base = await server.start()
        pool = Pool()
        for _ in range(3):
            assert (await pool.request("POST", base, "/", [], b"x", 5)).body == b"ok"
        assert server.connections == 3
        await pool.aclose()
        await server.stop()

    run(main())


def test_an_idle_connection_the_server_closed_is_replaced_without_resending():
    async def main():
        server = Scripted(lambda h, b: OK)
        base = await server.start()
        pool = Pool()
        await pool.request("POST", base, "/", [], b"1", 5)
        for writer in server.writers:
            writer.close()  # the server's idle timeout
        await asyncio.sleep(0.05)
        await pool.request("POST", base, "/", [], b"2", 5)
        assert server.connections == 2 and [b for _, b in server.requests] == [b"1", b"2"]
        await pool.aclose()
        await server.stop()

    run(main())


def test_unasked_bytes_on_an_idle_connection_are_not_taken_as_the_answer():
    async def main():
        server = Scripted(lambda h, b: OK)
        base = await server.start()
        pool = Pool()
        await pool.request("POST", base, "/", [], b"1", 5)
        server.writers[0].write(b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n")
        await asyncio.sleep(0.05)
        answer = await pool.request("POST", base, "/", [], b"2", 5)
        assert answer.status == 200 and server.connections == 2
        await pool.aclose()
        await server.stop()

    run(main())


def test_expired_idle_connections_are_not_reused():
    async def main():
        server = Scripted(lambda h, b: OK)
        base = await server.start()
        pool = Pool(keepalive_expiry=0.05)
        await pool.request("GET", base, "/", [], b"", 5)
        await asyncio.sleep(0.1)
        await pool.request("GET", base, "/", [], b"", 5)
        assert server.connections == 2
        await pool.aclose()
        await server.stop()

    run(main())


def test_interim_answers_are_skipped_and_head_204_have_no_body():
    async def main():
        answers = iter(
            [
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\nx",
                b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",  # HEAD
                b"HTTP/1.1 204 No Content\r\n\r\n",
                OK,
            ]
        )
        server = Scripted(lambda h, b: next(answers))
        base = await server.start()
        pool = Pool()
        assert (await pool.request("POST", base, "/", [], b"", 5)).status == 201
        head = await pool.request("HEAD", base, "/", [], b"", 5)
        assert head.status == 200 and head.body == b""
        assert (await pool.request("DELETE", base, "/", [], b"", 5)).status == 204
        assert (await pool.request("GET", base, "/", [], b"", 5)).body == b"ok"
        assert server.connections == 1
        await pool.aclose()
        await server.stop()

    run(main())


@pytest.mark.parametrize(
    "bad",
    [
        b"HTTP/1.1 200 OK\r\nX: a\nEvil: b\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: a\r\n folded\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX : a\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x2\r\nab\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
        b"HTTP/2 200\r\n\r\n",
        b"garbage\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        # What the parser leaves to the client: head size, version, the end of framed bodies.
        b"HTTP/1.1 200 OK\r\nX: " + b"a" * MAX_HEAD_BYTES + b"\r\n\r\n",
        b"HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/0.9 200 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 099 Odd\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n",
    ],
)
def test_malformed_answers_are_broken(bad):
    async def main():
        server = Scripted(lambda h, b: bad, close_after=True)
        base = await server.start()
        pool = Pool()
        with pytest.raises(BrokenAnswer):
            await pool.request("POST", base, "/", [], b"", 5)
        await pool.aclose()
        await server.stop()

    run(main())


def test_header_values_are_trimmed_trailers_dropped_and_other_codings_read_to_close():
    async def main():
        answers = iter(
            [
                b"HTTP/1.1 200 OK\r\nX-A:  padded \t\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"2\r\nab\r\n0\r\nX-Trailer: 1\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nraw",
            ]
        )
        server = Scripted(lambda h, b: next(answers))
        base = await server.start()
        pool = Pool()
        first = await pool.request("GET", base, "/", [], b"", 5)
        assert first.body == b"ab"
        assert first.headers == [(b"X-A", b"padded"), (b"Transfer-Encoding", b"chunked")]
        server.close_after = True
        second = await pool.request("GET", base, "/", [], b"", 5)
        assert second.body == b"raw" and second.headers == [(b"Transfer-Encoding", b"gzip")]
        await pool.aclose()
        await server.stop()

    run(main())


def test_bytes_after_an_answer_are_not_taken_for_the_next_one():
    async def main():
        server = Scripted(lambda h, b: OK + b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale")
        base = await server.start()
        pool = Pool()
        for _ in range(2):
            assert (await pool.request("GET", base, "/", [], b"", 5)).body == b"ok"
        assert server.connections == 2
        await pool.aclose()
        await server.stop()

    run(main())


def test_a_head_that_never_ends_is_broken_once_over_the_limit_not_at_the_timeout():
    async def main():
        endless = b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * (MAX_HEAD_BYTES + 1024)
        server = Scripted(lambda h, b: endless)  # and the connection stays open
        base = await server.start()
        pool = Pool()
        with pytest.raises(BrokenAnswer, match="head over"):
            await pool.request("GET", base, "/", [], b"", 30)
        await pool.aclose()
        await server.stop()

    run(main())


def test_te_and_cl_together_use_chunked_and_do_not_keep_the_connection():
    async def main():
        server = Scripted(
            lambda h, b: (
                b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"2\r\nab\r\n0\r\n\r\n"
            )
        )
        base = await server.start()
        pool = Pool()
        assert (await pool.request("GET", base, "/", [], b"", 5)).body == b"ab"
        assert (await pool.request("GET", base, "/", [], b"", 5)).body == b"ab"
        assert server.connections == 2
        await pool.aclose()
        await server.stop()

    run(main())


def test_closed_without_an_answer_is_broken_not_retried():
    async def main():
        server = Scripted(lambda h, b: None)
        base = await server.start()
        pool = Pool()
        with pytest.raises(BrokenAnswer):
            await pool.request("POST", base, "/", [], b"x", 5)
        assert len(server.requests) == 1
        await pool.aclose()
        await server.stop()

    run(main())


def test_refused_is_unreached_and_a_slow_answer_times_out():
    async def main():
        server = Scripted(lambda h, b: OK)
        base = await server.start()
        await server.stop()
        pool = Pool()
        with pytest.raises(Unreached):
            await pool.request("GET", base, "/", [], b"", 5)

        async def slow():
            await asyncio.sleep(1)
            return OK

        server = Scripted(lambda h, b: slow())
        base = await server.start()
        with pytest.raises(AnswerTimeout):
            await pool.request("GET", base, "/", [], b"", 0.2)
        # the timed-out connection is not reused
        server.answer = lambda h, b: OK
        assert (await pool.request("GET", base, "/", [], b"", 5)).status == 200
        assert server.connections == 2
        await pool.aclose()
        await server.stop()

    run(main())


def test_connect_timeout_is_unreached():
    async def main():
        pool = Pool(connect_timeout=0.2)
        loop = asyncio.get_running_loop()

        async def hangs(*args, **kwargs):
            await asyncio.sleep(10)

        loop.create_connection = hangs  # the SYN goes unanswered
        with pytest.raises(Unreached, match="no connection within"):
            await pool.request("GET", "http://127.0.0.1:9", "/", [], b"", 5)

    run(main())


def test_no_free_slot_in_time_is_unreached_and_slots_come_back():
    async def main():
        async def slow():
            await asyncio.sleep(0.3)
            return OK

        server = Scripted(lambda h, b: slow())
        base = await server.start()
        pool = Pool(max_connections=1)
        first = asyncio.create_task(pool.request("GET", base, "/", [], b"", 5))
        await asyncio.sleep(0.05)
        with pytest.raises(Unreached):
            await pool.request("GET", base, "/", [], b"", 0.1)
        assert (await first).status == 200
        assert (await pool.request("GET", base, "/", [], b"", 5)).status == 200
        await pool.aclose()
        await server.stop()

    run(main())


def test_cancelled_calls_close_their_connection_and_free_the_slot():
    async def main():
        async def slow():
            await asyncio.sleep(0.5)
            return OK

        server = Scripted(lambda h, b: slow())
        base = await server.start()
        pool = Pool(max_connections=1)
        task = asyncio.create_task(pool.request("GET", base, "/", [], b"", 5))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        server.answer = lambda h, b: OK
        assert (await pool.request("GET", base, "/", [], b"", 1)).status == 200
        assert server.connections == 2
        await pool.aclose()
        await server.stop()

    run(main())


def test_odd_bytes_in_the_target_are_escaped_and_big_bodies_pass():
    async def main():
        big = b"z" * (5 << 20)
        server = Scripted(lambda h, b: b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(b) + b)
        base = await server.start()
        pool = Pool()
        answer = await pool.request("PUT", base, "/caf\xe9/a%20b?q=\x7f", [], big, 10)
        assert answer.body == big
        assert server.requests[0][0].startswith(b"PUT /caf%E9/a%20b?q=%7F HTTP/1.1\r\n")
        await pool.aclose()
        await server.stop()

    run(main())


def test_concurrent_calls_get_their_own_answers():
    async def main():
        async def echo(body):
            await asyncio.sleep(0.01)
            return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body

        server = Scripted(lambda h, b: echo(b))
        base = await server.start()
        pool = Pool()
        for _ in range(3):
            bodies = [str(i).encode() * 10 for i in range(50)]
            answers = await asyncio.gather(*(pool.request("POST", base, "/", [], b, 5) for b in bodies))
            assert [a.body for a in answers] == bodies
        assert server.connections == 50
        await pool.aclose()
        await server.stop()

    run(main())


def test_forgetting_an_upstream_never_reuses_its_connections_idle_or_busy():
    """After a function's update its address is the same but its old pods may still answer."""

    async def main():
        release = asyncio.Event()

        async def answer(head, body):
            if body == b"slow":
                await release.wait()
            return OK

        server = Scripted(answer)
        base = await server.start()
        pool = Pool()
        await pool.request("POST", base, "/", [], b"fast", 5)  # one idle connection now
        busy = asyncio.create_task(pool.request("POST", base, "/", [], b"slow", 5))
        await asyncio.sleep(0.05)  # the slow call took the idle connection, still in flight
        assert server.connections == 1
        pool.forget(base)
        release.set()
        assert (await busy).status == 200  # the call in flight finishes on its connection...
        await pool.request("POST", base, "/", [], b"fast", 5)
        assert server.connections == 2  # ...which is not reused: a new one reaches the new pods
        await pool.request("POST", base, "/", [], b"fast", 5)
        assert server.connections == 2  # and connections made after forgetting are kept alive
        pool.forget("http://127.0.0.1:1")  # an upstream never called: nothing to do
        await pool.aclose()
        await server.stop()

    run(main())
