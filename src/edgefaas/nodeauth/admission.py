"""The Parsec tenant webhook's HTTPS endpoint, inside the node authentication server.

The authentication server already runs on the K3S server with the blueprint's CA (its key
in Parsec) and a Kubernetes account, so it serves the admission webhook too
(edgefaas.parsec.tenancy decides). The API server calls it on loopback: the endpoint binds
127.0.0.1 only and no ACL opens it.

Its TLS key is made afresh, in memory only, at every start and every RENEW_DAYS after
(edgefaas.nodeauth.tls), certified by the Parsec-held CA for 127.0.0.1 for CERTIFICATE_DAYS;
the webhook configuration's caBundle is that CA's certificate, so the API server trusts each
new key without a change to the configuration, and a server that runs for months never
serves an expired certificate.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from typing import Any

from edgefaas.nodeauth.http import json_service
from edgefaas.nodeauth.tls import ServerTls
from edgefaas.parsec.tenancy import ADMIT_PATH, namespace_uid, review

ADMISSION_PORT = 8473
log = logging.getLogger("edgefaas.nodeauth.admission")


def namespace_uids(api_client: Any) -> Callable[[str], int | None]:
    """uid_of(namespace) read from the namespace's labels at each request (admissions are rare)."""
    from kubernetes import client

    core = client.CoreV1Api(api_client)

    def uid_of(namespace: str) -> int | None:
        return namespace_uid(core.read_namespace(namespace).metadata.labels)

    return uid_of


def responder(
    uid_of: Callable[[str], int | None],
) -> Callable[[str, str, str, bytes], tuple[int, dict[str, Any]]]:
    """The endpoint's (peer, method, path, body) -> (status, answer); a lookup failure is a 503,
    which the API server treats as the webhook failing (failurePolicy Fail: refused)."""

    def respond(peer: str, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        if (method, path.split("?")[0]) != ("POST", ADMIT_PATH):
            return 404, {"error": f"no {method} {path}: POST {ADMIT_PATH} an AdmissionReview"}
        try:
            answer = review(json.loads(body), uid_of)
        except ValueError as exc:  # json.JSONDecodeError is one
            return 400, {"error": f"bad AdmissionReview: {exc}"}
        if not answer["response"]["allowed"]:
            log.warning("refused: %s", answer["response"]["status"]["message"])
        return 200, answer

    return respond


def serve_admission(
    uid_of: Callable[[str], int | None], host: str, port: int, tls: ServerTls
) -> ThreadingHTTPServer:
    """A started HTTPS server for the webhook (call serve_forever); port 0 picks a free one."""
    return json_service(responder(uid_of), host, port, log, tls=tls.context)
