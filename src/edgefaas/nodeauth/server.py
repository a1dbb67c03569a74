"""The authentication server on the K3S server: certify every node, remove those that fail.

For each node the server has not certified (and, on each review, each certified one, so
a revoked certificate is noticed), it sends a challenge to the node's authentication
agent and judges the answer (edgefaas.nodeauth.flow). Certified: the node is labelled
`edgefaas.io/certified=true` and annotated with when and which certificate. Refused, no
agent, or no answer in time: the node is cordoned, its pods are evicted, it is deleted
from the cluster, and a Kubernetes Event on it says why. The state lives in the node's
own labels, so a server restarted mid-flow simply reviews again: no node is certified
twice or forgotten. The K3S server itself is exempt: it is the authority.

Kubernetes is reached through the narrow NodeApi (KubernetesNodes in production), so the
decisions are tested without a cluster.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from edgefaas.nodeauth.flow import Verdict, judge, new_challenge

CERTIFIED_LABEL = "edgefaas.io/certified"
CERTIFIED_AT = "edgefaas.io/certified-at"
CERTIFICATE_SERIAL = "edgefaas.io/certificate-serial"
AGENT_PORT = 8471
log = logging.getLogger("edgefaas.nodeauth.server")


@dataclass(frozen=True)
class Node:
    name: str
    address: str
    labels: dict[str, str]


class NodeApi(Protocol):
    def nodes(self) -> list[Node]: ...
    def certify(self, node: str, labels: dict[str, str], annotations: dict[str, str]) -> None: ...
    def remove(self, node: str, reason: str) -> None: ...


Ask = Callable[[str, dict[str, str]], Any]


def ask_agent(port: int = AGENT_PORT, timeout: float = 3.0) -> Ask:
    """POST the challenge to the node's agent; the answer's JSON (anything: judge checks it)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def ask(address: str, challenge: dict[str, str]) -> Any:
        request = urllib.request.Request(
            f"http://{address}:{port}/v1/challenge",
            data=json.dumps(challenge).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with opener.open(request, timeout=timeout) as reply:
            return json.loads(reply.read(64 * 1024))

    return ask


class Certifier:
    def __init__(
        self,
        nodes: NodeApi,
        ask: Ask,
        parsec: Any,
        ca_certificate: bytes,
        public_key: bytes,
        exempt: set[str],
        revoked: Callable[[], set[int]] = set,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.api, self.ask, self.parsec = nodes, ask, parsec
        self.ca_certificate, self.public_key = ca_certificate, public_key
        self.exempt, self.revoked, self.clock = exempt, revoked, clock

    def authenticate(self, node: Node) -> Verdict:
        """The flow against one node's agent; a silent, slow or broken agent is a refusal."""
        challenge = new_challenge(node.name, self.public_key)
        try:
            reply = self.ask(node.address, challenge)
        except urllib.error.HTTPError as exc:
            return Verdict(False, f"the agent at {node.address} answered {exc.code}")
        except (OSError, ValueError) as exc:  # refused, timed out, closed, or not JSON
            return Verdict(False, f"no answer from an agent at {node.address}: {exc}")
        return judge(self.parsec, challenge, reply, self.ca_certificate, frozenset(self.revoked()))

    def review(self) -> dict[str, Verdict]:
        """One pass over the cluster's nodes; what was decided for each (exempt ones left out)."""
        decided: dict[str, Verdict] = {}
        for node in self.api.nodes():
            if node.name in self.exempt:
                continue
            verdict = self.authenticate(node)
            decided[node.name] = verdict
            if verdict.certified:
                if node.labels.get(CERTIFIED_LABEL) != "true":
                    log.info("%s certified: %s", node.name, verdict.reason)
                    self.api.certify(
                        node.name,
                        {CERTIFIED_LABEL: "true"},
                        {CERTIFIED_AT: self.clock().isoformat(), CERTIFICATE_SERIAL: f"{verdict.serial:x}"},
                    )
            else:
                log.warning("%s refused and removed: %s", node.name, verdict.reason)
                self.api.remove(node.name, verdict.reason)
        return decided
