"""`edgefaas nodeauth`: the operator's commands, and their answers to bad input."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from edgefaas.cli import main
from edgefaas.nodeauth.certificates import CertificateAuthority
from edgefaas.nodeauth.enrollment import Records, enrollment_secret
from edgefaas.nodeauth.tls import pem_certificate

from .parsec_fakes import FakeParsec
from .test_nodeauth_services import free_port


def run(*args: str):
    return CliRunner().invoke(main, ["nodeauth", *args])


def test_revoke_then_admit_records_the_ban_and_lifts_it_and_admit_prints_the_secret(tmp_path):
    key = tmp_path / "enrollment.key"
    key.write_text("k" * 40 + "\n")
    records = Records(tmp_path)
    records.record_issue("jetson-1", 0x1F)
    revoked = run("revoke", "jetson-1", "--state-dir", str(tmp_path))
    assert revoked.exit_code == 0 and revoked.output.strip() == "revoked jetson-1: serials 1f"
    assert records.revocations().nodes == {"jetson-1"} and records.revocations().serials == {0x1F}
    admitted = run("admit", "jetson-1", "--state-dir", str(tmp_path), "--enrollment-key-file", str(key))
    assert admitted.exit_code == 0
    assert admitted.stdout.strip() == enrollment_secret(b"k" * 40, "jetson-1")
    assert records.revocations().nodes == frozenset() and records.revocations().serials == {0x1F}


@pytest.mark.parametrize(
    ("content", "words"), [(None, "cannot read the enrollment key"), ("short", "shorter")]
)
def test_admit_without_a_usable_key_says_what_is_wrong(tmp_path, content, words):
    key = tmp_path / "enrollment.key"
    if content is not None:
        key.write_text(content)
    result = run("admit", "jetson-1", "--state-dir", str(tmp_path), "--enrollment-key-file", str(key))
    assert result.exit_code == 1 and words in result.output


def test_a_corrupt_revocation_list_is_named_not_overwritten(tmp_path):
    (tmp_path / "revoked.json").write_text("{not json")
    result = run("revoke", "jetson-1", "--state-dir", str(tmp_path))
    assert result.exit_code != 0 and "revoked.json is not valid JSON" in str(result.exception)
    assert (tmp_path / "revoked.json").read_text() == "{not json"


def test_enroll_and_status_name_the_server_they_cannot_reach(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("s\n")
    url = f"https://127.0.0.1:{free_port()}"
    ca = tmp_path / "ca.pem"
    ca.write_bytes(pem_certificate(CertificateAuthority(FakeParsec()).self_signed()))
    trusted = ["--ca-file", str(ca)]
    enrolled = run(
        "enroll", "--server-url", url, "--secret-file", str(secret), "--state-dir", str(tmp_path), *trusted
    )
    assert enrolled.exit_code == 1 and f"cannot reach the authentication server at {url}" in enrolled.output
    assert run(
        "enroll", "--check", "--server-url", url, "--secret-file", str(secret), "--state-dir", str(tmp_path)
    ).output.startswith("needed")
    status = run("status", "--url", url, *trusted)
    assert status.exit_code == 1 and f"no status from {url}" in status.output
    untrusted = run("status", "--url", url, "--ca-file", str(tmp_path / "none.pem"))
    assert untrusted.exit_code == 1 and "no CA certificate at" in untrusted.output
    trust = run("trust", "--server-url", url, "--secret-file", str(secret), "--out", str(tmp_path / "t.pem"))
    assert trust.exit_code == 1 and "no CA certificate from the authentication server" in trust.output
    missing = run("enroll", "--server-url", url, "--secret-file", str(tmp_path / "nope"))
    assert missing.exit_code == 1 and "cannot read the enrollment secret" in missing.output


def test_status_prints_each_nodes_last_decision(monkeypatch, tmp_path):
    import io
    import urllib.request

    body = {
        "nodes": {
            "jetson-1": {"action": "certified", "seconds": 0.08, "reason": "certificate 1f from the CA"},
            "jetson-2": {
                "action": "confirmed",
                "seconds": 0.05,
                "reason": "certificate 2a from the CA",
                "clock_skew_s": -600.2,
                "clock_skew_reported": True,
            },
        },
        "authentications": 1,
        "auth_ms_p50": 80.0,
    }

    class Opener:
        def open(self, url, timeout):
            assert url == "https://10.0.0.1:8472/v1/status"
            return io.BytesIO(json.dumps(body).encode())

    monkeypatch.setattr(urllib.request, "build_opener", lambda *a: Opener())
    ca = tmp_path / "ca.pem"
    ca.write_bytes(pem_certificate(CertificateAuthority(FakeParsec()).self_signed()))
    result = run("status", "--url", "https://10.0.0.1:8472", "--ca-file", str(ca))
    assert result.exit_code == 0
    assert "jetson-1" in result.output and "certified" in result.output and "80.0 ms" in result.output
    assert "-600.2!" in result.output  # a node whose clock is off beyond the tolerance
