"""The kubernetes backend's manifests: object names, and the Deployment every function becomes."""

from __future__ import annotations

import re
from typing import Any

import pytest

from edgefaas.backends import kubernetes_manifests as km
from edgefaas.backends.base import DeployError, FunctionSpec

from .kube_fakes import CODE, GATEWAY, IMAGE

pytestmark = pytest.mark.unit

DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")


# -- names ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["FuncA", "funca", "system_info", "a", "x_", "Long" + "_x" * 29 + "y"])
def test_object_names_are_dns_labels(name):
    obj = km.object_name(name)
    assert DNS_LABEL.match(obj), obj
    assert len(obj) <= 63


def test_names_differing_in_case_or_separator_get_different_objects():
    names = {km.object_name(n) for n in ("FuncA", "funca", "FUNCA", "system_info", "system-info")}
    assert len(names) == 5
    assert km.object_name("FuncA").startswith("funca-")
    assert km.object_name("system_info").startswith("system-info-")


# -- the objects ----------------------------------------------------------------------------------


def build(spec: FunctionSpec, version: int = 1) -> dict[str, Any]:
    return km.build_deployment(
        spec,
        km.object_name(spec.name),
        runtime_image=IMAGE,
        gateway_url=GATEWAY,
        version=version,
        created_at=1.0,
        updated_at=2.0,
    )


def test_the_deployment_runs_the_runtime_image_with_the_code_mounted():
    spec = FunctionSpec("FuncA", code=CODE, env_vars={"EDGEFAAS_CODE": "/elsewhere.py", "MODE": "fast"})
    dep = build(spec)
    pod_spec = dep["spec"]["template"]["spec"]
    box = pod_spec["containers"][0]
    assert box["image"] == IMAGE and box["imagePullPolicy"] == "Never"
    env = {e["name"]: e.get("value") or e["valueFrom"]["fieldRef"]["fieldPath"] for e in box["env"]}
    # The spec's variables pass, but never over the runtime's own.
    assert env["EDGEFAAS_CODE"] == "/code/handler.py"
    assert env["MODE"] == "fast"
    assert env["EDGEFAAS_PORT"] == "8080"
    assert env["EDGEFAAS_FUNCTION_NAME"] == "FuncA"
    assert env["EDGEFAAS_GATEWAY_URL"] == GATEWAY
    assert [e["name"] for e in box["env"]].count("EDGEFAAS_CODE") == 1
    # The device it landed on, from the downward API (offloading starts from it).
    assert env["EDGEFAAS_NODE_IP"] == "status.hostIP" and env["EDGEFAAS_NODE_NAME"] == "spec.nodeName"
    assert box["volumeMounts"] == [{"name": "code", "mountPath": "/code", "readOnly": True}]
    volume = pod_spec["volumes"][0]["configMap"]
    assert volume["name"] == km.config_map_name(km.object_name("FuncA"), spec.code_sha256)
    assert box["readinessProbe"]["httpGet"]["path"] == "/_/ready"
    assert box["livenessProbe"]["httpGet"]["path"] == "/_/health"
    security = box["securityContext"]
    assert security["runAsUser"] == 10001 and security["runAsNonRoot"] is True
    assert security["allowPrivilegeEscalation"] is False and security["capabilities"] == {"drop": ["ALL"]}
    assert pod_spec["automountServiceAccountToken"] is False


