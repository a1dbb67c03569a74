"""Image functions (issue 20, item 2; deploys/registry.py): the site's registry, a stack-file deploy
of the example image function pushed there, and an image the registry lacks.

    pytest -m lab tests/integration/test_image_functions.py [--inventory inventories/mylab.py]
    pytest -m lab -s tests/integration/test_image_functions.py -k cold_start   # prints the figure

The deploy body is the one faas-cli sends for a stack file's function with an ``image`` and no
``edgefaas.io/code`` annotation. The registry is reached from the test runner as a node reaches it:
HTTPS verified by the blueprint's CA, with the site's account (read over SSH from the server).
"""

from __future__ import annotations

import json
import ssl
import time
import uuid

import httpx
import pytest

from edgefaas.backends.image_reference import registry_host
from edgefaas.deploy import registry
from edgefaas.lab.builds.function_image import REPOSITORY
from tests.integration.support import kubernetes_api, wait_for

kubernetes = pytest.importorskip("kubernetes")

NAMESPACE = "edgefaas-fn"
NAME_ANNOTATION = "edgefaas.io/function-name"
PUSH_AUTH = "/var/lib/edgefaas/registry-push/auth.json"


@pytest.fixture(scope="module")
def site_registry(server) -> str:
    return registry_host(server.address, registry.PORT)


@pytest.fixture(scope="module")
def pushed_tag(server, site_registry) -> str:
    """The example image's tag as the registry lists it (the deploy pushed it)."""
    auth = json.loads(server.host.check_output(f"cat {PUSH_AUTH}"))["auths"][site_registry]["auth"]
    context = ssl.create_default_context(cadata=server.host.check_output("cat /etc/edgefaas/ca.pem"))
    answer = httpx.get(
        f"https://{site_registry}/v2/{REPOSITORY}/tags/list",
        headers={"Authorization": f"Basic {auth}"},
        verify=context,
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    tags = answer.json()["tags"]
    assert tags, "the deploy pushed no example image"
    return sorted(tags)[-1]


@pytest.fixture(scope="module")
def caller(admin):
    answer = admin.post(
        "/system/licenses", json={"name": f"itest-img-{uuid.uuid4().hex[:8]}", "plan": "standard"}
    )
    assert answer.status_code == 201, answer.text
    license = answer.json()
    with httpx.Client(
        base_url=str(admin.base_url),
        headers={"Authorization": f"Bearer {license['token']}"},
        timeout=120,
        trust_env=False,
        verify=admin.verify_tls,
    ) as client:
        yield client
    admin.delete(f"/system/licenses/{license['id']}")


def _stack_deploy(name: str, image: str) -> dict[str, object]:
    """What faas-cli deploy sends for a stack file's function with only an image."""
    return {
        "service": name,
        "image": image,
        "envProcess": "",
        "envVars": {},
        "labels": {},
        "annotations": {},
        "constraints": [],
        "secrets": [],
        "namespace": NAMESPACE,
        "readOnlyRootFilesystem": False,
    }


def _leftovers(inventory, name: str) -> list[str]:
    api, api_client = kubernetes_api(inventory)
    apps = kubernetes.client.AppsV1Api(api_client)
    found = [
        f"deployment/{d.metadata.name}"
        for d in apps.list_namespaced_deployment(NAMESPACE).items
        if (d.metadata.annotations or {}).get(NAME_ANNOTATION) == name
    ]
    found += [
        f"service/{s.metadata.name}"
        for s in api.list_namespaced_service(NAMESPACE).items
        if (s.metadata.annotations or {}).get(NAME_ANNOTATION) == name
    ]
    return found


def test_the_registry_asks_for_the_account_over_https_from_the_ca(server, site_registry):
    context = ssl.create_default_context(cadata=server.host.check_output("cat /etc/edgefaas/ca.pem"))
    assert httpx.get(f"https://{site_registry}/v2/", verify=context, timeout=10).status_code == 401


@pytest.mark.devices("k3s_server")
def test_the_server_pulls_from_the_site_registry(device):
    _pulls_from_the_site_registry(device)


@pytest.mark.devices("k3s_agent")
def test_every_agent_pulls_from_the_site_registry(device):
    _pulls_from_the_site_registry(device)


def _pulls_from_the_site_registry(device) -> None:
    config = device.host.file("/etc/rancher/k3s/registries.yaml")
    assert config.exists and config.mode == 0o600 and config.user == "root"
    assert "ca_file: /etc/edgefaas/ca.pem" in config.content_string
    assert (
        f":{registry.PORT}" in config.content_string and f"username: {registry.USER}" in config.content_string
    )


def test_a_stack_file_deploy_of_the_image_function_answers_through_the_gateway(
    admin, caller, site_registry, pushed_tag
):
    name = f"hello-image-{uuid.uuid4().hex[:6]}"
    image = f"{site_registry}/{REPOSITORY}:{pushed_tag}"
    answer = admin.post("/system/functions", json=_stack_deploy(name, image))
    assert answer.status_code == 202, answer.text
    try:
        assert admin.get(f"/system/function/{name}").json()["image"] == image
        called = caller.post(f"/function/{name}.{NAMESPACE}/hi?x=1", content=b"ping")
        assert called.status_code == 200, called.text
        body = called.json()
        assert body["function"] == "hello-image" and body["echo"] == "ping" and body["query"] == "x=1"
        assert body["node"]  # it ran in a pod on a node
    finally:
        admin.request("DELETE", "/system/functions", json={"functionName": name})


def test_an_image_not_in_the_registry_is_refused_with_the_nodes_reason_and_nothing_is_left(
    admin, inventory, site_registry
):
    name = f"ghost-{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    answer = admin.post(
        "/system/functions", json=_stack_deploy(name, f"{site_registry}/edgefaas/not-pushed:1")
    )
    assert answer.status_code == 400, answer.text
    assert "ErrImagePull" in answer.json()["error"] or "ImagePullBackOff" in answer.json()["error"]
    assert "not-pushed" in answer.json()["error"]
    assert time.monotonic() - started < 150  # the backend's start timeout bounds it
    wait_for(lambda: not _leftovers(inventory, name), 30, f"{name}'s objects removed")
    assert admin.get(f"/system/function/{name}").status_code == 404


