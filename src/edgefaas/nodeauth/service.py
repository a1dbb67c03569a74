"""The authentication server as it runs on the K3S server: the review loop and its HTTP endpoint.

The loop reviews new and uncertified nodes every `interval` seconds (a node that joins is
certified within about that), and every node, certified ones too, every `recheck` seconds
and whenever the revocation list changes (so `edgefaas nodeauth revoke` takes effect at
once). A failing pass (the Kubernetes API away while K3S restarts, Parsec restarting) is
logged and tried again: the server never dies of what it talks to.

The HTTPS endpoint (stdlib, port 8472; its certificate from the same CA, since enrollment
secrets travel to it) serves:
  GET  /v1/ca        the CA certificate and the revoked serials (public), which agents check
                     their certificate against; with ?node=NAME also the proof that this server
                     holds the enrollment key (edgefaas.nodeauth.enrollment.bootstrap_ca)
  POST /v1/enroll    {"node", "request" (PKCS#10 DER, base64), "secret"} -> {"certificate"}
  GET  /v1/status    each node's last decision, its clock skew, and the recent authentication times
  POST /v1/server-certificate  {"host", "names", "request", "secret"} -> {"certificate"}: a TLS
                     server certificate for a service host (edgefaas.nodeauth.server_certificates)
"""

from __future__ import annotations

import base64
import binascii
import collections
import datetime as dt
import json
import logging
import ssl
import threading
import time
import urllib.parse
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from edgefaas.nodeauth.certificates import CertificateAuthority
from edgefaas.nodeauth.clock import DEFAULT_TOLERANCE_S
from edgefaas.nodeauth.enrollment import (
    Enroller,
    EnrollmentRefused,
    Records,
    ca_proof,
    enrollment_secret,
    load_or_make_ca_certificate,
)
from edgefaas.nodeauth.flow import server_public_key
from edgefaas.nodeauth.http import json_service
from edgefaas.nodeauth.server import Certifier, Decision, NodeApi, ask_agent
from edgefaas.nodeauth.server_certificates import ServerCertificates

log = logging.getLogger("edgefaas.nodeauth.service")


