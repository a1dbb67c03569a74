"""Triton checklist (SoW Task 4, deploys/triton.py): the server on each device, the two test
cases as K3S Jobs, and the vision functions through the gateway.

    pytest -m lab tests/integration/test_triton.py [--inventory inventories/mylab.py]

Servers are called from the test runner through each device's control-plane ACL, as a
client elsewhere in the network would; the photo is a real one with one face in it.
"""

from __future__ import annotations

import json
import re
import time

import httpx
import numpy as np
import pytest

from edgefaas.deploy.sites import CLOUD_PROFILE
from edgefaas.lab.builds.triton import TRITON_GLIBC
from edgefaas.lab.profiles import NVIDIA_RUNTIME_LOG
from edgefaas.triton import FACE_MODEL, LARGE_FACE_MODEL, NUMERIC_MODEL
from edgefaas.triton.client import FaceExpressionClient, InferenceError
from tests.integration.conftest import gateway_base, gateway_verify, run_deploy
from tests.integration.support import kubernetes_api, nvidia_runtime, photo_path, wait_for

tritonclient = pytest.importorskip("tritonclient.http")
cv2 = pytest.importorskip("cv2")
from tritonclient.utils import InferenceServerException  # noqa: E402

EXPRESSIONS = {"angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"}
TESTCASE_NAMESPACE = "edgefaas-triton"


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(photo_path())), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def photo_jpeg() -> bytes:
    return photo_path().read_bytes()


def _servers(inventory) -> list:
    return [h for h in inventory if h.data.get("triton_server")]


def _http(host) -> str:
    return f"{host.data.get('ssh_hostname') or host.name}:{host.data.get('triton_http_port') or 8000}"


@pytest.fixture
def triton(device):
    if not device.data.get("triton_server"):
        pytest.skip(f"{device.name}: triton_server is off in the inventory")
    url = f"{device.address}:{device.data.get('triton_http_port') or 8000}"
    client = tritonclient.InferenceServerClient(url)
    wait_for(lambda: _ready(client), 120, f"Triton ready on {device.name}")
    return device, url, client


def _ready(client) -> bool:
    try:
        return client.is_server_ready()
    except Exception:
        return False


# -- the server on each device (Task 4.2) -----------------------------------------------------


@pytest.mark.devices("all")
def test_the_server_runs_unprivileged_as_a_service_or_as_a_k3s_workload(triton, inventory):
    device, _, _ = triton
    service = device.host.service("tritonserver")
    servers = device.host.process.filter(comm="tritonserver")
    user = str(servers[0].user) if servers else ""
    who = f"tritonserver runs as {user}" if servers else "no tritonserver process runs"
    if not device.data.get("triton_as_k3s_workload"):
        assert service.is_running and service.is_enabled, "the tritonserver service is not active and enabled"
        assert user == "triton", f"{who}, not as triton"
        return
    # A K3S workload: the systemd service stays down, one pod on this node holds the ports.
    assert not service.is_running and not service.is_enabled, "the tritonserver service is up beside the pod"
    assert user not in ("", "root"), f"{who}: a workload runs as an unprivileged user"
    running = _workload_pods(inventory, device)
    assert len(running) == 1, f"{len(running)} running Triton pods on {device.name}, not 1"
    assert running[0].spec.node_name == device.name and running[0].spec.host_network, (
        f"{running[0].metadata.name} is on {running[0].spec.node_name}, host network "
        f"{running[0].spec.host_network}"
    )


def _workload_pods(inventory, device) -> list:
    """The device's Triton workload pods that are Running and not on their way out."""
    core, _ = kubernetes_api(inventory)
    pods = core.list_namespaced_pod(
        TESTCASE_NAMESPACE, label_selector=f"edgefaas.io/tritonserver={device.name}"
    )
    return [p for p in pods.items if p.status.phase == "Running" and not p.metadata.deletion_timestamp]


def _ready_pod(pods: list):
    if len(pods) == 1 and {c.type: c.status for c in pods[0].status.conditions or []}.get("Ready") == "True":
        return pods[0]
    return None