def test_the_rollout_never_drops_below_the_asked_replicas():
    dep = build(FunctionSpec("FuncA", code=CODE))
    assert dep["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    box = dep["spec"]["template"]["spec"]["containers"][0]
    # A leaving pod keeps serving while it is taken out of the Service, then drains.
    assert box["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", str(km.PRE_STOP_SECONDS)]
    grace = dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= km.PRE_STOP_SECONDS + 30


def test_new_code_changes_the_pod_template_so_kubernetes_rolls():
    one = build(FunctionSpec("FuncA", code=CODE))["spec"]["template"]
    two = build(FunctionSpec("FuncA", code=CODE + "# v2\n"), version=2)["spec"]["template"]
    assert one != two
    assert (
        one["metadata"]["annotations"][km.CODE_HASH_ANNOTATION]
        != two["metadata"]["annotations"][km.CODE_HASH_ANNOTATION]
    )
    assert one["spec"]["volumes"] != two["spec"]["volumes"]


def test_constraints_become_a_node_selector():
    spec = FunctionSpec(
        "FuncB", code=CODE, constraints=("node.labels.edgefaas.io/profile == jetson", "disk=ssd")
    )
    pod_spec = build(spec)["spec"]["template"]["spec"]
    assert pod_spec["nodeSelector"] == {"edgefaas.io/profile": "jetson", "disk": "ssd"}
    assert "nodeSelector" not in build(FunctionSpec("FuncC", code=CODE))["spec"]["template"]["spec"]


def test_constraints_that_cannot_both_hold_are_refused():
    spec = FunctionSpec(
        "F", code=CODE, constraints=("edgefaas.io/profile=sonic", "edgefaas.io/profile=jetson")
    )
    with pytest.raises(DeployError, match="cannot both hold"):
        build(spec)


def test_limits_and_requests_become_the_containers_resources():
    spec = FunctionSpec(
        "F", code=CODE, limits={"memory": "128Mi", "cpu": "500m"}, requests={"memory": "64Mi"}
    )
    box = build(spec)["spec"]["template"]["spec"]["containers"][0]
    assert box["resources"] == {"limits": {"memory": "128Mi", "cpu": "500m"}, "requests": {"memory": "64Mi"}}
    assert "resources" not in build(FunctionSpec("F", code=CODE))["spec"]["template"]["spec"]["containers"][0]


def test_user_labels_cannot_take_over_the_selector():
    spec = FunctionSpec("F", code=CODE, labels={km.FUNCTION_LABEL: "other", "team": "edge"})
    dep = build(spec)
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert labels[km.FUNCTION_LABEL] == km.object_name("F") and labels["team"] == "edge"
    assert dep["spec"]["selector"]["matchLabels"] == {km.FUNCTION_LABEL: km.object_name("F")}


def test_an_image_function_has_no_config_map_and_a_read_only_root_gets_a_tmp():
    spec = FunctionSpec("Img", image="example/fn:1", read_only_root_filesystem=True, secrets=("api-key",))
    pod_spec = build(spec)["spec"]["template"]["spec"]
    box = pod_spec["containers"][0]
    assert box["image"] == "example/fn:1"
    assert "EDGEFAAS_CODE" not in {e["name"] for e in box["env"]}
    assert {v["name"] for v in pod_spec["volumes"]} == {"tmp", "secrets"}
    assert box["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "secrets", "mountPath": "/var/openfaas/secrets", "readOnly": True} in box["volumeMounts"]


# -- image functions (OpenFaaS's watchdog contract) -----------------------------------------------


def test_an_image_function_is_pulled_once_per_node_and_probed_on_the_watchdog_path():
    spec = FunctionSpec("Img", image="registry.lab:5000/edgefaas/hello:1", env_process="/hello")
    pod_spec = build(spec)["spec"]["template"]["spec"]
    box = pod_spec["containers"][0]
    assert box["image"] == "registry.lab:5000/edgefaas/hello:1"
    # Not Never: no node imported it, the registry holds it.
    assert box["imagePullPolicy"] == "IfNotPresent"
    assert box["readinessProbe"]["httpGet"] == {"path": "/_/health", "port": "http"}
    assert box["livenessProbe"]["httpGet"] == {"path": "/_/health", "port": "http"}
    assert box["ports"][0]["containerPort"] == 8080
    env = {e["name"]: e.get("value") for e in box["env"]}
    assert env["fprocess"] == "/hello"
    # The classic watchdog's lock file: an image FROM scratch has no /tmp of its own.
    assert {"name": "tmp", "mountPath": "/tmp"} in box["volumeMounts"]
    assert "workingDir" not in box


def test_openfaas_probe_annotations_move_an_image_functions_probes():
    spec = FunctionSpec(
        "Img",
        image="example/fn:1",
        annotations={km.READY_PATH_ANNOTATION: "/_/ready", km.HEALTH_PATH_ANNOTATION: "/healthz"},
    )
    box = build(spec)["spec"]["template"]["spec"]["containers"][0]
    assert box["readinessProbe"]["httpGet"]["path"] == "/_/ready"
    assert box["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # A source function keeps the runtime's own paths, whatever its annotations say.
    source = FunctionSpec("Src", code=CODE, annotations={km.READY_PATH_ANNOTATION: "/x"})
    box = build(source)["spec"]["template"]["spec"]["containers"][0]
    assert box["readinessProbe"]["httpGet"]["path"] == "/_/ready"
    assert box["imagePullPolicy"] == "Never"
