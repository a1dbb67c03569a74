"""A node's clock against the authentication server's: measured, reported once per episode,
and never the clock that decides a certificate's validity."""

from __future__ import annotations

import datetime as dt

import pytest

from edgefaas.nodeauth.certificates import (
    NODE_KEY,
    CertificateAuthority,
    CertificateRejected,
    certificate_request,
    check_certificate,
)
from edgefaas.nodeauth.clock import ClockReading, beyond, describe, reading
from edgefaas.nodeauth.marks import CERTIFIED_LABEL, CLOCK_SKEW
from edgefaas.nodeauth.server import Node

from .parsec_fakes import FakeParsecWithRsa
from .test_nodeauth_services import FakeNodes, agent_for, certifier
from .test_nodeauth_services import authority as authority  # a fixture, used by its name

pytestmark = pytest.mark.unit


def test_the_skew_is_the_agents_time_minus_the_middle_of_the_exchange():
    measured = reading(1_000_107.0, sent=1_000_000.0, received=1_000_004.0)
    assert measured == ClockReading(skew_s=105.0, error_s=2.0)
    assert reading(999_990.0, 1_000_000.0, 1_000_000.0).skew_s == -10.0


@pytest.mark.parametrize("sent", [None, "12", True, float("nan"), float("inf"), [1]])
def test_an_answer_without_a_usable_time_gives_no_reading(sent):
    assert reading(sent, 1.0, 2.0) is None


def test_a_skew_is_beyond_the_tolerance_only_when_the_measurement_error_cannot_explain_it():
    assert beyond(ClockReading(31.0, 0.0), 30.0)
    assert beyond(ClockReading(-31.0, 0.0), 30.0)
    assert not beyond(ClockReading(30.0, 0.0), 30.0)
    assert not beyond(ClockReading(31.0, 2.0), 30.0)  # maybe only 29 s off


def test_the_description_says_which_way_and_against_what_tolerance():
    assert "7200.0 s ahead of" in describe(ClockReading(7200.0, 0.01), 30)
    assert "600.0 s behind" in describe(ClockReading(-600.0, 0.01), 30)
    assert "tolerance 30 s" in describe(ClockReading(-600.0, 0.01), 30)


class MovedWall:
    """The server's wall clock, moved against the agent's (which runs on the real one)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        import time

        return time.time() + self.offset


def test_a_skew_beyond_tolerance_is_reported_once_per_episode_and_the_node_stays_certified(
    tmp_path, authority
):
    port, _ = agent_for(tmp_path, "jetson-1", authority[1])
    nodes = FakeNodes([Node("jetson-1", "127.0.0.1", {})])
    wall = MovedWall()
    server = certifier(authority, nodes, port, clock_tolerance=30.0, wall=wall)

    wall.offset = 10.0  # within tolerance: certified, nothing reported, but measured
    decided = server.review()
    assert decided["jetson-1"].action == "certified"
    assert decided["jetson-1"].clock is not None and -11 < decided["jetson-1"].clock.skew_s < -9
    assert nodes.clock_reports == []

    wall.offset = -7200.0  # the node is two hours ahead of the server
    for _ in range(3):
        assert server.review()["jetson-1"].action == "confirmed"
    assert len(nodes.clock_reports) == 1  # one episode, one report
    node, skew, message = nodes.clock_reports[0]
    assert node == "jetson-1" and 7190 < skew < 7210 and "ahead of" in message
    assert nodes.current["jetson-1"].annotations[CLOCK_SKEW] == f"{skew:.1f}"
    assert nodes.current["jetson-1"].labels[CERTIFIED_LABEL] == "true"
    assert nodes.removed == {}

    wall.offset = 0.0  # the node's clock is set right: the episode ends, once
    server.review()
    server.review()
    assert [(n, s) for n, s, _ in nodes.clock_reports[1:]] == [("jetson-1", None)]
    assert CLOCK_SKEW not in nodes.current["jetson-1"].annotations


def test_a_server_restarted_during_an_episode_clears_the_annotation_it_finds(tmp_path, authority):
    port, _ = agent_for(tmp_path, "jetson-1", authority[1])
    nodes = FakeNodes([Node("jetson-1", "127.0.0.1", {CERTIFIED_LABEL: "true"}, {CLOCK_SKEW: "7200.0"})])
    certifier(authority, nodes, port).review()  # a new server; the node's clock is right by now
    assert [(n, s) for n, s, _ in nodes.clock_reports] == [("jetson-1", None)]
    assert CLOCK_SKEW not in nodes.current["jetson-1"].annotations


def test_a_node_behind_the_ca_by_more_than_the_backdate_still_takes_its_new_certificate():
    ca = CertificateAuthority(FakeParsecWithRsa())
    ca_certificate = ca.self_signed()
    certificate = ca.issue(certificate_request(FakeParsecWithRsa(), "jetson-1", NODE_KEY))
    node_now = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    with pytest.raises(CertificateRejected, match="not valid before"):
        check_certificate(certificate, ca_certificate, now=node_now, node="jetson-1")
    check_certificate(certificate, ca_certificate, now=node_now, node="jetson-1", check_not_before=False)
    # A node a little behind (under the 5-minute backdate) accepts it even by its own clock.
    check_certificate(certificate, ca_certificate, now=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=4))