def test_cold_start_of_an_image_function_against_a_source_function(admin, caller, site_registry, pushed_tag):
    """The figure: seconds from a call to a function scaled to zero until its answer, each kind."""
    source = "def handle(event, context):\n    return {'ok': True}\n"
    kinds = {
        "image": {"image": f"{site_registry}/{REPOSITORY}:{pushed_tag}"},
        "source": {"code": source},
    }
    figures: dict[str, float] = {}
    for kind, body in kinds.items():
        name = f"cold-{kind}-{uuid.uuid4().hex[:6]}"
        answer = admin.post("/system/functions", json={"service": name, **body})
        assert answer.status_code == 202, answer.text
        try:
            assert caller.post(f"/function/{name}", content=b"{}").status_code == 200
            scaled = admin.post(f"/system/scale-function/{name}", json={"serviceName": name, "replicas": 0})
            assert scaled.status_code in (200, 202), scaled.text
            wait_for(
                lambda name=name: admin.get(f"/system/function/{name}").json()["availableReplicas"] == 0,
                60,
                f"{name} scaled to zero",
            )
            started = time.monotonic()
            woken = caller.post(f"/function/{name}", content=b"{}")
            figures[kind] = time.monotonic() - started
            assert woken.status_code == 200, woken.text
        finally:
            admin.request("DELETE", "/system/functions", json={"functionName": name})
    print(
        f"\ncold start (scaled to zero, one call until its answer): image {figures['image']:.2f} s, "
        f"source {figures['source']:.2f} s"
    )
