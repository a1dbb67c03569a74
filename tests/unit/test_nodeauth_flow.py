"""The challenge-response of node certification: who is certified, who is refused, and why."""

from __future__ import annotations

import base64

import pytest

from edgefaas.nodeauth.certificates import CertificateAuthority, certificate_request
from edgefaas.nodeauth.flow import answer, judge, new_challenge, server_public_key

from .parsec_fakes import FakeParsecWithRsa

pytestmark = pytest.mark.unit


class Node:
    """An agent device: its own Parsec, its node key, and (maybe) a certificate from `ca`."""

    def __init__(self, name: str, ca: CertificateAuthority | None) -> None:
        self.name = name
        self.parsec = FakeParsecWithRsa()
        request = certificate_request(self.parsec, name)
        self.certificate = ca.issue(request) if ca else b""


@pytest.fixture
def server():
    parsec = FakeParsecWithRsa()
    ca = CertificateAuthority(parsec)
    return parsec, ca, ca.self_signed(), server_public_key(parsec)


def run(server, node: Node, challenged: str | None = None, certificate: bytes | None = None, revoked=()):
    parsec, _, ca_cert, public = server
    challenge = new_challenge(challenged or node.name, public)
    reply = answer(node.parsec, challenge, node.certificate if certificate is None else certificate)
    return judge(parsec, challenge, reply, ca_cert, frozenset(revoked))


def test_a_node_with_a_certificate_from_the_ca_is_certified(server):
    verdict = run(server, Node("jetson-1", server[1]))
    assert verdict.certified and verdict.serial and "challenge answered" in verdict.reason


def test_an_impostor_whose_key_the_ca_never_signed_is_refused(server):
    rogue_ca = CertificateAuthority(FakeParsecWithRsa())  # signs its own certificate
    verdict = run(server, Node("jetson-2", rogue_ca))
    assert not verdict.certified and "certificate rejected" in verdict.reason


def test_a_stolen_certificate_without_its_key_is_refused(server):
    honest = Node("jetson-1", server[1])
    thief = Node("jetson-1", None)  # another key, presenting jetson-1's certificate
    verdict = run(server, thief, certificate=honest.certificate)
    assert not verdict.certified and "did not sign this challenge" in verdict.reason


def test_another_nodes_certificate_and_a_revoked_one_are_refused(server):
    sonic = Node("sonic-2", server[1])
    assert "not to node 'jetson-1'" in run(server, sonic, challenged="jetson-1").reason
    revoked = run(server, sonic, revoked={run(server, sonic).serial})
    assert not revoked.certified and "revoked" in revoked.reason


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("garbage", "malformed answer"),
        ({}, "ciphertext is missing"),
        ({"ciphertext": "!!", "signature": "", "certificate": ""}, "not base64"),
        (
            {"ciphertext": base64.b64encode(b"x" * 256).decode(), "signature": "", "certificate": ""},
            "decrypt",
        ),
    ],
)
def test_garbage_answers_are_refusals_with_a_reason(server, reply, reason):
    parsec, _, ca_cert, public = server
    verdict = judge(parsec, new_challenge("jetson-1", public), reply, ca_cert)
    assert not verdict.certified and reason in verdict.reason


def test_an_answer_to_another_challenge_is_refused(server):
    parsec, _, ca_cert, public = server
    node = Node("jetson-1", server[1])
    old = answer(node.parsec, new_challenge("jetson-1", public), node.certificate)
    verdict = judge(parsec, new_challenge("jetson-1", public), old, ca_cert)  # a replay
    assert not verdict.certified and "came back wrong" in verdict.reason
