"""Parsec checklist (SoW Task 2, deploys/parsec.py): the real service on every SONiC switch.

    pytest -m lab tests/integration/test_parsec.py [--inventory inventories/mylab.py]

Clients run on the device itself, as the operator's tools do: the Python client
(`edgefaas parsec`) and the upstream CLI (parsec-tool) side by side, under tenant uids
made for the test, because Parsec keys belong to the uid that made them.
"""

from __future__ import annotations

import json
import shlex
import uuid

import pytest
import yaml
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from tests.integration.support import wait_for

SOCKET = "/run/parsec/parsec.sock"
pytestmark = pytest.mark.devices("sonic")


@pytest.fixture
def tenants(device):
    """Two throwaway tenant accounts on the device; their keys and accounts go afterwards."""
    names = [f"pt-{uuid.uuid4().hex[:6]}-{t}" for t in "ab"]
    for name in names:
        device.host.run_test(f"useradd --system --no-create-home --shell /usr/sbin/nologin {name}")
    yield [Tenant(device.host, name) for name in names]
    for name in names:
        tenant = Tenant(device.host, name)
        tenant.run("edgefaas parsec keys --json >/dev/null 2>&1")
        for key in tenant.key_names():
            tenant.run(f"edgefaas parsec destroy-key {shlex.quote(key)}")
        device.host.run(f"userdel {name}")


class Tenant:
    """A command line on the device as one tenant uid (from /tmp, which any uid may enter)."""

    def __init__(self, host, user: str) -> None:
        self.host, self.user = host, user

    def run(self, command: str):
        with self.host.sudo(self.user):
            return self.host.run(f"cd /tmp && {command}")

    def ok(self, command: str) -> str:
        result = self.run(command)
        assert result.rc == 0, f"{command}: {result.stderr or result.stdout}"
        return result.stdout.strip()

    def key_names(self) -> list[str]:
        result = self.run("edgefaas parsec keys --json")
        return [k["name"] for k in json.loads(result.stdout)] if result.rc == 0 else []


def test_service_is_active_enabled_and_unprivileged(device):
    service = device.host.service("parsec")
    assert service.is_running, "parsec is not running"
    assert service.is_enabled, "parsec is not enabled"
    owners = [str(process.user) for process in device.host.process.filter(comm="parsec")]
    assert owners and set(owners) == {"parsec"}, f"parsec processes run as {owners}, not parsec alone"


def test_socket_directory_and_secrets_have_the_expected_modes(device):
    host = device.host
    socket = host.file(SOCKET)
    assert socket.is_socket
    assert socket.mode == 0o666  # any local user may talk to Parsec; keys are per uid
    runtime = host.file("/run/parsec")
    assert runtime.is_directory and runtime.user == "parsec" and runtime.mode == 0o755
    for path in ("/etc/parsec", "/var/lib/parsec"):
        assert host.file(path).mode == 0o700, path
    config = host.file("/etc/parsec/config.toml")
    assert config.user == "parsec"
    assert config.mode & 0o077 == 0, "config must not be readable by group or others"


def test_ping_and_providers_from_the_device(device):
    version = json.loads(device.host.check_output("edgefaas parsec ping --json"))
    assert (version["major"], version["minor"]) == (1, 0)
    providers = json.loads(device.host.check_output("edgefaas parsec providers --json"))
    names = [p["name"] for p in providers]
    assert names[0] == "MbedCrypto", "the crypto provider is the default (first)"
    assert names[-1] == "Core", "Core comes last"
    assert device.host.check_output("parsec-tool ping 2>/dev/null").strip() == "1.0"


def test_parsec_tool_signs_and_the_python_client_verifies(device, tenants):
    tenant = tenants[0]
    key, message = "interop-ecc", "edge node 42 says hello"
    tenant.ok(f"parsec-tool create-ecc-key -k {key}")
    signature = tenant.ok(f"parsec-tool sign -k {key} {shlex.quote(message)}").split()[-1]
    tenant.ok(f"edgefaas parsec verify {key} {signature} {shlex.quote(message)}")
    tampered = tenant.run(f"edgefaas parsec verify {key} {signature} {shlex.quote(message + '!')}")
    assert tampered.rc == 1 and "error:" in tampered.stderr


def test_python_client_encrypts_and_parsec_tool_decrypts(device, tenants):
    tenant = tenants[0]
    key, secret = "interop-rsa", "license 7f3a for FuncA"
    tenant.ok(f"edgefaas parsec generate-key {key} --type rsa-encrypt")
    ciphertext = tenant.ok(f"edgefaas parsec encrypt {key} {shlex.quote(secret)}")
    assert tenant.ok(f"parsec-tool decrypt -k {key} {ciphertext}").splitlines()[-1].strip() == secret
    # and the other way round
    back = tenant.ok(f"parsec-tool encrypt -k {key} {shlex.quote(secret)}").split()[-1]
    assert tenant.ok(f"edgefaas parsec decrypt {key} {back}") == secret


@pytest.mark.parametrize("kind", ["ecc", "rsa"])
def test_both_clients_export_the_same_public_key(device, tenants, kind):
    tenant = tenants[0]
    key = f"export-{kind}"
    tenant.ok(f"parsec-tool create-{kind}-key -k {key}")
    from_tool = tenant.ok(f"parsec-tool export-public-key -k {key}")
    from_python = tenant.ok(f"edgefaas parsec export-public-key {key} --format pem")
    pem = lambda text: text[text.index("-----BEGIN") :].encode()  # noqa: E731
    assert (
        load_pem_public_key(pem(from_tool)).public_numbers()
        == load_pem_public_key(pem(from_python)).public_numbers()
    )


