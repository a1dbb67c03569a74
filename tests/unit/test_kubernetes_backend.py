"""The kubernetes backend against a fake of the Kubernetes API: deploy, rollouts, routing, choosing it."""

from __future__ import annotations

import copy
import time
from typing import Any

import click
import pytest
from click.testing import CliRunner

from edgefaas.backends import kubernetes as kb
from edgefaas.backends import kubernetes_manifests as km
from edgefaas.backends.base import (
    BackendUnreachable,
    DeployError,
    FunctionExists,
    FunctionNotFound,
    FunctionSpec,
    FunctionUnavailable,
    Unsupported,
)
from edgefaas.gateway import cli
from edgefaas.lab.gateway import gateway_url
from edgefaas.lab.spec import SpecError, load_spec, parse_spec
from edgefaas.lab.state import LabState

from .kube_fakes import CODE, GATEWAY, IMAGE, FakeCluster, make_backend

pytestmark = pytest.mark.unit


@pytest.fixture
def cluster() -> FakeCluster:
    return FakeCluster()


@pytest.fixture
def backend(cluster: FakeCluster) -> kb.KubernetesBackend:
    return make_backend(cluster)


def deployment(cluster: FakeCluster, function: str) -> dict[str, Any]:
    return cluster.objects["Deployment"][km.object_name(function)]


def test_code_without_a_runtime_image_is_unsupported(cluster):
    backend = kb.KubernetesBackend(None, GATEWAY, core_api=cluster.core, apps_api=cluster.apps, watch=False)
    with pytest.raises(Unsupported, match="runtime image"):
        backend.deploy(FunctionSpec("F", code=CODE))


# -- deploy, call, update, scale, delete ----------------------------------------------------------


def test_deploy_makes_a_config_map_a_deployment_and_a_service(cluster, backend):
    status = backend.deploy(FunctionSpec("FuncB", code=CODE, constraints=("edgefaas.io/profile=jetson",)))
    obj = km.object_name("FuncB")
    assert status.version == 1 and status.available_replicas == 1
    assert status.nodes == ("jetson-1",)
    (cm,) = cluster.objects["ConfigMap"].values()
    assert cm["immutable"] is True and cm["data"]["handler.py"] == CODE
    service = cluster.objects["Service"][obj]
    assert service["spec"]["selector"] == {km.FUNCTION_LABEL: obj}
    assert service["spec"]["type"] == "ClusterIP"
    assert backend.endpoint("FuncB") == f"http://{service['spec']['clusterIP']}:8080"


def test_a_second_deploy_of_a_name_is_refused(backend):
    backend.deploy(FunctionSpec("FuncA", code=CODE))
    with pytest.raises(FunctionExists):
        backend.deploy(FunctionSpec("FuncA", code=CODE))


def test_a_constraint_no_node_has_fails_at_once_and_leaves_nothing(cluster, backend):
    with pytest.raises(DeployError, match=r"no node satisfies constraints edgefaas\.io/profile=camera"):
        backend.deploy(FunctionSpec("F", code=CODE, constraints=("edgefaas.io/profile=camera",)))
    assert not any(cluster.objects[kind] for kind in ("Deployment", "Service", "ConfigMap"))


def test_a_function_that_crashes_at_start_is_not_deployed_and_says_why(cluster, backend):
    bad = "import nosuchmodule\n" + CODE
    cluster.crashing.add(FunctionSpec("F", code=bad).code_sha256)
    with pytest.raises(DeployError, match=r"exited with status 3: .*ERROR importing"):
        backend.deploy(FunctionSpec("F", code=bad))
    assert not any(cluster.objects[kind] for kind in ("Deployment", "Service", "ConfigMap"))
    with pytest.raises(FunctionNotFound):
        backend.endpoint("F")


