"""What the deploys' own facts make of their commands' output (edgefaas.deploy.facts)."""

from __future__ import annotations

import subprocess

import pytest

from edgefaas.deploy.facts import (
    AdmissionWebhookCurrent,
    K3sImage,
    KubeNamespaceLabel,
    NodeCertificate,
    NvidiaGpu,
    OutOfDateFunctions,
    UnpackedArtifact,
)

pytestmark = pytest.mark.unit


def test_a_gpu_is_there_when_either_device_node_is_listed():
    assert NvidiaGpu().process(["/dev/nvhost-ctrl-gpu"]) is True
    assert NvidiaGpu().process(["", " "]) is False


def test_an_unpacked_artifact_is_known_only_when_complete(tmp_path):
    fact = UnpackedArtifact()
    home = tmp_path / "tritonserver"
    (home / "bin").mkdir(parents=True)

    def read() -> str | None:
        command = fact.command(home=str(home), binary="bin/tritonserver")
        done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True)
        return fact.process(done.stdout.splitlines())

    (home / ".artifact-sha256").write_text("abc\n")
    assert read() is None, "no binary: an unpack cut short"
    (home / "bin" / "tritonserver").write_text("#!/bin/sh\n")
    (home / "bin" / "tritonserver").chmod(0o755)
    assert read() == "abc"
    (home / ".artifact-sha256").unlink()
    assert read() is None


def test_an_image_is_present_only_when_crictl_says_so():
    command = K3sImage().command(socket="/run/k3s/containerd/containerd.sock", ref="docker.io/x/y:1")
    assert "unix:///run/k3s/containerd/containerd.sock" in command and "docker.io/x/y:1" in command
    assert K3sImage().process(["present"]) is True
    assert K3sImage().process(["missing"]) is False
    assert K3sImage().process([]) is False


def test_a_node_certificate_is_checked_as_the_agent_s_user_and_valid_only_when_it_says_so():
    command = NodeCertificate().command(
        user="edgefaas-nodeauth",
        venv="/opt/edgefaas/venv",
        server_url="https://10.77.0.11:8470",
        secret_file="/etc/edgefaas/nodeauth/enrollment.secret",
        node="jetson 1",
        state_dir="/var/lib/edgefaas/nodeauth",
        ca_file="/etc/edgefaas/ca.pem",
    )
    assert command.startswith("id -u edgefaas-nodeauth >/dev/null 2>&1 && runuser -u edgefaas-nodeauth -- ")
    assert "/opt/edgefaas/venv/bin/edgefaas nodeauth enroll --check" in command
    assert "--node 'jetson 1'" in command and "--state-dir /var/lib/edgefaas/nodeauth" in command
    assert "--ca-file /etc/edgefaas/ca.pem" in command
    assert command.endswith("|| echo needed")
    assert NodeCertificate().process(["valid"]) is True
    assert NodeCertificate().process(["needed"]) is False
    assert NodeCertificate().process(["valid", "needed"]) is False


