"""K3S deploy and pod-start figures for an inventory (the virtual lab by default).

    sudo .venv/bin/python -m tests.perf.k3s_bench [--inventory inventories/lab.py] [--pods 20]
        [--json tests/perf/scale-figures.json]

Measured in one run: deploys/k3s_uninstall.py (the cluster goes away), deploys/k3s.py from
clean to every node Ready, its no-change re-run, and pod start latency (create to Running)
over N pods spread across the nodes. This removes and rebuilds the cluster: run it on a lab,
not on a cluster that serves anything. --json adds (or replaces) this node count's deploy and
re-run times in a scale-figures file, which `edgefaas perf --scale-json` plots.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from pathlib import Path

import yaml
from kubernetes import client as k8s

from edgefaas.deploy.inventory import load_inventory
from edgefaas.perf.scale import K3S_SERIES, record_point
from edgefaas.perf.stats import percentile
from tests.integration.conftest import REPO, connect, run_deploy
from tests.integration.support import kubernetes_api
from tests.integration.support import pod as bare_pod


def _pyinfra(inventory: str, deploy: str) -> tuple[float, str]:
    run = run_deploy(inventory, deploy, timeout=None)
    if run.returncode != 0:
        raise SystemExit(f"{deploy} failed:\n{run.output[-3000:]}")
    return run.seconds, run.summary()


def pod_start_latencies(inventory, count: int) -> list[float]:
    core, _client = kubernetes_api(inventory)
    image = core.read_namespaced_pod("task13-server", "edgefaas-task13").spec.containers[0].image
    nodes = [h.name for h in inventory.get_group("k3s_server") + inventory.get_group("k3s_agent")]
    namespace = f"edgefaas-bench-{uuid.uuid4().hex[:6]}"
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=namespace)))
    try:
        created: dict[str, float] = {}
        for i in range(count):
            name = f"p{i}"
            created[name] = time.monotonic()
            core.create_namespaced_pod(
                namespace, bare_pod(name, nodes[i % len(nodes)], ["sleep", "600"], image)
            )
        running: dict[str, float] = {}
        deadline = time.monotonic() + 300
        while len(running) < count and time.monotonic() < deadline:
            for pod in core.list_namespaced_pod(namespace).items:
                if pod.status.phase == "Running" and pod.metadata.name not in running:
                    running[pod.metadata.name] = time.monotonic()
            time.sleep(0.1)
        if len(running) < count:
            raise SystemExit(f"only {len(running)} of {count} pods Running after 300 s")
        return sorted(running[name] - created[name] for name in running)
    finally:
        core.delete_namespace(namespace)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--inventory", default="inventories/lab.py")
    parser.add_argument("--pods", type=int, default=20)
    parser.add_argument(
        "--json", type=Path, metavar="FILE", help="record the figures in this scale-figures file"
    )
    args = parser.parse_args()
    inventory = load_inventory(args.inventory, cwd=str(REPO))
    nodes = len(inventory.get_group("k3s_server") + inventory.get_group("k3s_agent"))

    uninstall, _ = _pyinfra(args.inventory, "deploys/k3s_uninstall.py")
    server = inventory.get_group("k3s_server")[0]
    left = connect(server.name, server.data, server.groups).host.run("test -e /usr/local/bin/k3s").rc == 0
    first, first_changes = _pyinfra(args.inventory, "deploys/k3s.py")
    rerun, rerun_changes = _pyinfra(args.inventory, "deploys/k3s.py")
    # The Task 1.3 pods are the image reference the pods below reuse: wait for them.
    core, _ = kubernetes_api(inventory)
    for _ in range(120):
        if core.list_namespaced_pod("edgefaas-task13").items:
            break
        time.sleep(1)
    latencies = pod_start_latencies(inventory, args.pods)

    p50 = percentile(latencies, 50)
    p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))]
    print(f"\nK3S on {nodes} nodes ({args.inventory})")
    print(f"  uninstall:                        {uninstall:6.1f} s (k3s binary left behind: {left})")
    print(f"  deploy, clean to all nodes Ready: {first:6.1f} s ({first_changes})")
    print(f"  no-change re-run:                 {rerun:6.1f} s ({rerun_changes})")
    print(f"  re-run / first run:               {rerun / first:6.2f}")
    print(f"  pod start (create to Running), {args.pods} pods: p50 {p50:.2f} s, p95 {p95:.2f} s")
    print(
        yaml.safe_dump(
            {"nodes": nodes, "deploy_s": first, "rerun_s": rerun, "pod_p50_s": p50, "pod_p95_s": p95}
        )
    )
    if args.json:
        recorded = f"recorded {time.strftime('%Y-%m-%d')} on a {os.cpu_count()}-core machine"
        record_point(args.json, K3S_SERIES, nodes, first, rerun, recorded, unit="nodes")
        print(f"figures recorded in {args.json}")


if __name__ == "__main__":
    main()