def test_update_rolls_to_a_new_code_version_and_keeps_the_history(cluster, backend):
    first = backend.deploy(FunctionSpec("FuncC", code=CODE))
    url = backend.endpoint("FuncC")
    status = backend.update(FunctionSpec("FuncC", code=CODE + "# v2\n"))
    assert status.version == 2
    assert status.created_at == first.created_at and status.updated_at >= first.updated_at
    replaced = [args for method, args in cluster.calls if method == "replace_namespaced_deployment"]
    assert len(replaced) == 1
    annotations = deployment(cluster, "FuncC")["spec"]["template"]["metadata"]["annotations"]
    assert annotations[km.VERSION_ANNOTATION] == "2"
    assert annotations[km.CODE_HASH_ANNOTATION] == status.spec.code_sha256
    # The old code's ConfigMap goes once nothing runs it; the Service (and its URL) stays.
    (cm,) = cluster.objects["ConfigMap"].values()
    assert cm["data"]["handler.py"] == CODE + "# v2\n"
    assert backend.endpoint("FuncC") == url
    assert backend.get("FuncC").spec.code == CODE + "# v2\n"


def _env(cluster: FakeCluster, function: str) -> dict[str, str]:
    (container,) = deployment(cluster, function)["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value") for e in container["env"]}


def test_functions_of_a_plain_http_gateway_call_it_over_https_once_it_serves_that(cluster, backend):
    deployed = backend.deploy(FunctionSpec("FuncC", code=CODE))
    assert "EDGEFAAS_GATEWAY_CA" not in _env(cluster, "FuncC")
    # The same gateway restarted with a certificate from the blueprint's CA.
    ca = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    https = make_backend(cluster, gateway_ca=ca)
    https.gateway_url = GATEWAY.replace("http://", "https://")
    assert https.reconcile_gateway_env() == ["FuncC"]
    env = _env(cluster, "FuncC")
    assert env["EDGEFAAS_GATEWAY_URL"] == https.gateway_url and env["EDGEFAAS_GATEWAY_CA"] == ca
    # Rolled as it was: same version, same code; a second start changes nothing more.
    kept = https.get("FuncC")
    assert kept.version == deployed.version and kept.spec.code == CODE
    assert https.reconcile_gateway_env() == []


def test_a_failed_update_puts_the_old_version_back(cluster, backend):
    backend.deploy(FunctionSpec("FuncC", code=CODE))
    before = copy.deepcopy(deployment(cluster, "FuncC")["spec"]["template"])
    bad = CODE + "raise SystemExit(3)\n"
    cluster.crashing.add(FunctionSpec("FuncC", code=bad).code_sha256)
    with pytest.raises(DeployError, match="stays at version 1"):
        backend.update(FunctionSpec("FuncC", code=bad))
    assert deployment(cluster, "FuncC")["spec"]["template"] == before
    status = backend.get("FuncC")
    assert status.version == 1 and status.spec.code == CODE and status.available_replicas == 1
    assert [cm["data"]["handler.py"] for cm in cluster.objects["ConfigMap"].values()] == [CODE]
    assert backend.endpoint("FuncC").startswith("http://10.43.")


def test_update_of_an_unknown_function_is_not_found(backend):
    with pytest.raises(FunctionNotFound):
        backend.update(FunctionSpec("Nope", code=CODE))


def test_list_and_get_rebuild_the_spec_from_the_cluster_alone(cluster, backend):
    spec = FunctionSpec(
        "system_info",
        code=CODE,
        env_vars={"exec_timeout": "10s"},
        constraints=("edgefaas.io/profile=sonic",),
        limits={"memory": "128Mi"},
        public=True,
        labels={"team": "edge"},
    )
    backend.deploy(spec)
    backend.deploy(FunctionSpec("FuncA", code=CODE))
    fresh = make_backend(cluster)  # a restarted gateway: nothing but the cluster to go by
    listed = {s.name: s for s in fresh.list()}
    assert sorted(listed) == ["FuncA", "system_info"]
    assert listed["system_info"].spec == spec
    assert listed["system_info"].nodes == ("sonic-1",)
    assert fresh.get("system_info").spec == spec
    assert fresh.endpoint("FuncA") == backend.endpoint("FuncA")