@pytest.mark.devices("all")
def test_a_service_is_refused_where_the_glibc_is_too_old_and_nothing_changes(device, inventory_path):
    """JetPack's glibc is older than tritonserver's: there it runs only as a K3S workload."""
    if not device.data.get("triton_server"):
        pytest.skip(f"{device.name}: triton_server is off in the inventory")
    glibc = tuple(int(p) for p in device.host.check_output("getconf GNU_LIBC_VERSION").split()[-1].split("."))
    if glibc >= TRITON_GLIBC:
        pytest.skip(f"{device.name}: glibc {glibc} runs tritonserver as a service")
    before = device.host.check_output("ls -l --time-style=+%s /etc/systemd/system /opt 2>&1")
    run = run_deploy(
        str(inventory_path),
        "deploys/triton.py",
        "--limit",
        device.name,
        "--data",
        "triton_as_k3s_workload=False",
    )
    assert run.returncode != 0, f"{device.name}: a Triton service was accepted on glibc {glibc}"
    assert f"{device.name}: " in run.output and "cannot run tritonserver" in run.output, run.output[-2000:]
    assert "triton_as_k3s_workload" in run.output
    assert device.host.check_output("ls -l --time-style=+%s /etc/systemd/system /opt 2>&1") == before
    assert not device.host.file("/etc/systemd/system/tritonserver.service").exists


def test_a_workload_on_a_node_with_the_nvidia_runtime_runs_through_it(triton, inventory):
    device, url, _ = triton
    if not device.data.get("triton_as_k3s_workload"):
        pytest.skip(f"{device.name}: Triton runs as a systemd service here")
    runtime = nvidia_runtime(device)
    if runtime is None:
        pytest.skip(f"{device.name}: no nvidia-container-runtime")
    # Ready as the kubelet sees it (it lags the server by a probe after a K3S agent restart).
    pod = wait_for(
        lambda: _ready_pod(_workload_pods(inventory, device)), 60, f"one Ready Triton pod on {device.name}"
    )
    assert pod.spec.runtime_class_name == "nvidia" and pod.spec.node_name == device.name
    assert httpx.get(f"http://{url}/v2/health/ready", timeout=10, trust_env=False).status_code == 200

    # containerd's own record: the sandbox got the nvidia handler, the container its binary.
    sandbox = device.host.check_output(f"crictl pods -q --name {pod.metadata.name} --state ready")
    assert sandbox, f"no ready sandbox for {pod.metadata.name} on {device.name}"
    status = json.loads(device.host.check_output(f"crictl inspectp {sandbox.split()[0]}"))["status"]
    assert status["runtimeHandler"] == "nvidia"
    container = pod.status.container_statuses[0].container_id.split("://", 1)[1]
    info = json.loads(device.host.check_output(f"crictl inspect {container}"))["info"]
    assert info["runtimeType"] == "io.containerd.runc.v2"
    assert info["runtimeOptions"]["binary_name"] == runtime

    # The lab's stand-in logs each call: the container was created through it, not by runc
    # directly. (A real runtime logs only when its own config asks it to.)
    if "Lab stand-in" in device.host.file(runtime).content_string:
        calls = device.host.file(NVIDIA_RUNTIME_LOG).content_string.splitlines()
        assert any(" create " in line and line.endswith(container) for line in calls), calls[-5:]


@pytest.mark.devices("all")
def test_face_expression_runs_on_the_gpu_exactly_where_there_is_one(triton):
    device, _, client = triton
    gpu = device.data.get("triton_gpu")
    if gpu is None:  # the deploy's NvidiaGpu fact
        gpu = any(device.host.file(path).exists for path in ("/dev/nvidia0", "/dev/nvhost-ctrl-gpu"))
    config = client.get_model_config(FACE_MODEL)
    kinds, expected = {g["kind"] for g in config["instance_group"]}, {"KIND_GPU" if gpu else "KIND_CPU"}
    assert kinds == expected, f"{FACE_MODEL} on {device.name} runs as {kinds}, not {expected}"


@pytest.mark.devices("all")
def test_every_model_is_ready(triton):
    device, _, client = triton
    index = {m["name"]: m.get("state") for m in client.get_model_repository_index()}
    wanted = set(device.data.get("triton_models") or (FACE_MODEL, NUMERIC_MODEL))
    assert {name: index.get(name) for name in wanted} == dict.fromkeys(wanted, "READY")


def test_the_cloud_site_serves_the_larger_expression_model_for_joint_inference(whole_inventory, photo):
    """The cloud's own Triton (its group's triton_models), which joint inference sends the edge's
    unsure faces to: it finds the face itself and classifies it with facex's model."""
    clouds = [h for h in whole_inventory if CLOUD_PROFILE in h.groups and h.data.get("triton_server")]
    if not clouds:
        pytest.skip("no cloud host with triton_server in the inventory")
    for cloud in clouds:
        if LARGE_FACE_MODEL not in (cloud.data.get("triton_models") or {}):
            continue
        client = tritonclient.InferenceServerClient(_http(cloud))
        wait_for(lambda c=client: _ready(c), 120, f"Triton ready on {cloud.name}")
        faces, _ = FaceExpressionClient(_http(cloud), model=LARGE_FACE_MODEL).recognize(photo)
        assert len(faces) == 1 and faces[0].expression in EXPRESSIONS, faces


