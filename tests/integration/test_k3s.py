"""K3S checklist (SoW Task 1, deploys/k3s.py): a real cluster across the devices.

    pytest -m lab tests/integration/test_k3s.py [--inventory inventories/mylab.py]

The Kubernetes API is reached with the server's own kubeconfig, fetched over SSH through
the inventory, so the same checks run against the virtual lab and a real one.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
import uuid

import pytest

from edgefaas.deploy import nvidia
from tests.integration.conftest import DeployRun, Device, run_deploy
from tests.integration.support import kubernetes_api, nvidia_runtime, pod, tcp_state, wait_for

kubernetes = pytest.importorskip("kubernetes")
from kubernetes import client as k8s  # noqa: E402


@pytest.fixture(scope="module")
def api(inventory) -> k8s.CoreV1Api:
    return kubernetes_api(inventory)[0]


@pytest.mark.devices("k3s_server")
def test_server_service_is_active_and_enabled(device):
    assert device.host.service("k3s").is_running
    assert device.host.service("k3s").is_enabled


@pytest.mark.devices("k3s_agent")
def test_agent_service_is_active_and_enabled(device):
    assert device.host.service("k3s-agent").is_running
    assert device.host.service("k3s-agent").is_enabled
    assert not device.host.service("k3s").is_running


@pytest.mark.devices("k3s_server")
def test_api_port_is_reachable_through_the_control_plane_acl(device):
    assert tcp_state(device.address, device.data.get("k3s_api_port", 6443)) == "open"


def test_token_file_is_private(device):
    token = device.host.file("/etc/rancher/k3s/token")
    assert token.exists and token.user == "root" and token.mode == 0o600
    assert "token:" not in device.host.file("/etc/rancher/k3s/config.yaml").content_string


def test_every_device_is_a_ready_node_with_its_role_and_profile(api, inventory):
    nodes = {node.metadata.name: node for node in api.list_node().items}
    for host in inventory.get_group("k3s_server") + inventory.get_group("k3s_agent"):
        assert host.name in nodes, f"{host.name} is not a node"
        node = nodes[host.name]
        ready = {c.type: c.status for c in node.status.conditions}.get("Ready")
        assert ready == "True", f"{host.name} is not Ready"
        labels = node.metadata.labels
        assert labels["edgefaas.io/profile"] == host.data.device_profile
        is_server = "node-role.kubernetes.io/control-plane" in labels
        assert is_server == ("k3s_server" in host.groups), host.name
        addresses = {a.type: a.address for a in node.status.addresses}
        assert addresses["InternalIP"] == host.data.ssh_hostname, "K3S binds to the management address"


def test_two_pods_run_on_one_sonic_device_and_talk(api, inventory):
    """SoW Task 1.3: the serving and the calling pod share one SONiC node and talk."""
    namespace = "edgefaas-task13"
    pods = wait_for(
        lambda: (
            {
                p.metadata.name: p
                for p in api.list_namespaced_pod(namespace).items
                if p.status.phase == "Running"
            }
            if len([p for p in api.list_namespaced_pod(namespace).items if p.status.phase == "Running"]) == 2
            else None
        ),
        120,
        "both Task 1.3 pods Running",
    )
    nodes = {p.spec.node_name for p in pods.values()}
    assert len(nodes) == 1, f"the two pods are on {nodes}"
    (node,) = nodes
    assert node in {h.name for h in inventory.get_group("sonic")}, f"{node} is not a SONiC device"
    answers = wait_for(
        lambda: [
            line
            for line in api.read_namespaced_pod_log("task13-client", namespace, tail_lines=20).splitlines()
            if '"answer"' in line
        ],
        60,
        "the client pod's answers",
    )
    assert '"pod": "task13-server"' in answers[-1]


# -- metrics-server: kubectl top and the resource metrics API ------------------------------------

# `kubectl top nodes --no-headers`: NAME CPU(cores) CPU% MEMORY(bytes) MEMORY%
NODE_USAGE = re.compile(r"^(\S+)\s+\d+m\s+\d+%\s+\d+Mi\s+\d+%$")
POD_USAGE = re.compile(r"^(\S+)\s+\d+m\s+\d+Mi$")


def _top(server: Device, what: str, pattern: re.Pattern[str]) -> dict[str, str]:
    out = server.host.run(f"sudo kubectl top {what} --no-headers")
    lines = out.stdout.splitlines() if out.rc == 0 else []
    return {m.group(1): line for line in lines if (m := pattern.match(line.strip()))}


def test_kubectl_top_measures_every_node_and_the_task13_pods(server, api, inventory):
    if not server.data.get("k3s_metrics_server"):
        pytest.skip("metrics-server is off in this inventory (k3s_metrics_server)")
    nodes = {h.name for h in inventory.get_group("k3s_server") + inventory.get_group("k3s_agent")}
    # A node whose kubelet metrics-server cannot scrape (a port the ACL shuts, a certificate
    # it refuses) is listed as <unknown>, and fails the pattern.
    measured = wait_for(
        lambda: found if (found := _top(server, "nodes", NODE_USAGE)).keys() >= nodes else None,
        180,
        lambda: f"CPU and memory of every node {sorted(nodes)} in kubectl top nodes",
        interval=3,
    )
    assert measured.keys() >= nodes
    if server.data.get("k3s_two_pods"):
        task13 = {"task13-server", "task13-client"}
        pods = wait_for(
            lambda: _top(server, "pods -n edgefaas-task13", POD_USAGE).keys() >= task13,
            120,
            "kubectl top pods of Task 1.3's two pods",
            interval=3,
        )
        assert pods
    [pod] = api.list_namespaced_pod("kube-system", label_selector="k8s-app=metrics-server").items
    servers = {h.name for h in inventory.get_group("k3s_server")}
    assert pod.spec.node_name in servers, f"metrics-server runs on {pod.spec.node_name}, not a K3S server"


# -- the nvidia container runtime (JetPack's; the lab Jetson's stand-in) -----------------------

CONTAINERD_CONFIG = "/var/lib/rancher/k3s/agent/etc/containerd/config.toml"


def _k3s_node(device: Device) -> None:
    if not {"k3s_server", "k3s_agent"} & device.groups:
        pytest.skip(f"{device.name} is not a K3S node")


def test_the_nvidia_runtime_class_exists_for_the_labelled_nodes(server):
    def runtime_class():
        found = server.host.run("kubectl get runtimeclass nvidia -o json")
        return json.loads(found.stdout) if found.rc == 0 else None

    # K3S's deploy controller applies the manifest a few seconds after it is written.
    found = wait_for(runtime_class, 60, "RuntimeClass nvidia")
    assert found["handler"] == "nvidia"
    assert found["scheduling"]["nodeSelector"] == {nvidia.NODE_LABEL: "true"}


@pytest.mark.devices("all")
def test_each_node_says_whether_it_has_the_nvidia_runtime(device, api):
    _k3s_node(device)
    labels = api.read_node(device.name).metadata.labels
    assert labels[nvidia.NODE_LABEL] == ("true" if nvidia_runtime(device) else "false")


@pytest.mark.devices("all")
def test_containerd_has_the_nvidia_handler_exactly_where_the_runtime_is(device):
    _k3s_node(device)
    runtime = nvidia_runtime(device)
    # What K3S rendered from templates/k3s/config.toml.tmpl and what containerd runs with.
    config = tomllib.loads(device.host.file(CONTAINERD_CONFIG).content_string)
    runtimes = config["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]
    if runtime is None:
        assert "nvidia" not in runtimes, f"containerd on {device.name} has an nvidia handler, but no runtime"
        return
    assert "nvidia" in runtimes, f"{device.name} has {runtime}, yet containerd has no nvidia handler"
    assert runtimes["nvidia"]["runtime_type"] == "io.containerd.runc.v2", runtimes["nvidia"]
    assert runtimes["nvidia"]["options"]["BinaryName"] == runtime, runtimes["nvidia"]
    if device.data.get("device_profile") == "jetson":
        # JetPack's package (or its stand-in)
        assert runtime == "/usr/bin/nvidia-container-runtime", f"{device.name} runs {runtime}"


def test_a_pod_on_one_device_reaches_a_pod_on_another(api, inventory):
    """Cross-node pod networking (flannel between devices, host-gw by default)."""
    sonic_agents = [h.name for h in inventory.get_group("k3s_agent") if "sonic" in h.groups]
    jetsons = [
        h.name for h in inventory.get_group("jetson") if "k3s_agent" in h.groups or "k3s_server" in h.groups
    ]
    if not sonic_agents or not jetsons:
        pytest.skip("needs a SONiC agent and a Jetson in the inventory")
    image = api.read_namespaced_pod("task13-server", "edgefaas-task13").spec.containers[0].image
    namespace = f"crossnode-{uuid.uuid4().hex[:6]}"
    api.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=namespace)))
    try:
        serve = ["python3", "-m", "http.server", "8080"]
        api.create_namespaced_pod(namespace, pod("server", jetsons[0], serve, image, restart="Always"))
        server_ip = wait_for(
            lambda: (lambda p: p.status.pod_ip if p.status.phase == "Running" else None)(
                api.read_namespaced_pod("server", namespace)
            ),
            90,
            f"the server pod on {jetsons[0]}",
        )
        fetch = [
            "python3",
            "-c",
            "import sys, time, urllib.request\n"
            "for attempt in range(20):\n"
            "    try:\n"
            f"        urllib.request.urlopen('http://{server_ip}:8080/', timeout=2)\n"
            "        print('reached')\n"
            "        sys.exit(0)\n"
            "    except OSError as exc:\n"
            "        print(exc); time.sleep(1)\n"
            "sys.exit(1)\n",
        ]
        api.create_namespaced_pod(namespace, pod("client", sonic_agents[0], fetch, image))
        phase = wait_for(
            lambda: (lambda p: p if p in ("Succeeded", "Failed") else None)(
                api.read_namespaced_pod("client", namespace).status.phase
            ),
            90,
            f"the client pod on {sonic_agents[0]}",
        )
        log = api.read_namespaced_pod_log("client", namespace)
        assert phase == "Succeeded", log
        assert "reached" in log
    finally:
        api.delete_namespace(namespace)


def _deploy(inventory_path: str, *args: str) -> DeployRun:
    return run_deploy(inventory_path, "deploys/k3s.py", *args)


def test_redeploy_changes_nothing_and_never_shows_the_token(inventory_path, server):
    token = server.host.file("/etc/rancher/k3s/token").content_string.strip()
    run = _deploy(inventory_path, "-v")
    assert run.returncode == 0, run.output[-3000:]
    assert token not in run.output, "the K3S token is in the deploy's output"
    assert run.operations and run.changed_nothing, f"the re-run changed something:\n{run.describe()}"


def test_an_agent_with_a_wrong_token_fails_alone_and_says_why(inventory_path, inventory):
    """The broken host fails with the reason; the others are untouched; a good run heals it."""
    agents = [h.name for h in inventory.get_group("k3s_agent")]
    victim = agents[-1]
    bad = _deploy(
        inventory_path,
        "--limit",
        victim,
        "--data",
        "k3s_token=not-the-cluster-token",
        "--data",
        "k3s_ready_timeout=40",
    )
    output = bad.output
    assert bad.returncode != 0, f"a wrong token on {victim} was accepted:\n{output[-3000:]}"
    assert victim in output and "not Ready" in output, output[-3000:]
    assert re.search(r"token|unauthori[sz]ed|401", output, re.I), output[-3000:]
    # Only the victim was touched: healing it alone spares the others' facts and checks.
    healed = _deploy(inventory_path, "--limit", victim)
    assert healed.returncode == 0, healed.output[-3000:]
    assert healed.changed, f"the good run changed nothing on {victim}:\n{healed.describe()}"


def test_secrets_are_encrypted_at_rest_in_the_datastore(api, server):
    """A Secret read raw from K3S's datastore is AES-CBC ciphertext, and no Secret is kept in clear."""
    from edgefaas.deploy.facts import K3S_DATASTORE, PLAINTEXT_SECRETS_SQL

    marker = f"edgefaas-at-rest-{uuid.uuid4().hex}"
    name = f"at-rest-{uuid.uuid4().hex[:8]}"
    body = k8s.V1Secret(metadata=k8s.V1ObjectMeta(name=name), string_data={"value": marker})
    api.create_namespaced_secret("default", body)
    try:
        query = (
            f"SELECT hex(value) FROM kine WHERE name = '/registry/secrets/default/{name}' "
            "ORDER BY id DESC LIMIT 1"
        )
        raw = bytes.fromhex(server.host.check_output(f'sqlite3 -readonly {K3S_DATASTORE} "{query}"').strip())
        assert raw, f"no row for Secret default/{name} in {K3S_DATASTORE}"
        assert raw.startswith(b"k8s:enc:aescbc:v1:"), f"stored unencrypted: {raw[:60]!r}"
        assert marker.encode() not in raw
        assert api.read_namespaced_secret(name, "default").data["value"]  # still readable through the API
        clear = server.host.check_output(
            f"sqlite3 -readonly {K3S_DATASTORE} {shlex.quote(PLAINTEXT_SECRETS_SQL)}"
        )
        assert not clear.strip(), f"Secrets stored in clear: {clear}"
    finally:
        api.delete_namespaced_secret(name, "default")
