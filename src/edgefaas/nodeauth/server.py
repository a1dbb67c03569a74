"""The authentication server on the K3S server: certify every node, remove those that fail.

For each node the server has not certified (and, on each full review, each certified one,
so a revoked certificate is noticed), it sends a challenge to the node's authentication
agent and judges the answer (edgefaas.nodeauth.flow). Certified: the node is labelled
`edgefaas.io/certified=true` and annotated with when and which certificate. Refused,
garbage, a closed connection or no answer in time: the node is cordoned, its pods are
evicted, it is deleted from the cluster, and a Kubernetes Event on it says why.

One case waits: a node whose agent is not there yet (connection refused, or the agent
holds no certificate yet) is quarantined, cordoned with an Event, for `grace` seconds,
then removed if it still cannot answer. A device's K3S agent may register before its
authentication agent has started or enrolled (at boot, or while a deploy is still
running); removing it at once would leave it out of the cluster until K3S restarts.

Each answer also carries the agent's wall-clock time: a node whose clock is off by more
than `clock_tolerance` seconds is reported (edgefaas.nodeauth.clock) and stays certified,
since every decision here is made by the server's own clock.

The state lives in the nodes' own labels and annotations, so a server restarted mid-flow
simply reviews again: no node is certified twice or forgotten. The K3S server itself is
exempt: it is the authority.

Kubernetes is reached through the narrow NodeApi (KubernetesNodes in production), so the
decisions are tested without a cluster.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from edgefaas.nodeauth.clock import DEFAULT_TOLERANCE_S, ClockReading, beyond, describe, reading
from edgefaas.nodeauth.flow import Verdict, judge, new_challenge
from edgefaas.nodeauth.marks import CERTIFICATE_SERIAL, CERTIFIED_AT, CERTIFIED_LABEL, CLOCK_SKEW, QUARANTINED

# Answers that mean "no agent here yet" rather than "an agent that fails": they get the grace.
NOT_YET = (409, 503)

AGENT_PORT = 8471
log = logging.getLogger("edgefaas.nodeauth.server")


@dataclass(frozen=True)
class Node:
    name: str
    address: str
    labels: dict[str, str]
    annotations: dict[str, str] = field(default_factory=dict)
    joined: dt.datetime | None = None  # when it registered (its creationTimestamp)


def _host_absent(reason: object) -> bool:
    """An address nobody answers ARP for: a device powered off or cut off, not a failing agent."""
    return isinstance(reason, OSError) and reason.errno in (
        errno.EHOSTUNREACH,
        errno.EHOSTDOWN,
        errno.ENETUNREACH,
    )


class NodeApi(Protocol):
    def nodes(self) -> list[Node]: ...
    def certify(
        self, node: str, labels: dict[str, str], annotations: dict[str, str], uncordon: bool
    ) -> None: ...
    def quarantine(self, node: str, reason: str) -> None: ...
    def remove(self, node: str, reason: str) -> None: ...
    def report_clock(self, node: str, skew_s: float | None, message: str) -> None:
        """A node's clock went beyond the tolerance (skew_s, seconds) or came back (None)."""