@pytest.mark.devices("all")
def test_a_real_photo_gives_one_face_and_a_blank_frame_none(triton, photo):
    _, url, _ = triton
    client = FaceExpressionClient(url)
    faces, _ = client.recognize(photo)
    assert len(faces) == 1
    face = faces[0]
    x, y, w, h = face.box
    assert face.expression in EXPRESSIONS and 0.0 <= face.score <= 1.0
    # The box is in the photo's own pixels and covers a face-sized part of it.
    assert 0 <= x < x + w <= photo.shape[1] and 0 <= y < y + h <= photo.shape[0]
    assert w * h > 0.02 * photo.shape[0] * photo.shape[1]
    assert client.recognize(np.zeros_like(photo))[0] == []


@pytest.mark.devices("all")
def test_a_malformed_tensor_is_refused_and_the_server_keeps_serving(triton, photo):
    _, url, client = triton
    bad = tritonclient.InferInput("IMAGE", [4, 4], "UINT8")  # no colour axis
    bad.set_data_from_numpy(np.zeros((4, 4), np.uint8))
    with pytest.raises(InferenceServerException, match=r"(?i)dims|shape|IMAGE"):
        client.infer(FACE_MODEL, [bad])
    wrong = tritonclient.InferInput("IMAGE", [2, 2, 3], "FP32")  # wrong type
    wrong.set_data_from_numpy(np.zeros((2, 2, 3), np.float32))
    with pytest.raises(InferenceServerException, match=r"(?i)type|FP32|UINT8"):
        client.infer(FACE_MODEL, [wrong])
    assert client.is_server_ready() and client.is_model_ready(FACE_MODEL)
    assert len(FaceExpressionClient(url).recognize(photo)[0]) == 1


@pytest.mark.devices("all")
def test_the_numeric_model_adds_and_subtracts(triton):
    _, _, client = triton
    rng = np.random.default_rng()
    a, b = rng.random(4, dtype=np.float32), rng.random(4, dtype=np.float32)
    inputs = [tritonclient.InferInput("INPUT0", [4], "FP32"), tritonclient.InferInput("INPUT1", [4], "FP32")]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(b)
    result = client.infer(NUMERIC_MODEL, inputs)
    assert np.allclose(result.as_numpy("OUTPUT0"), a + b)
    assert np.allclose(result.as_numpy("OUTPUT1"), a - b)


def test_an_unreachable_server_is_a_clear_error():
    with pytest.raises(InferenceError, match=re.escape("127.0.0.1:9")):
        FaceExpressionClient("http://127.0.0.1:9", timeout=2).recognize(np.zeros((8, 8, 3), np.uint8))


# -- Task 4.3: two test cases in pods on different devices ----------------------------------


def test_the_two_test_case_jobs_pass_on_different_devices(inventory):
    from kubernetes import client as k8s

    core, api_client = kubernetes_api(inventory)
    batch = k8s.BatchV1Api(api_client)

    def finished():
        jobs = batch.list_namespaced_job(TESTCASE_NAMESPACE).items
        done = [j for j in jobs if (j.status.succeeded or 0) + (j.status.failed or 0) > 0]
        return (
            jobs
            if len(jobs) >= 2 and len(done) == len(jobs) and all(j.status.succeeded for j in jobs)
            else None
        )

    jobs = wait_for(finished, 300, "both Triton test-case Jobs to succeed")
    reports, nodes = {}, set()
    for job in jobs:
        pods = core.list_namespaced_pod(
            TESTCASE_NAMESPACE, label_selector=f"job-name={job.metadata.name}"
        ).items
        succeeded = [p for p in pods if p.status.phase == "Succeeded"]
        assert succeeded, f"Job {job.metadata.name} succeeded, yet none of its pods did"
        winner = succeeded[0]
        nodes.add(winner.spec.node_name)
        report = json.loads(winner.status.container_statuses[0].state.terminated.message)
        reports[report["case"]] = report
        # Each case calls a server on a device other than its own.
        addresses = [h.data.get("ssh_hostname") for h in inventory if h.name == winner.spec.node_name]
        assert addresses, f"{winner.spec.node_name}, where {job.metadata.name} ran, is not in the inventory"
        assert addresses[0] not in report["server"], f"{report['case']} called its own device: {report}"
    assert len(nodes) == 2, f"the two test cases ran on {nodes}, not two devices"
    assert reports["http-face"]["passed"] and len(reports["http-face"]["faces"]) == 1
    assert reports["http-face"]["blank_faces"] == 0
    assert reports["grpc-numeric"]["passed"] and all(reports["grpc-numeric"]["checks"].values())