def test_scale_to_zero_and_back(cluster, backend):
    backend.deploy(FunctionSpec("FuncA", code=CODE))
    status = backend.scale("FuncA", 0)
    assert status.replicas == 0
    with pytest.raises(FunctionUnavailable) as raised:
        backend.endpoint("FuncA")
    assert raised.value.scaled_to_zero
    status = backend.scale("FuncA", 2)
    assert status.replicas == 2 and status.available_replicas == 2
    assert backend.endpoint("FuncA")
    assert make_backend(cluster).get("FuncA").spec.replicas == 2


def test_delete_removes_every_object(cluster, backend):
    backend.deploy(FunctionSpec("FuncA", code=CODE))
    backend.update(FunctionSpec("FuncA", code=CODE + "#2\n"))
    backend.delete("FuncA")
    assert not any(cluster.objects[kind] for kind in ("Deployment", "Service", "ConfigMap", "Pod"))
    with pytest.raises(FunctionNotFound):
        backend.endpoint("FuncA")
    with pytest.raises(FunctionNotFound):
        backend.get("FuncA")
    with pytest.raises(FunctionNotFound):
        backend.delete("FuncA")


def test_logs_come_from_the_functions_pods_with_their_times(backend):
    backend.deploy(FunctionSpec("FuncA", code=CODE))
    (line,) = backend.logs("FuncA", tail=1)
    assert line.text == "ERROR importing /code/handler.py failed"
    assert line.timestamp == 1767225603.0  # 2026-01-01T00:00:03Z
    assert line.instance.startswith("funca-")  # the pod's name
    assert [x.text for x in backend.logs("FuncA", tail=0)] == ["INFO listening", line.text]
    assert backend.logs("FuncA", instance="another-pod") == []
    with pytest.raises(FunctionNotFound):
        backend.logs("Nope")


def test_an_unreachable_api_server_is_a_backend_error_worth_retrying(cluster, backend):
    cluster.unreachable = True
    with pytest.raises(BackendUnreachable, match="cannot be reached"):
        backend.list()


def test_endpoint_of_an_unknown_function_is_not_found(backend):
    with pytest.raises(FunctionNotFound):
        backend.endpoint("Nope")


# -- choosing the backend -------------------------------------------------------------------------


