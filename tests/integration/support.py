"""What several integration suites share: waiting, the K3S server and its API, pods, probes.

Fixtures live in conftest.py; these are plain functions the suites and benchmarks import.
"""

from __future__ import annotations

import datetime as dt
import http.server
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from edgefaas.deploy import nvidia
from edgefaas.deploy.facts import NvidiaContainerRuntime
from tests.integration.conftest import Device, server_device

if TYPE_CHECKING:
    from kubernetes import client as k8s

# The Kubernetes client is imported where it is used: suites that only wait, probe or read a
# device (the platform suite, tests/arm64) must not be skipped or broken without it.


def wait_for(
    predicate: Callable[[], Any], timeout: float, what: str | Callable[[], str], interval: float = 1.0
) -> Any:
    """The first true value of `predicate`, tried every `interval` s; fails after `timeout` s
    naming `what` (or what it returns, when it is a function: what was seen last) and the
    last value seen."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    waited = what() if callable(what) else what
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {waited} (last: {last!r})")


def kubernetes_api(inventory) -> tuple[k8s.CoreV1Api, k8s.ApiClient]:
    """A Kubernetes client from the server's own kubeconfig, pointed at its node address."""
    from kubernetes import client as k8s
    from kubernetes import config as k8s_config

    server = server_device(inventory)
    kubeconfig = yaml.safe_load(server.host.file("/etc/rancher/k3s/k3s.yaml").content_string)
    port = server.data.get("k3s_api_port", 6443)
    for cluster in kubeconfig["clusters"]:
        cluster["cluster"]["server"] = f"https://{server.address}:{port}"
    api_client = k8s_config.new_client_from_config_dict(kubeconfig)
    return k8s.CoreV1Api(api_client), api_client


def nvidia_runtime(device: Device) -> str | None:
    """The nvidia-container-runtime K3S finds on this device (the deploy's own fact), or None."""
    return nvidia.runtime_from_listing(device.host.check_output(NvidiaContainerRuntime.command).splitlines())


def pod(name: str, node: str, command: list[str], image: str, restart: str = "Never") -> k8s.V1Pod:
    """A bare pod pinned to `node`, run as an unprivileged user from a local image."""
    from kubernetes import client as k8s

    return k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(name=name, labels={"app": name}),
        spec=k8s.V1PodSpec(
            node_name=node,
            restart_policy=restart,
            security_context=k8s.V1PodSecurityContext(run_as_user=10001, run_as_non_root=True),
            containers=[
                k8s.V1Container(name="main", image=image, image_pull_policy="Never", command=command)
            ],
        ),
    )


def tcp_state(address: str, port: int, timeout: float = 1.5) -> str:
    """'open', 'refused' or 'dropped' for a TCP connection from the test runner."""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return "open"
    except ConnectionRefusedError:
        return "refused"
    except TimeoutError:
        return "dropped"


# -- node certification, as the K3S server and the authentication server see it ---------------


def kubectl_json(server: Device, args: str):
    return json.loads(server.host.check_output(f"kubectl {args} -o json"))


def node(server: Device, name: str) -> dict | None:
    found = server.host.run(f"kubectl get node {name} -o json")
    return json.loads(found.stdout) if found.rc == 0 else None


def events(server: Device, name: str, reason: str, since: dt.datetime) -> list[dict]:
    items = kubectl_json(server, "get events -n default")["items"]
    return [
        e
        for e in items
        if e["involvedObject"]["name"] == name
        and e["reason"] == reason
        and _time(e.get("lastTimestamp") or e["metadata"]["creationTimestamp"]) >= since
    ]


def _time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def server_status(server: Device) -> dict:
    return json.loads(
        server.host.check_output("curl -fsS --cacert /etc/edgefaas/ca.pem https://127.0.0.1:8472/v1/status")
    )


def is_certified(server: Device, name: str) -> dict | None:
    current = node(server, name)
    if current and current["metadata"]["labels"].get("edgefaas.io/certified") == "true":
        return current
    return None


def rejoin(server: Device, device: Device) -> dt.datetime:
    """The device leaves the cluster and joins again as a new node; when it started joining."""
    device.host.check_output("systemctl stop k3s-agent")
    server.host.check_output(f"kubectl delete node {device.name} --ignore-not-found --timeout=60s")
    started = dt.datetime.now(dt.UTC).replace(microsecond=0)
    device.host.check_output("systemctl start k3s-agent")
    return started


def certified_after_join(server: Device, name: str) -> float:
    current = wait_for(lambda: is_certified(server, name), 90, f"{name} to be certified", interval=0.25)
    joined = _time(current["metadata"]["creationTimestamp"])
    return (_time(current["metadata"]["annotations"]["edgefaas.io/certified-at"]) - joined).total_seconds()


class Callbacks:
    """An HTTP receiver for async calls' callbacks, on this machine's address towards the gateways."""

    def __init__(self, towards: str) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((towards, 9))
            address = probe.getsockname()[0]
        self.received: Counter[str] = Counter()
        received, lock = self.received, threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    received[self.headers.get("X-Call-Id", "")] += 1
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((address, 0), Handler)
        self.url = f"http://{address}:{self.server.server_address[1]}/done"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def photo_path() -> Path:
    """A real photo with one face in it: matplotlib's sample, else the lab's own samples."""
    try:
        import matplotlib.cbook

        return Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    except Exception:
        from edgefaas.lab.builds.samples import sample_photos

        return sample_photos()[0]