# -- the vision functions through the gateway (Demos 3 and 4) --------------------------------


@pytest.fixture(scope="module")
def public(server, port):
    with httpx.Client(
        base_url=gateway_base(server, server.address, port),
        timeout=120,
        trust_env=False,
        verify=gateway_verify(server),
    ) as client:
        yield client


def _until_ok(call, what: str):
    return wait_for(lambda: (r := call()).status_code == 200 and r, 180, what, interval=1.0)


def test_the_camera_function_answers_a_frame(public):
    answer = _until_ok(lambda: public.get("/function/camera"), "the camera function")
    assert answer.headers["content-type"] == "image/jpeg"
    frame = cv2.imdecode(np.frombuffer(answer.content, np.uint8), cv2.IMREAD_COLOR)
    assert frame is not None and frame.ndim == 3 and frame.shape[0] >= 100
    assert answer.headers["x-camera-source"]


def test_face_expression_finds_the_face_and_says_which_server_ran_it(public, photo_jpeg, inventory):
    answer = _until_ok(
        lambda: public.post("/function/face-expression", content=photo_jpeg), "the face-expression function"
    )
    result = answer.json()
    assert len(result["faces"]) == 1 and result["faces"][0]["expression"] in EXPRESSIONS
    servers = {f"http://{_http(h)}" for h in _servers(inventory)}
    assert result["served_by"] in servers and result["reason"]
    assert result["latency_ms"] > 0


def test_face_expression_on_the_camera_frame(public):
    answer = _until_ok(
        lambda: public.post("/function/face-expression", params={"source": "camera"}),
        "face-expression on camera",
    )
    assert isinstance(answer.json()["faces"], list)


@pytest.mark.parametrize("body", [b"", b"GIF89a not a photo", b"\xff\xd8\xff\xe0 truncated"])
def test_face_expression_refuses_a_body_that_is_not_a_photo(public, body):
    _until_ok(lambda: public.get("/function/camera"), "the functions")
    answer = public.post("/function/face-expression", content=body)
    assert answer.status_code == 400
    assert "JPEG" in answer.text or "image" in answer.text


def test_the_smart_monitor_keeps_the_latest_result(public):
    _until_ok(lambda: public.get("/function/face-expression/monitor"), "the smart monitor")
    status = wait_for(
        lambda: (s := public.get("/function/face-expression/monitor").json())["frames"] >= 2 and s,
        60,
        "two monitored frames",
    )
    assert status["latest"]["served_by"] and isinstance(status["latest"]["faces"], list)
    frame = public.get("/function/face-expression/monitor/frame")
    assert frame.status_code == 200 and frame.content.startswith(b"\xff\xd8\xff")
    assert isinstance(json.loads(frame.headers["x-faces"]), list)
    first = status["latest"]["at"]
    time.sleep(2)
    assert public.get("/function/face-expression/monitor").json()["latest"]["at"] > first


def test_with_every_triton_server_down_the_function_answers_503_and_recovers(public, photo_jpeg, inventory):
    from kubernetes import client as k8s

    from tests.integration.conftest import connect

    _until_ok(lambda: public.post("/function/face-expression", content=photo_jpeg), "face-expression")
    core, api_client = kubernetes_api(inventory)
    apps = k8s.AppsV1Api(api_client)

    def set_running(host, up: bool) -> None:
        if host.data.get("triton_as_k3s_workload"):
            body = {"spec": {"replicas": 1 if up else 0}}
            apps.patch_namespaced_deployment_scale(f"tritonserver-{host.name}", TESTCASE_NAMESPACE, body)
            if not up:  # the pod must be gone, not just on its way out (unready, still serving)
                selector = f"edgefaas.io/tritonserver={host.name}"
                wait_for(
                    lambda: not core.list_namespaced_pod(TESTCASE_NAMESPACE, label_selector=selector).items,
                    90,
                    f"the Triton pod on {host.name} gone",
                )
        else:
            device = connect(host.name, host.data, host.groups)
            device.host.check_output(f"systemctl {'start' if up else 'stop'} tritonserver")

    servers = _servers(inventory)
    try:
        for host in servers:
            set_running(host, False)
        answer = public.post("/function/face-expression", content=photo_jpeg)
        assert answer.status_code == 503
        assert "Triton" in answer.json()["error"]
    finally:
        for host in servers:
            set_running(host, True)
    for host in servers:
        client = tritonclient.InferenceServerClient(_http(host))
        wait_for(lambda c=client: _ready(c), 180, f"Triton back on {host.name}")
    answer = _until_ok(lambda: public.post("/function/face-expression", content=photo_jpeg), "recovery")
    assert len(answer.json()["faces"]) == 1