def test_auto_picks_kubernetes_when_a_kubeconfig_is_given(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setattr(cli, "K3S_KUBECONFIG", tmp_path / "absent.yaml")
    assert cli.choose_backend("auto") == "local"
    assert cli.choose_backend("auto", tmp_path / "kubeconfig") == "kubernetes"


def test_the_kubernetes_backend_needs_a_runtime_image(tmp_path):
    with pytest.raises(click.ClickException, match="--runtime-image"):
        cli.make_backend("kubernetes", tmp_path, GATEWAY)
    backend = cli.make_backend(
        "kubernetes",
        tmp_path,
        GATEWAY,
        runtime_image=IMAGE,
        namespace="edgefaas-test",
        kubeconfig=tmp_path / "k",
    )
    assert isinstance(backend, kb.KubernetesBackend)
    assert backend.namespaces() == ["edgefaas-test"] and backend.runtime_image == IMAGE


def test_pods_cannot_reach_a_gateway_on_loopback(tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\n")
    result = CliRunner().invoke(
        cli.gateway,
        [
            "--backend",
            "kubernetes",
            "--kubeconfig",
            str(kubeconfig),
            "--runtime-image",
            IMAGE,
            "--data-dir",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 2 and "--gateway-url is required" in result.output


def test_the_lab_gateway_is_on_the_k3s_server():
    devices = [
        {"name": "sonic-1", "profile": "sonic", "roles": ["k3s_server"]},
        {"name": "jetson-1", "profile": "jetson", "roles": ["k3s_agent"]},
    ]
    state = LabState(parse_spec({"devices": devices}))
    assert gateway_url(state) == f"https://{state.spec.device('sonic-1').address}:8080"
    assert gateway_url(state, port=9090).endswith(":9090")
    alone = LabState(parse_spec({"devices": [{"name": "jetson-1", "profile": "jetson", "roles": []}]}))
    with pytest.raises(SpecError, match="no k3s_server"):
        gateway_url(alone)
    # The default lab's cloud site has a gateway of its own, on its cloud server.
    both = LabState(load_spec())
    assert gateway_url(both) == f"https://{both.spec.device('sonic-1').address}:8080"
    assert gateway_url(both, cloud=True) == f"https://{both.spec.device('cloud-1').address}:8080"
    with pytest.raises(SpecError, match="no k3s_server device in its cloud site"):
        gateway_url(state, cloud=True)


def test_a_function_without_a_ready_replica_says_for_how_long(cluster, backend):
    """The gateway refuses at once a function down for longer than a restart takes (its device
    lost power), so it must learn how long the outage has lasted, from its first unready sight."""
    backend.deploy(FunctionSpec("FuncB", code=CODE))
    url = backend.endpoint("FuncB")
    backend._set_route("FuncB", url, replicas=1, ready=0)
    with pytest.raises(FunctionUnavailable) as first:
        backend.endpoint("FuncB")
    time.sleep(0.05)
    backend._set_route("FuncB", url, replicas=1, ready=0)  # a later sighting keeps the start
    with pytest.raises(FunctionUnavailable) as later:
        backend.endpoint("FuncB")
    assert "its device is down" in str(later.value)
    assert later.value.unready_for >= first.value.unready_for + 0.04
    deployment(cluster, "FuncB")["status"]["readyReplicas"] = 0
    backend.refresh()  # a relist, as after every watch's end, keeps it too
    with pytest.raises(FunctionUnavailable) as relisted:
        backend.endpoint("FuncB")
    assert relisted.value.unready_for >= later.value.unready_for
    deployment(cluster, "FuncB")["status"]["readyReplicas"] = 1
    backend._set_route("FuncB", url, replicas=1, ready=1)
    assert backend.endpoint("FuncB") == url
    backend._set_route("FuncB", url, replicas=1, ready=0)
    with pytest.raises(FunctionUnavailable) as again:
        backend.endpoint("FuncB")
    assert again.value.unready_for < 0.04  # a new outage counts from its own start


def test_secrets_are_kubernetes_secrets_keyed_by_their_name_and_only_the_gateways(backend, cluster):
    import base64

    from edgefaas.backends.base import SecretExists, SecretNotFound

    backend.create_secret("api-key", b"v1")
    stored = cluster.objects["Secret"]["api-key"]
    assert stored["data"] == {"api-key": base64.b64encode(b"v1").decode()}  # /var/openfaas/secrets/api-key
    with pytest.raises(SecretExists):
        backend.create_secret("api-key", b"again")
    backend.update_secret("api-key", b"v2")
    assert cluster.objects["Secret"]["api-key"]["data"]["api-key"] == base64.b64encode(b"v2").decode()
    # The namespace's other Secrets (the gateway's own token) are never listed, changed or removed.
    cluster.objects["Secret"]["edgefaas-gateway-token"] = {
        "metadata": {"name": "edgefaas-gateway-token", "labels": {}, "resourceVersion": "1"},
        "data": {"token": "dG9rZW4="},
    }
    assert backend.list_secrets() == ["api-key"]
    for change in (lambda: backend.update_secret("edgefaas-gateway-token", b"x"),
                   lambda: backend.delete_secret("edgefaas-gateway-token")):  # fmt: skip
        with pytest.raises(SecretNotFound):
            change()
    assert "edgefaas-gateway-token" in cluster.objects["Secret"]
    backend.delete_secret("api-key")
    assert backend.list_secrets() == []
    with pytest.raises(SecretNotFound):
        backend.delete_secret("api-key")
