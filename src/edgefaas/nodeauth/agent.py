"""The authentication agent on every K3S agent device: answers the server's challenges.

A small HTTP service (standard library only) next to the device's Parsec service. It
answers POST /v1/challenge from the authentication server's address alone (anyone else
gets 403, and the deploy opens its port to that address only), with the flow's answer:
the challenge encrypted to the server, signed by this node's Parsec-held key, and the
node's certificate, plus its wall-clock time (for the server to measure its skew).
GET /v1/health says whether it holds a certificate.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from edgefaas.nodeauth.flow import answer
from edgefaas.nodeauth.http import json_service

log = logging.getLogger("edgefaas.nodeauth.agent")


class Agent:
    """What a request needs: the node's Parsec client, its certificate, and who may ask."""

    def __init__(self, parsec: Any, certificate_file: Path, allowed: Iterable[str], node_key: str) -> None:
        self.parsec = parsec
        self.certificate_file = certificate_file
        self.allowed = set(allowed)
        self.node_key = node_key

    def respond(self, peer: str, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        """(status, JSON answer) for one request; never raises for anything a caller sends."""
        if self.allowed and peer not in self.allowed:
            log.warning("refused %s %s from %s: not the authentication server", method, path, peer)
            return 403, {"error": f"{peer} is not the authentication server"}
        if (method, path) == ("GET", "/v1/health"):
            return 200, {"certificate": self.certificate_file.exists()}
        if (method, path) != ("POST", "/v1/challenge"):
            return 404, {"error": f"no {method} {path}: use POST /v1/challenge or GET /v1/health"}
        if not self.certificate_file.exists():
            return 409, {"error": "this node holds no certificate yet (not enrolled)"}
        try:
            challenge = json.loads(body)
            if not isinstance(challenge, dict):
                raise ValueError("expected a JSON object")
            reply = answer(self.parsec, challenge, self.certificate_file.read_bytes(), node_key=self.node_key)
            reply["time"] = time.time()
        except ValueError as exc:
            return 400, {"error": f"bad challenge: {exc}"}
        log.info("answered a challenge for node %s from %s", reply["node"], peer)
        return 200, reply


def serve(agent: Agent, host: str, port: int) -> ThreadingHTTPServer:
    """A started server (call serve_forever); port 0 picks a free one."""
    return json_service(agent.respond, host, port, log)