@dataclass(frozen=True)
class Decision:
    """What one review did to one node, and how long its authentication took."""

    verdict: Verdict
    action: str  # certified | confirmed | quarantined | waiting | removed
    seconds: float
    joined: dt.datetime | None = None
    clock: ClockReading | None = None  # the node's clock against the server's, if it answered


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
        revoked: Callable[[], set[int] | frozenset[int]] = set,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        grace: float = 0.0,
        clock_tolerance: float = DEFAULT_TOLERANCE_S,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.api, self.ask, self.parsec = nodes, ask, parsec
        self.ca_certificate, self.public_key = ca_certificate, public_key
        self.exempt, self.revoked, self.clock, self.grace = exempt, revoked, clock, grace
        self.absent_since: dict[str, dt.datetime] = {}  # nodes whose agent is not there yet
        # The skew is measured against the real wall clock, apart from `clock` (the grace's).
        self.clock_tolerance, self.wall = clock_tolerance, wall
        self.skewed: set[str] = set()  # nodes in a skew episode (reported, not yet cleared)
        self.readings: dict[str, ClockReading] = {}  # the last reading from each answering node

    def authenticate(self, node: Node) -> tuple[Verdict, bool]:
        """The flow against one node's agent, and whether a refusal means "no agent yet"."""
        challenge = new_challenge(node.name, self.public_key)
        self.readings.pop(node.name, None)
        try:
            sent = self.wall()
            reply = self.ask(node.address, challenge)
            received = self.wall()
        except urllib.error.HTTPError as exc:
            return Verdict(False, f"the agent at {node.address} answered {exc.code}"), exc.code in NOT_YET
        except urllib.error.URLError as exc:
            # Refused, or no connection in time (a SONiC ACL drops what it was not told to open):
            # no agent there yet. An agent that accepted and then stalls is a failure below.
            if isinstance(exc.reason, ConnectionRefusedError | TimeoutError) or _host_absent(exc.reason):
                return Verdict(
                    False, f"no authentication agent answers at {node.address}: {exc.reason}"
                ), True
            return Verdict(False, f"no valid answer from the agent at {node.address}: {exc.reason}"), False
        except (OSError, ValueError) as exc:  # timed out, closed, or not JSON
            return Verdict(False, f"no valid answer from the agent at {node.address}: {exc}"), False
        verdict = judge(self.parsec, challenge, reply, self.ca_certificate, frozenset(self.revoked()))
        measured = reading(reply.get("time"), sent, received) if isinstance(reply, dict) else None
        if measured is not None and verdict.certified:  # only a proven node's report counts
            self.readings[node.name] = measured
        return verdict, False

    def watch_clock(self, node: str) -> None:
        """Report a node whose clock goes beyond the tolerance, once per episode, and its end."""
        measured = self.readings.get(node)
        if measured is None:  # no answer this time: the episode neither starts nor ends
            return
        message = describe(measured, self.clock_tolerance)
        if beyond(measured, self.clock_tolerance):
            if node not in self.skewed:
                log.warning("%s: %s; it stays certified (validity is decided by this clock)", node, message)
                self.api.report_clock(node, round(measured.skew_s, 1), message)
                self.skewed.add(node)
        elif node in self.skewed:
            log.info("%s: clock back within tolerance: %s", node, message)
            self.api.report_clock(node, None, message)
            self.skewed.discard(node)

    def review(self, full: bool = True) -> dict[str, Decision]:
        """One pass over the cluster's nodes (certified ones only if `full`); what was done to each."""
        decided: dict[str, Decision] = {}
        nodes = self.api.nodes()
        for gone in set(self.absent_since) - {n.name for n in nodes}:
            del self.absent_since[gone]
        for gone in (self.skewed | set(self.readings)) - {n.name for n in nodes}:
            self.skewed.discard(gone)
            self.readings.pop(gone, None)
        for node in nodes:
            if CLOCK_SKEW in node.annotations:  # an episode reported before this server (re)started
                self.skewed.add(node.name)
            certified = node.labels.get(CERTIFIED_LABEL) == "true"
            # A quarantined node is asked on every pass: it gets work back as soon as it answers.
            if node.name in self.exempt or (certified and not full and QUARANTINED not in node.annotations):
                continue
            started = time.perf_counter()
            verdict, not_yet = self.authenticate(node)
            action = self._act(node, certified, verdict, not_yet)
            if action != "removed":
                self.watch_clock(node.name)
            seconds = time.perf_counter() - started
            decided[node.name] = Decision(verdict, action, seconds, node.joined, self.readings.get(node.name))
        return decided

    def _act(self, node: Node, certified: bool, verdict: Verdict, not_yet: bool) -> str:
        now = self.clock()
        if verdict.certified:
            self.absent_since.pop(node.name, None)
            quarantined = QUARANTINED in node.annotations
            if certified and not quarantined:
                return "confirmed"
            log.info("%s certified: %s", node.name, verdict.reason)
            self.api.certify(
                node.name,
                {CERTIFIED_LABEL: "true"},
                {CERTIFIED_AT: now.isoformat(), CERTIFICATE_SERIAL: f"{verdict.serial:x}"},
                uncordon=quarantined,
            )
            return "certified"
        waited = (now - self.absent_since.setdefault(node.name, now)).total_seconds() if not_yet else None
        if waited is not None and waited < self.grace:
            if QUARANTINED in node.annotations:
                return "waiting"
            # A certified node whose agent stops answering (a power cut, a cut link) is cordoned,
            # not removed, for the grace: when it answers again it is certified again before it
            # gets work; only one silent past the grace is removed.
            log.warning("%s quarantined for up to %.0f s: %s", node.name, self.grace, verdict.reason)
            self.api.quarantine(node.name, verdict.reason)
            return "quarantined"
        self.absent_since.pop(node.name, None)
        log.warning("%s refused and removed: %s", node.name, verdict.reason)
        self.api.remove(node.name, verdict.reason)
        return "removed"
