"""The authentication agent over real HTTP, and the server's decisions on a fake cluster."""

from __future__ import annotations

import datetime as dt
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from edgefaas.nodeauth.agent import Agent, serve
from edgefaas.nodeauth.certificates import NODE_KEY, CertificateAuthority, certificate_request
from edgefaas.nodeauth.flow import server_public_key
from edgefaas.nodeauth.marks import CERTIFIED_LABEL, CLOCK_SKEW, QUARANTINED
from edgefaas.nodeauth.server import Certifier, Node, ask_agent

from .parsec_fakes import FakeParsecWithRsa

pytestmark = pytest.mark.unit


class FakeNodes:
    """The cluster as the server sees it: nodes, their labels, and what was done to them."""

    def __init__(self, nodes: list[Node]) -> None:
        self.current = {n.name: n for n in nodes}
        self.removed: dict[str, str] = {}
        self.annotations: dict[str, dict[str, str]] = {}
        self.cordoned: set[str] = set()
        self.certified_times: dict[str, int] = {}
        self.clock_reports: list[tuple[str, float | None, str]] = []

    def nodes(self) -> list[Node]:
        return list(self.current.values())

    def certify(self, node: str, labels: dict[str, str], annotations: dict[str, str], uncordon: bool) -> None:
        old = self.current[node]
        kept = {k: v for k, v in old.annotations.items() if not (uncordon and k == QUARANTINED)}
        self.current[node] = Node(old.name, old.address, {**old.labels, **labels}, {**kept, **annotations})
        self.annotations[node] = annotations
        self.certified_times[node] = self.certified_times.get(node, 0) + 1
        if uncordon:
            self.cordoned.discard(node)

    def quarantine(self, node: str, reason: str) -> None:
        old = self.current[node]
        self.current[node] = Node(old.name, old.address, old.labels, {**old.annotations, QUARANTINED: reason})
        self.cordoned.add(node)

    def remove(self, node: str, reason: str) -> None:
        del self.current[node]
        self.removed[node] = reason

    def report_clock(self, node: str, skew_s: float | None, message: str) -> None:
        self.clock_reports.append((node, skew_s, message))
        old = self.current[node]
        annotations = {k: v for k, v in old.annotations.items() if k != CLOCK_SKEW}
        if skew_s is not None:
            annotations[CLOCK_SKEW] = f"{skew_s:.1f}"
        self.current[node] = Node(old.name, old.address, old.labels, annotations)


def running(server: ThreadingHTTPServer) -> int:
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]


@pytest.fixture
def authority():
    parsec = FakeParsecWithRsa()
    ca = CertificateAuthority(parsec)
    return parsec, ca, ca.self_signed(), server_public_key(parsec)


def agent_for(
    tmp_path, name: str, ca: CertificateAuthority | None, allowed=("127.0.0.1",)
) -> tuple[int, Agent]:
    parsec = FakeParsecWithRsa()
    certificate = tmp_path / f"{name}.crt"
    request = certificate_request(parsec, name)
    if ca is not None:
        certificate.write_bytes(ca.issue(request))
    agent = Agent(parsec, certificate, allowed, NODE_KEY)
    server = serve(agent, "127.0.0.1", 0)
    return running(server), agent


def certifier(authority, nodes: FakeNodes, port: int, **kw) -> Certifier:
    parsec, _, ca_cert, public = authority
    return Certifier(nodes, ask_agent(port, timeout=1.0), parsec, ca_cert, public, exempt={"sonic-1"}, **kw)


def test_a_node_with_a_good_certificate_is_labelled_certified_once(tmp_path, authority):
    port, _ = agent_for(tmp_path, "jetson-1", authority[1])
    nodes = FakeNodes([Node("sonic-1", "127.0.0.9", {}), Node("jetson-1", "127.0.0.1", {})])
    server = certifier(authority, nodes, port)
    assert server.review()["jetson-1"].verdict.certified
    assert nodes.current["jetson-1"].labels[CERTIFIED_LABEL] == "true"
    assert set(nodes.annotations["jetson-1"]) == {
        "edgefaas.io/certified-at",
        "edgefaas.io/certificate-serial",
    }
    first = dict(nodes.annotations)
    server.review()  # a second pass: still certified, not certified again
    assert nodes.annotations == first and "sonic-1" not in nodes.removed


