"""A real authentication agent process whose clock is moved (libfaketime), against the server.

The agent enrolls and answers challenges as on a device; only its wall clock is moved, as
on a board whose NTP failed. The server, on the right time, must report the skew beyond
its tolerance and not within it, and certify the node either way.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from edgefaas.nodeauth.enrollment import enrollment_secret
from edgefaas.nodeauth.marks import CERTIFIED_LABEL, CLOCK_SKEW
from edgefaas.nodeauth.server import Node, ask_agent
from edgefaas.nodeauth.service import NodeAuthService, serve
from edgefaas.nodeauth.tls import ServerTls, pem_certificate

from .parsec_fakes import FakeParsecWithRsa
from .test_nodeauth_services import FakeNodes, running

pytestmark = [
    pytest.mark.unit,
    pytest.mark.skipif(
        not shutil.which("faketime"), reason="libfaketime is not installed (apt-get install faketime)"
    ),
]

KEY = b"c" * 32
REPO = Path(__file__).resolve().parents[2]
TOLERANCE_S = 30.0


@pytest.fixture
def server(tmp_path):
    nodes = FakeNodes([])
    svc = NodeAuthService(
        FakeParsecWithRsa(), nodes, tmp_path / "server", KEY, set(), 0, clock_tolerance=TOLERANCE_S
    )
    tls = ServerTls(svc.ca, ["127.0.0.1"])
    port = running(serve(svc, "127.0.0.1", 0, tls.context))
    (tmp_path / "ca.pem").write_bytes(pem_certificate(svc.ca_certificate))
    return svc, nodes, f"https://127.0.0.1:{port}"


def agent_with_clock(offset: str, url: str, node: str, state: Path):
    """The agent process under `faketime -f offset`; (process, its port)."""
    env = {**os.environ, "FAKETIME_DONT_FAKE_MONOTONIC": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    command = ["faketime", "-f", offset, sys.executable, "-m", "tests.unit.clock_agent"]
    process = subprocess.Popen(
        [*command, url, node, enrollment_secret(KEY, node), str(state), str(state.parent / "ca.pem")],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # faketime runs the agent as its child: a group of their own ends both, not faketime alone.
        start_new_session=True,
    )
    line = process.stdout.readline() if process.stdout else ""
    if not line.strip().isdigit():
        stop(process, signal.SIGKILL)
        _, err = process.communicate(timeout=10)
        pytest.fail(f"the agent under faketime {offset} did not start: {err[-2000:]}")
    return process, int(line)


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """End the agent and the faketime wrapper around it (their own process group)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    process.wait(timeout=10)


@pytest.mark.parametrize(
    ("offset", "expected_s", "reported"),
    [("+2h", 7200.0, True), ("-10m", -600.0, True), ("+5s", 5.0, False)],
)
def test_the_server_reports_a_moved_clock_beyond_tolerance_and_keeps_the_node_certified(
    tmp_path, server, offset, expected_s, reported
):
    svc, nodes, url = server
    # -10m: the agent, behind by more than the certificates' backdate, must still take the one it is issued.
    process, port = agent_with_clock(offset, url, "jetson-1", tmp_path / "agent")
    try:
        svc.certifier.ask = ask_agent(port, timeout=5.0)
        nodes.current["jetson-1"] = Node("jetson-1", "127.0.0.1", {})
        svc.review_once(full=True)
        svc.review_once(full=True)
    finally:
        stop(process)
    status = svc.status()["nodes"]["jetson-1"]
    assert status["certified"], status["reason"]
    assert nodes.current["jetson-1"].labels[CERTIFIED_LABEL] == "true"
    assert abs(status["clock_skew_s"] - expected_s) < 3.0, status
    assert status["clock_skew_reported"] is reported
    if reported:
        assert len(nodes.clock_reports) == 1  # two reviews, one episode, one report
        assert abs(float(nodes.current["jetson-1"].annotations[CLOCK_SKEW]) - expected_s) < 3.0
    else:
        assert nodes.clock_reports == []
