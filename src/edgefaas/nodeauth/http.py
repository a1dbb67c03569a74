"""The small JSON-over-HTTP service both nodeauth services are (standard library only).

Agents run on boards with little to spare and the server must keep running whatever its
callers send, so each is a ThreadingHTTPServer around one function: (peer, method, path,
body) -> (status, JSON answer). A body over the limit, a bad Content-Length or an
exception inside become a 4xx/503 answer, never a dead service.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import ssl
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_BODY = 64 * 1024
DRAIN_LIMIT = 16 * MAX_BODY  # an oversized body up to this is read and dropped before the 413
HANDSHAKE_TIMEOUT = 10.0  # seconds a TLS client has to finish its handshake and request
Respond = Callable[[str, str, str, bytes], tuple[int, dict[str, Any]]]


def json_service(
    respond: Respond, host: str, port: int, log: logging.Logger, tls: ssl.SSLContext | None = None
) -> ThreadingHTTPServer:
    """A started server answering with `respond` (call serve_forever); port 0 picks a free one.

    With `tls` it speaks HTTPS; each connection's handshake runs in that connection's own
    thread, so a client that stalls in it holds up nobody else.
    """

    class Handler(BaseHTTPRequestHandler):
        def _serve(self, method: str) -> None:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if length > MAX_BODY:
                status, reply = 413, {"error": f"body over {MAX_BODY} bytes (Content-Length {length})"}
                if length <= DRAIN_LIMIT:
                    # Read and dropped, so a TLS client still sending it gets this answer, not a reset.
                    for _ in range(0, length, MAX_BODY):
                        self.rfile.read(min(MAX_BODY, length))
                        length -= MAX_BODY
                self.close_connection = True
            elif length < 0:
                status, reply = 400, {"error": "Content-Length is not a number of bytes"}
            else:
                body = self.rfile.read(length) if length else b""
                try:
                    status, reply = respond(self.client_address[0], method, self.path, body)
                except Exception as exc:  # Parsec away and the like: say so, keep serving
                    log.exception("%s %s failed", method, self.path)
                    status, reply = 503, {"error": f"{type(exc).__name__}: {exc}"}
            data = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def log_message(self, format: str, *args: Any) -> None:  # the services log their own lines
            return

    class Server(ThreadingHTTPServer):
        def finish_request(self, request: Any, client_address: Any) -> None:
            if tls is None:
                super().finish_request(request, client_address)
                return
            request.settimeout(HANDSHAKE_TIMEOUT)
            try:
                wrapped = tls.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError) as exc:
                log.info("TLS handshake with %s failed: %s", client_address[0], exc)
                return
            try:
                super().finish_request(wrapped, client_address)
            finally:
                with contextlib.suppress(OSError):
                    wrapped.shutdown(socket.SHUT_RDWR)
                wrapped.close()

    return Server((host, port), Handler)