def test_an_impostor_is_removed_with_the_reason(tmp_path, authority):
    port, _ = agent_for(tmp_path, "jetson-2", CertificateAuthority(FakeParsecWithRsa()))
    nodes = FakeNodes([Node("jetson-2", "127.0.0.1", {})])
    certifier(authority, nodes, port).review()
    assert "certificate rejected" in nodes.removed["jetson-2"]


def test_a_revoked_node_is_removed_on_the_next_review(tmp_path, authority):
    port, _ = agent_for(tmp_path, "jetson-1", authority[1])
    nodes = FakeNodes([Node("jetson-1", "127.0.0.1", {})])
    revoked: set[int] = set()
    server = certifier(authority, nodes, port, revoked=lambda: revoked)
    revoked.add(server.review()["jetson-1"].verdict.serial)
    server.review()
    assert "revoked" in nodes.removed["jetson-1"]


def free_port() -> int:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_no_agent_is_a_removal_not_a_crash(authority):
    nodes = FakeNodes([Node("sonic-3", "127.0.0.1", {})])
    certifier(authority, nodes, free_port()).review()
    assert "no authentication agent answers" in nodes.removed["sonic-3"]


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now


def test_a_node_whose_agent_is_not_up_yet_waits_cordoned_then_is_certified_and_uncordoned(
    tmp_path, authority
):
    port = free_port()
    nodes = FakeNodes([Node("jetson-1", "127.0.0.1", {})])
    clock = Clock()
    server = certifier(authority, nodes, port, grace=60, clock=clock)
    assert server.review()["jetson-1"].action == "quarantined"
    assert "jetson-1" in nodes.cordoned and not nodes.removed
    clock.now += dt.timedelta(seconds=30)
    assert server.review()["jetson-1"].action == "waiting"  # cordoned once, not again
    # The device's agent starts (on the port the server asks), holding a certificate.
    parsec = FakeParsecWithRsa()
    certificate = tmp_path / "jetson-1.crt"
    certificate.write_bytes(authority[1].issue(certificate_request(parsec, "jetson-1")))
    running(serve(Agent(parsec, certificate, (), NODE_KEY), "127.0.0.1", port))
    assert server.review()["jetson-1"].action == "certified"
    assert "jetson-1" not in nodes.cordoned and QUARANTINED not in nodes.current["jetson-1"].annotations


def test_a_certified_node_that_goes_silent_is_cordoned_not_removed_and_certified_again(tmp_path, authority):
    """A board losing power (or its link) for less than the grace keeps its place in the cluster,
    gets no work while silent, and is certified again, on the next pass, once it answers."""
    port = free_port()
    nodes = FakeNodes([Node("jetson-1", "127.0.0.1", {CERTIFIED_LABEL: "true"})])
    clock = Clock()
    server = certifier(authority, nodes, port, grace=60, clock=clock)
    assert server.review()["jetson-1"].action == "quarantined"
    assert "jetson-1" in nodes.cordoned and not nodes.removed
    clock.now += dt.timedelta(seconds=30)
    # Not only on full reviews: a quarantined node is asked on every pass.
    assert server.review(full=False)["jetson-1"].action == "waiting"
    parsec = FakeParsecWithRsa()
    certificate = tmp_path / "jetson-1.crt"
    certificate.write_bytes(authority[1].issue(certificate_request(parsec, "jetson-1")))
    running(serve(Agent(parsec, certificate, (), NODE_KEY), "127.0.0.1", port))
    assert server.review(full=False)["jetson-1"].action == "certified"
    assert "jetson-1" not in nodes.cordoned and not nodes.removed
    assert nodes.certified_times["jetson-1"] == 1


def test_an_unreachable_address_is_an_absent_agent_not_a_failing_one():
    import errno

    from edgefaas.nodeauth.server import _host_absent

    assert _host_absent(OSError(errno.EHOSTUNREACH, "No route to host"))
    assert not _host_absent(OSError(errno.ECONNRESET, "reset"))
    assert not _host_absent(ValueError("garbage"))


def test_a_node_whose_agent_never_comes_is_removed_when_the_grace_ends(authority):
    nodes = FakeNodes([Node("jetson-1", "127.0.0.1", {})])
    clock = Clock()
    server = certifier(authority, nodes, free_port(), grace=60, clock=clock)
    server.review()
    clock.now += dt.timedelta(seconds=61)
    assert server.review()["jetson-1"].action == "removed"
    assert "no authentication agent answers" in nodes.removed["jetson-1"]


