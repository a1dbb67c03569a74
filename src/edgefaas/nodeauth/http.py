"""The small JSON-over-HTTP service both nodeauth services are (standard library only).

Agents run on boards with little to spare and the server must keep running whatever its
callers send, so each is a ThreadingHTTPServer around one function: (peer, method, path,
body) -> (status, JSON answer). A body over the limit, a bad Content-Length or an
exception inside become a 4xx/503 answer, never a dead service.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_BODY = 64 * 1024
Respond = Callable[[str, str, str, bytes], tuple[int, dict[str, Any]]]


def json_service(respond: Respond, host: str, port: int, log: logging.Logger) -> ThreadingHTTPServer:
    """A started server answering with `respond` (call serve_forever); port 0 picks a free one."""

    class Handler(BaseHTTPRequestHandler):
        def _serve(self, method: str) -> None:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if length > MAX_BODY:
                status, reply = 413, {"error": f"body over {MAX_BODY} bytes (Content-Length {length})"}
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

    return ThreadingHTTPServer((host, port), Handler)