def test_out_of_date_functions_are_asked_of_the_device_s_edgefaas_with_the_manifest_on_stdin():
    command = OutOfDateFunctions().command(
        edgefaas="/opt/edgefaas/venv/bin/edgefaas",
        url="http://127.0.0.1:8080",
        password_file="/var/lib/edgefaas/gateway/admin-password",
        wanted='[{"service": "it\'s"}]',
    )
    assert command.startswith("if test -x /opt/edgefaas/venv/bin/edgefaas; then printf %s ")
    assert "| /opt/edgefaas/venv/bin/edgefaas sync-functions --check --url http://127.0.0.1:8080 " in command
    assert "--password-file /var/lib/edgefaas/gateway/admin-password --manifest -" in command
    done = subprocess.run(["sh", "-c", command.replace("test -x", "test -e")], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip().splitlines()[-1].startswith("exit ")


def test_out_of_date_functions_are_read_only_from_a_clear_answer():
    process = OutOfDateFunctions().process
    assert process(["FuncA: missing", "FuncB: differs in limits", "exit 1"]) == ["FuncA", "FuncB"]
    assert process(["exit 0"]) == []
    assert process(["exit 2"]) is None, "the gateway did not answer"
    assert process(["exit 1"]) is None, "an unexpected error names nothing"
    assert process([]) is None


def test_namespace_labels_are_read_with_the_dotted_key_escaped_and_nothing_when_k3s_is_away():
    fact = KubeNamespaceLabel()
    command = fact.command("edgefaas.io/parsec-uid")
    assert "-l edgefaas.io/parsec-uid" in command and r"labels.edgefaas\.io/parsec-uid" in command
    assert command.endswith("|| true")
    assert fact.process(["edgefaas-tenant-a=20001", "edgefaas-tenant-b=20002", ""]) == {
        "edgefaas-tenant-a": "20001",
        "edgefaas-tenant-b": "20002",
    }
    assert fact.process([]) == {}


def test_the_webhook_is_current_only_when_kubectl_diff_finds_no_difference():
    fact = AdmissionWebhookCurrent()
    command = fact.command("/opt/edgefaas/venv", "/etc/edgefaas/ca.pem")
    assert "nodeauth admission-config --ca-file /etc/edgefaas/ca.pem" in command
    assert "kubectl diff -f -" in command
    assert fact.process(["current"]) is True
    assert fact.process(["differs"]) is False and fact.process([]) is False


@pytest.mark.parametrize(
    ("config_exit", "diff_exit", "answer"),
    [(1, 0, "differs"), (0, 0, "current"), (0, 1, "differs")],
)
def test_the_webhook_is_not_current_when_its_configuration_cannot_be_made(
    tmp_path, config_exit, diff_exit, answer
):
    """A first deploy reads the fact before the server exists: `kubectl diff` of nothing is no
    difference, so a configuration that could not be made must not count as current."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    bins = tmp_path / "bin"
    bins.mkdir()
    for path, body in (
        (venv / "bin/edgefaas", f"echo 'kind: ValidatingWebhookConfiguration'; exit {config_exit}"),
        (bins / "kubectl", f"cat >/dev/null; exit {diff_exit}"),
    ):
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)
    command = AdmissionWebhookCurrent().command(str(venv), "/etc/edgefaas/ca.pem")
    env = {"PATH": f"{bins}:/usr/bin:/bin"}
    out = subprocess.run(["sh", "-c", command], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == [answer]


def test_no_labelled_namespace_is_an_empty_table_not_none():
    # pyinfra answers default() when the command prints nothing (no namespace, or K3S away).
    assert KubeNamespaceLabel.default() == {}


def test_plaintext_secrets_are_the_current_revisions_not_encrypted(tmp_path):
    """Run against a kine-shaped SQLite table: old revisions and deleted keys do not count."""
    import sqlite3

    from edgefaas.deploy.facts import PLAINTEXT_SECRETS_SQL, PlaintextSecrets

    db = sqlite3.connect(tmp_path / "state.db")
    db.execute("CREATE TABLE kine (id INTEGER PRIMARY KEY, name TEXT, deleted INTEGER, value BLOB)")
    rows = [
        ("/registry/secrets/a/old", 0, b"k8s\x00plain"),  # rewritten since: encrypted now
        ("/registry/secrets/a/old", 0, b"k8s:enc:aescbc:v1:aescbckey:xx"),
        ("/registry/secrets/a/clear", 0, b"k8s\x00\nplain"),
        ("/registry/secrets/a/gone", 1, b"k8s\x00plain"),
        ("/registry/configmaps/a/cm", 0, b"k8s\x00plain"),
    ]
    db.executemany("INSERT INTO kine (name, deleted, value) VALUES (?, ?, ?)", rows)
    names = [row[0] for row in db.execute(PLAINTEXT_SECRETS_SQL)]
    assert names == ["/registry/secrets/a/clear"]
    assert PlaintextSecrets().process([*names, ""]) == ["/registry/secrets/a/clear"]
    assert PlaintextSecrets.default() == []