def test_an_impostor_gets_no_grace(tmp_path, authority):
    port, _ = agent_for(tmp_path, "jetson-2", CertificateAuthority(FakeParsecWithRsa()))
    nodes = FakeNodes([Node("jetson-2", "127.0.0.1", {})])
    assert certifier(authority, nodes, port, grace=600).review()["jetson-2"].action == "removed"


def test_a_server_restarted_mid_flow_certifies_each_node_once_and_loses_none(tmp_path, authority):
    port, _ = agent_for(tmp_path, "jetson-1", authority[1])
    nodes = FakeNodes([Node("jetson-1", "127.0.0.1", {}), Node("sonic-2", "127.0.0.1", {})])
    crashing = certifier(authority, nodes, port)
    calls = 0
    real_ask = crashing.ask

    def crash_after_first(address, challenge):  # the server dies during the second node's flow
        nonlocal calls
        calls += 1
        if calls == 2:
            raise KeyboardInterrupt
        return real_ask(address, challenge)

    crashing.ask = crash_after_first
    with pytest.raises(KeyboardInterrupt):
        crashing.review()
    restarted = certifier(authority, nodes, port)  # a new process: only the cluster's labels remain
    restarted.review()
    restarted.review()
    certified = {n for n, node in nodes.current.items() if node.labels.get(CERTIFIED_LABEL) == "true"}
    # jetson-1 certified once; sonic-2 (an agent answering with jetson-1's certificate) removed.
    assert nodes.certified_times == {"jetson-1": 1} and certified == {"jetson-1"}
    assert "certificate rejected" in nodes.removed["sonic-2"]


class Misbehaving(BaseHTTPRequestHandler):
    mode = "garbage"

    def do_POST(self) -> None:
        if self.mode == "slow":
            time.sleep(2.5)
        if self.mode == "close":
            self.connection.close()
            return
        body = b"<html>not json</html>" if self.mode == "garbage" else b'{"ciphertext": 7}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        return


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("garbage", "no valid answer"),
        ("slow", "timed out"),
        ("close", "no valid answer"),
        ("wrong", "malformed answer"),
    ],
)
def test_an_agent_that_misbehaves_is_refused_with_the_reason(authority, mode, reason):
    handler = type("Handler", (Misbehaving,), {"mode": mode})
    port = running(ThreadingHTTPServer(("127.0.0.1", 0), handler))
    nodes = FakeNodes([Node("jetson-3", "127.0.0.1", {})])
    certifier(authority, nodes, port).review()
    assert reason in nodes.removed["jetson-3"]


def test_the_agent_answers_only_the_server_and_refuses_bad_requests(tmp_path, authority):
    port, agent = agent_for(tmp_path, "jetson-1", authority[1], allowed=("10.0.0.1",))
    assert agent.respond("10.0.0.2", "POST", "/v1/challenge", b"{}")[0] == 403
    assert agent.respond("10.0.0.1", "POST", "/v1/challenge", b"not json")[0] == 400
    assert agent.respond("10.0.0.1", "POST", "/v1/challenge", b'{"nonce": "!"}')[0] == 400
    assert agent.respond("10.0.0.1", "GET", "/v1/nothing", b"")[0] == 404
    with pytest.raises(urllib.error.HTTPError) as refused:  # over HTTP from a peer not allowed
        urllib.request.urlopen(
            urllib.request.Request(f"http://127.0.0.1:{port}/v1/challenge", data=b"{}", method="POST"),
            timeout=5,
        )
    assert (
        refused.value.code == 403
        and "not the authentication server" in json.loads(refused.value.read())["error"]
    )


def test_a_port_that_drops_connections_is_an_agent_not_there_yet_but_a_stalling_agent_fails(authority):
    nodes = FakeNodes([Node("sonic-2", "127.0.0.1", {}), Node("jetson-3", "127.0.0.1", {})])
    server = certifier(authority, nodes, free_port(), grace=60, clock=Clock())

    def ask(address, challenge):
        if challenge["node"] == "sonic-2":  # SONiC's ACL drops the SYN: connecting times out
            raise urllib.error.URLError(TimeoutError("timed out"))
        raise TimeoutError("timed out")  # connected, then no answer in time

    server.ask = ask
    decided = server.review()
    assert decided["sonic-2"].action == "quarantined" and "sonic-2" in nodes.cordoned
    assert decided["jetson-3"].action == "removed" and "timed out" in nodes.removed["jetson-3"]