class NodeAuthService:
    def __init__(
        self,
        parsec: Any,
        nodes: NodeApi,
        state_dir: Path,
        enrollment_key: bytes,
        exempt: set[str],
        agent_port: int,
        interval: float = 1.0,
        recheck: float = 30.0,
        grace: float = 120.0,
        agent_timeout: float = 3.0,
        clock_tolerance: float = DEFAULT_TOLERANCE_S,
    ) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.records = Records(state_dir)
        self.ca = ca = CertificateAuthority(parsec)
        self.ca_certificate = load_or_make_ca_certificate(ca, state_dir)
        self.enroller = Enroller(ca, self.ca_certificate, enrollment_key, self.records)
        self.server_certificates = ServerCertificates(ca, enrollment_key)
        self.certifier = Certifier(
            nodes,
            ask_agent(agent_port, agent_timeout),
            parsec,
            self.ca_certificate,
            server_public_key(parsec),
            exempt,
            revoked=lambda: self.records.revocations().serials,
            grace=grace,
            clock_tolerance=clock_tolerance,
        )
        self.interval, self.recheck = interval, recheck
        self.last: dict[str, dict[str, Any]] = {}
        self.auth_seconds: collections.deque[float] = collections.deque(maxlen=200)
        self._lock = threading.Lock()

    def review_once(self, full: bool) -> dict[str, Decision]:
        decided = self.certifier.review(full)
        now = dt.datetime.now(dt.UTC)
        with self._lock:
            for name, decision in decided.items():
                self.auth_seconds.append(decision.seconds)
                joined = decision.joined
                previous = self.last.get(name, {})
                self.last[name] = {
                    "action": decision.action,
                    "certified": decision.verdict.certified,
                    "reason": decision.verdict.reason,
                    "seconds": round(decision.seconds, 4),
                    "at": now.isoformat(),
                    "joined": joined.isoformat() if joined else None,
                    # Join to this decision: what "certified within 5 s" measures.
                    "after_join_s": round((now - joined).total_seconds(), 3) if joined else None,
                    # The node's clock minus this server's (None: no proven answer this time).
                    "clock_skew_s": round(decision.clock.skew_s, 2) if decision.clock else None,
                    "clock_skew_reported": name in self.certifier.skewed,
                }
                if decision.action == "certified":
                    self.last[name]["certified_after_join_s"] = self.last[name]["after_join_s"]
                elif decision.action == "confirmed" and "certified_after_join_s" in previous:
                    self.last[name]["certified_after_join_s"] = previous["certified_after_join_s"]
        return decided

    def run(self, stop: threading.Event) -> None:
        """Review until `stop` is set; never raises for a failed pass."""
        last_full, stamp = 0.0, None
        while not stop.is_set():
            now = time.monotonic()
            current = self.records.revocations_stamp()
            full = now - last_full >= self.recheck or current != stamp
            try:
                self.review_once(full)
                if full:
                    last_full, stamp = now, current
            except Exception as exc:  # the next pass tries again
                log.warning(
                    "review failed, retrying in %.1f s: %s: %s", self.interval, type(exc).__name__, exc
                )
            stop.wait(self.interval)

    def status(self) -> dict[str, Any]:
        with self._lock:
            timings = sorted(self.auth_seconds)
            return {
                "nodes": dict(self.last),
                "authentications": len(timings),
                "auth_ms_p50": round(timings[len(timings) // 2] * 1000, 2) if timings else None,
            }

    def respond(self, peer: str, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        """(status, JSON answer) for one request; never raises for anything a caller sends."""
        path, _, query = path.partition("?")
        if (method, path) == ("GET", "/v1/ca"):
            revoked = sorted(f"{serial:x}" for serial in self.records.revocations().serials)
            answer: dict[str, Any] = {
                "certificate": base64.b64encode(self.ca_certificate).decode(),
                "revoked": revoked,
            }
            node = urllib.parse.parse_qs(query).get("node", [""])[0]
            if node:
                secret = enrollment_secret(self.enroller.key, node)
                answer["proof"] = ca_proof(secret, self.ca_certificate)
            return 200, answer
        if (method, path) == ("GET", "/v1/status"):
            return 200, self.status()
        if (method, path) == ("POST", "/v1/server-certificate"):
            return self._server_certificate(body)
        if (method, path) != ("POST", "/v1/enroll"):
            return 404, {
                "error": f"no {method} {path}: use GET /v1/ca, POST /v1/enroll, POST /v1/server-certificate "
                "or GET /v1/status"
            }
        try:
            data = json.loads(body)
            if not isinstance(data, dict):
                raise ValueError("expected a JSON object")
            node, secret, request = data.get("node"), data.get("secret"), data.get("request")
            if not (isinstance(node, str) and node and isinstance(secret, str) and isinstance(request, str)):
                raise ValueError('"node", "secret" and "request" must be non-empty strings')
            der = base64.b64decode(request, validate=True)
        except (ValueError, binascii.Error) as exc:
            return 400, {"error": f"bad enrollment: {exc}"}
        try:
            certificate = self.enroller.enroll(node, der, secret)
        except EnrollmentRefused as exc:
            log.warning("enrollment of %s refused: %s", node, exc)
            return 403, {"error": str(exc)}
        log.info("enrolled %s", node)
        return 200, {"certificate": base64.b64encode(certificate).decode()}

    def _server_certificate(self, body: bytes) -> tuple[int, dict[str, Any]]:
        try:
            data = json.loads(body)
            if not isinstance(data, dict):
                raise ValueError("expected a JSON object")
            host, secret, request, names = (data.get(k) for k in ("host", "secret", "request", "names"))
            if not (isinstance(host, str) and host and isinstance(secret, str) and isinstance(request, str)):
                raise ValueError('"host", "secret" and "request" must be non-empty strings')
            if not isinstance(names, list):
                raise ValueError('"names" must be a list of addresses and DNS names')
            der = base64.b64decode(request, validate=True)
        except (ValueError, binascii.Error) as exc:
            return 400, {"error": f"bad server-certificate request: {exc}"}
        try:
            certificate = self.server_certificates.issue(host, der, names, secret)
        except EnrollmentRefused as exc:
            log.warning("server certificate for %s refused: %s", host, exc)
            return 403, {"error": str(exc)}
        log.info("issued a server certificate to %s for %s", host, ", ".join(names))
        return 200, {"certificate": base64.b64encode(certificate).decode()}


def serve(
    service: NodeAuthService, host: str, port: int, tls: ssl.SSLContext | None = None
) -> ThreadingHTTPServer:
    """A started server (call serve_forever), HTTPS with `tls`; port 0 picks a free one."""
    return json_service(service.respond, host, port, log, tls=tls)