def test_a_tenant_can_neither_see_nor_use_another_tenants_key(device, tenants):
    alice, bob = tenants
    alice.ok("edgefaas parsec generate-key private-to-alice --type ecc-sign")
    assert "private-to-alice" in alice.key_names()
    assert "private-to-alice" not in bob.key_names()
    stolen = bob.run("edgefaas parsec sign private-to-alice hello")
    assert stolen.rc == 1
    assert "PsaErrorDoesNotExist" in stolen.stderr


def test_keys_survive_a_service_restart(device, tenants):
    tenant = tenants[0]
    tenant.ok("edgefaas parsec generate-key survivor --type ecc-sign")
    before = tenant.ok("edgefaas parsec export-public-key survivor --format pem")
    device.host.run_test("systemctl restart parsec")
    wait_for(lambda: device.host.file(SOCKET).is_socket, 5, f"{SOCKET} back after the restart", interval=0.1)
    after = tenant.ok("edgefaas parsec export-public-key survivor --format pem")
    assert after == before, f"the key's public part changed across the restart:\n{before}\n{after}"


def test_many_concurrent_clients_get_only_right_answers(device):
    """8 clients x 250 random operations against the one service: zero wrong results."""
    result = device.host.run("edgefaas parsec stress --clients 8 --ops 250 --json")
    summary = json.loads(result.stdout)
    assert summary["operations"] == 8 * 250, summary["problems"]
    assert summary["wrong"] == 0, summary["problems"]
    assert summary["errors"] == 0, summary["problems"]
    assert result.rc == 0


def test_service_down_is_an_error_naming_the_endpoint(device):
    result = device.host.run("edgefaas parsec --endpoint unix:/run/parsec/absent.sock ping")
    assert result.rc == 1
    assert "/run/parsec/absent.sock" in result.stderr
    assert "Traceback" not in result.stderr


def test_oversized_payload_is_refused_before_sending(device):
    script = (
        "from edgefaas.parsec import ParsecClient, BodySizeExceedsLimit\n"
        "try:\n"
        "    ParsecClient().hash_compute(b'x' * (2 << 20))\n"
        "except BodySizeExceedsLimit as exc:\n"
        "    print('refused:', exc.from_service, exc)\n"
    )
    out = device.host.check_output(f"/opt/edgefaas/venv/bin/python -c {shlex.quote(script)}")
    assert out.startswith("refused: False"), out


def test_clients_in_k3s_pods_share_the_one_service(inventory):
    """SoW 2.4/2.5: three tenants' client pods, each its own uid, on one SONiC device's service."""
    if not inventory.get_group("k3s_server"):
        pytest.skip("no K3S in this inventory")
    import jinja2
    from kubernetes import client as k8s
    from kubernetes import utils

    from tests.integration.conftest import REPO
    from tests.integration.support import kubernetes_api

    core, api_client = kubernetes_api(inventory)
    sonic_nodes = [h.name for h in inventory.get_group("sonic") if "k3s_agent" in h.groups] or [
        h.name for h in inventory.get_group("sonic")
    ]
    node = sonic_nodes[0]
    image = core.read_namespaced_pod("task13-server", "edgefaas-task13").spec.containers[0].image
    namespace = f"edgefaas-test-parsec-{uuid.uuid4().hex[:6]}"
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=namespace)))
    template = jinja2.Template((REPO / "templates/parsec/client-pod.yaml.j2").read_text())
    tenants = {"tenant-a": 20001, "tenant-b": 20002, "tenant-c": 20003}
    try:
        for tenant, uid in tenants.items():
            manifest = template.render(
                tenant=tenant, uid=uid, node=node, image=image, ops=40, namespace=namespace
            )
            utils.create_from_dict(api_client, yaml.safe_load(manifest), namespace=namespace)

        def finished():
            pods = core.list_namespaced_pod(namespace, label_selector="edgefaas.io/task=parsec").items
            done = [p for p in pods if p.status.phase in ("Succeeded", "Failed")]
            return pods if len(done) == len(tenants) else None

        def seen() -> str:
            pods = core.list_namespaced_pod(namespace, label_selector="edgefaas.io/task=parsec").items
            states = []
            for pod in pods:
                waiting = [
                    f"{s.state.waiting.reason}: {s.state.waiting.message}"
                    for s in pod.status.container_statuses or []
                    if s.state and s.state.waiting
                ]
                states.append(f"{pod.metadata.name} on {pod.spec.node_name}: {pod.status.phase} {waiting}")
            return f"the three Parsec client pods to finish; seen: {states or 'no pods'}"

        pods = wait_for(finished, 180, seen)
        for pod in pods:
            log = core.read_namespaced_pod_log(pod.metadata.name, namespace)
            assert pod.status.phase == "Succeeded", log
            summary = json.loads(log[log.index("{") :])
            assert summary["operations"] == 2 * 40 and summary["wrong"] == 0 and summary["errors"] == 0, (
                summary
            )
            assert pod.spec.node_name == node
        assert {p.spec.security_context.run_as_user for p in pods} == set(tenants.values())
    finally:
        core.delete_namespace(namespace)
