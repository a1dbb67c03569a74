"""Cloud-edge figures (Scenario 3.3): offload latency, offloaded share under load, publish time.

    .venv/bin/python -m edgefaas.perf.sites [--calls 100] [--loads 1,2,4,8,16] [--max-inflight 4]
        [--work-ms 50] [--publishes 10] [--poll 0.2] [--out DIR]
    .venv/bin/python -m edgefaas.perf.sites --inventory inventories/lab.py [--calls ...]

Starts two real gateways as processes on loopback, a cloud and an edge (`edgefaas gateway
--site-role cloud|edge`, the local backend running functions as processes, SQLite), signs the
catalogue as the deploys do (the cloud's key; the edge verifies every entry), and measures the
figures below. With --inventory it measures an inventory's deployed sites instead (the lab's
cloud-1 behind its provider edge, and the edge's first gateway; functions in K3S pods): the
objective is the edge's own (inventory data `edgefaas_site_objectives`, the first function with
a max_inflight), and what the benchmark published is removed at the end.

- **Latency, served at the edge against offloaded**: --calls calls each, taken in turn, of a
  function the cloud published to the edge and of one it kept to itself (the edge sends those
  on: `X-EdgeFaaS-Offload-Reason: not_deployed`); p50/p95 as the caller waits.
- **Offloaded share as load grows**: for each of --loads concurrent callers, every caller
  makes calls of a function doing --work-ms of work whose edge objective is --max-inflight
  calls at once; the share the edge sent to the cloud (`queue_depth`) against what ran locally.
- **Publish to answering at the edge**: --publishes updates of a function in the cloud, each
  timed from the cloud's 202 to the first call at the edge that runs the new revision there;
  bounded below by the edge's catalogue poll (--poll seconds).

Both gateways and their functions share this machine's cores with the callers, and loopback
has no WAN delay: the offload figure is the gateway's own cost of sending a call on, which a
real WAN adds its round trip to. Prints the figures and writes OUT/sites_bench.json and
OUT/sites-figures.txt (default tests/perf/out/sites-<time>). Exit status 2 when the benchmark
broke (a gateway did not start, a call failed), else 0.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from edgefaas.perf.bench import BenchError, out_root
from edgefaas.perf.locust_run import free_port
from edgefaas.perf.stats import percentile

PASSWORD = "sites-bench"
EDGE, CLOUD = "edge-a", "cloud"
SITES_ANNOTATION = "edgefaas.io/sites"
CODE = '''"""Works for WORK_MS of CPU-free time and says which revision answered."""

import time

REVISION = 0
WORK_MS = 0


def handle(event, context):
    time.sleep(WORK_MS / 1000)
    return {"revision": REVISION}
'''


def function_code(revision: int, work_ms: float) -> str:
    return CODE.replace("REVISION = 0", f"REVISION = {revision}").replace(
        "WORK_MS = 0", f"WORK_MS = {work_ms}"
    )


class Gateway:
    """`edgefaas gateway` as a process on loopback; its log in its data directory."""

    def __init__(self, name: str, root: Path, *options: str) -> None:
        self.name = name
        self.data_dir = root / name
        self.data_dir.mkdir(parents=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = self.data_dir / "gateway.log"
        argv = [sys.executable, "-m", "edgefaas.cli", "gateway", "--backend", "local", "--host", "127.0.0.1"]
        argv += ["--port", str(self.port), "--data-dir", str(self.data_dir), "--admin-password", PASSWORD]
        argv += ["--log-level", "warning", *options]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        self.admin = httpx.Client(base_url=self.url, auth=("admin", PASSWORD), timeout=60, trust_env=False)
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                raise BenchError(f"the {name} gateway exited: {self.log.read_text()[-2000:]}")
            try:
                if self.admin.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise BenchError(
                    f"the {name} gateway did not answer within 60 s: {self.log.read_text()[-2000:]}"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        self.admin.close()
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Sites:
    """A cloud and an edge that follows it, started in `root`."""

    edge_name, cloud_name = EDGE, CLOUD
    wait_s = 60.0  # for a function to answer at the edge after a publish
    every = 0.01  # between two asks whether it does: each is a billed call
    busy = "Busy"  # the function whose objective the share is measured against
    where = "a cloud and an edge gateway on loopback, one machine"

    def __init__(self, root: Path, objectives: dict[str, dict[str, float]], poll: float) -> None:
        credential = secrets.token_urlsafe(24)
        (root / "sites.json").write_text(json.dumps({"sites": {EDGE: credential}}))
        self.cloud = Gateway(
            CLOUD,
            root,
            "--site-name",
            CLOUD,
            "--site-role",
            "cloud",
            "--sites-file",
            str(root / "sites.json"),
        )
        self.edge: Gateway | None = None
        try:
            key = self.cloud.admin.get("/system/catalogue-key")
            if key.status_code != 200:
                raise BenchError(f"the cloud has no catalogue key: {key.status_code} {key.text[:200]}")
            (root / "catalogue-key.pem").write_text(key.text)
            (root / "credential").write_text(credential)
            (root / "objectives.json").write_text(json.dumps(objectives))
            self.edge = Gateway(
                EDGE,
                root,
                *("--site-name", EDGE, "--site-role", "edge", "--cloud-url", self.cloud.url),
                *("--cloud-site", CLOUD, "--site-credential-file", str(root / "credential")),
                *("--catalogue-key", str(root / "catalogue-key.pem")),
                *("--objectives-file", str(root / "objectives.json"), "--site-poll", str(poll)),
            )
            made = self.edge.admin.post("/system/licenses", json={"name": "bench", "plan": "standard"})
            if made.status_code != 201:
                raise BenchError(f"no license at the edge: {made.status_code} {made.text[:200]}")
            self.token = made.json()["token"]
        except BaseException:
            self.stop()
            raise

    def publish(self, name: str, revision: int, work_ms: float, at_edge: bool) -> None:
        body: dict[str, Any] = {"service": name, "code": function_code(revision, work_ms)}
        if at_edge:
            body["annotations"] = {SITES_ANNOTATION: EDGE}
        answer = self.cloud.admin.put("/system/functions", json=body)
        if answer.status_code == 404:
            answer = self.cloud.admin.post("/system/functions", json=body)
        if answer.status_code not in (200, 202):
            raise BenchError(f"publishing {name} in the cloud: {answer.status_code} {answer.text[:200]}")

    def caller(self) -> httpx.Client:
        assert self.edge is not None
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.Client(base_url=self.edge.url, headers=headers, timeout=60, trust_env=False)

    def stop(self) -> None:
        for gateway in (self.edge, self.cloud):
            if gateway is not None:
                gateway.stop()


class LabSites:
    """An inventory's deployed sites (edgefaas.deploy.sites): its cloud and its first edge site, each
    reached at its first gateway, verified by its own CA and logged in to with its own admin
    password, both read over SSH as the perf tools read them (edgefaas.perf.site_gateway)."""

    wait_s = 180.0  # a publish reaches the edge at its next poll, then a pod starts there
    # Each ask is a billed call over HTTPS: asked as often as on loopback, the asks alone kept the
    # lab's edge too busy to start the new revision's pod.
    every = 0.25
    where = "an inventory's deployed sites"
    BENCH_FUNCTIONS = ("AtEdge", "InCloud", "Published")
    PASSWORD_FILE = "/var/lib/edgefaas/gateway/admin-password"

    def __init__(self, inventory: list[Any]) -> None:
        from edgefaas.deploy.gateways import first_gateway
        from edgefaas.deploy.sites import Site, collaboration, site_of
        from edgefaas.perf.site_gateway import GatewayAccessError

        plan = next((collaboration(h, inventory) for h in inventory), None)
        if plan is None or not plan.edges:
            raise BenchError(
                "the inventory holds no cloud site and edge site (hosts of group `cloud`, and others)"
            )
        self.cloud_name, self.edge_name = plan.cloud.name, plan.edges[0]
        edge_site = Site(self.edge_name, [h for h in inventory if site_of(h) == self.edge_name])
        self.clients: list[httpx.Client] = []
        try:
            self.cloud_admin, _ = self._admin(first_gateway(plan.cloud))
            self.edge_admin, self._edge_verify = self._admin(first_gateway(edge_site))
        except GatewayAccessError as exc:
            self.stop()
            raise BenchError(str(exc)) from None
        self.edge_url = str(self.edge_admin.base_url).rstrip("/")
        self.where = (
            f"the inventory's sites: edge {self.edge_name} at {self.edge_url}, cloud {self.cloud_name} "
            f"at {str(self.cloud_admin.base_url).rstrip('/')}; functions in K3S pods"
        )
        status = self.edge_admin.get("/system/sites").json()
        objectives = {n: o for n, o in (status.get("objectives") or {}).items() if o.get("max_inflight")}
        self.busy = next(iter(sorted(objectives)), None)
        self.max_inflight = objectives[self.busy]["max_inflight"] if self.busy else None
        self.poll = None
        made = self.edge_admin.post("/system/licenses", json={"name": "perf-sites", "plan": "standard"})
        if made.status_code != 201:
            self.stop()
            raise BenchError(f"no license at the edge: {made.status_code} {made.text[:200]}")
        self.license_id, self.token = made.json()["id"], made.json()["token"]

    def _admin(self, host: Any) -> tuple[httpx.Client, Any]:
        from edgefaas.perf.site_gateway import GatewayTarget, gateway_url_of, gateway_verify, read_over_ssh

        target = GatewayTarget(gateway_url_of(host), host.name, host.data)
        verify = gateway_verify(target)
        password = read_over_ssh(target, self.PASSWORD_FILE, f"{host.name}'s gateway admin password")
        client = httpx.Client(
            base_url=target.url, auth=("admin", password), timeout=120, trust_env=False, verify=verify
        )
        self.clients.append(client)
        return client, verify

    def publish(self, name: str, revision: int, work_ms: float, at_edge: bool) -> None:
        body: dict[str, Any] = {"service": name, "code": function_code(revision, work_ms)}
        if at_edge:
            body["annotations"] = {SITES_ANNOTATION: self.edge_name}
        answer = self.cloud_admin.put("/system/functions", json=body)
        if answer.status_code == 404:
            answer = self.cloud_admin.post("/system/functions", json=body)
        if answer.status_code not in (200, 202):
            raise BenchError(f"publishing {name} in the cloud: {answer.status_code} {answer.text[:200]}")

    def caller(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.Client(
            base_url=self.edge_url, headers=headers, timeout=120, trust_env=False, verify=self._edge_verify
        )

    def stop(self) -> None:
        """Remove what the benchmark published (the cloud withdraws it from the edge) and its license."""
        if getattr(self, "token", None):
            for name in (*self.BENCH_FUNCTIONS, *([self.busy] if self.busy else [])):
                self.cloud_admin.request("DELETE", "/system/functions", json={"functionName": name})
            self.edge_admin.delete(f"/system/licenses/{self.license_id}")
        for client in self.clients:
            client.close()


def _where(answer: httpx.Response) -> tuple[str, str]:
    return answer.headers.get("X-EdgeFaaS-Site", "?"), answer.headers.get("X-EdgeFaaS-Offload-Reason", "?")


def _until(what: str, check, timeout: float = 60.0, every: float = 0.01) -> float:
    """Seconds until `check()` is true, tried every `every` s; BenchError after `timeout`."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise BenchError(f"{what}: not within {timeout:.0f} s")
        time.sleep(every)
    return time.monotonic() - started


def _runs_at_edge(sites: Any, client: httpx.Client, name: str, revision: int) -> bool:
    answer = client.post(f"/function/{name}")
    return (
        answer.status_code == 200
        and _where(answer)[0] == sites.edge_name
        and answer.json().get("revision") == revision
    )


def measure_latency(sites: Sites, calls: int) -> dict[str, Any]:
    """The same function body served at the edge and offloaded, calls taken in turn."""
    sites.publish("AtEdge", 1, 0, at_edge=True)
    sites.publish("InCloud", 1, 0, at_edge=False)
    seconds: dict[str, list[float]] = {"edge": [], "offloaded": []}
    with sites.caller() as client:
        _until(
            "AtEdge answering at the edge",
            lambda: _runs_at_edge(sites, client, "AtEdge", 1),
            sites.wait_s,
            sites.every,
        )
        for name in ("AtEdge", "InCloud"):  # warm both paths (processes, connections)
            for _ in range(5):
                client.post(f"/function/{name}")
        for _ in range(calls):
            for name, kind, site in (
                ("AtEdge", "edge", sites.edge_name),
                ("InCloud", "offloaded", sites.cloud_name),
            ):
                started = time.perf_counter()
                answer = client.post(f"/function/{name}")
                elapsed = time.perf_counter() - started
                if answer.status_code != 200 or _where(answer)[0] != site:
                    raise BenchError(f"{name}: {answer.status_code} at {_where(answer)}: {answer.text[:200]}")
                seconds[kind].append(elapsed)
    return {
        kind: {"calls": len(v), "p50_ms": percentile(v, 50) * 1000, "p95_ms": percentile(v, 95) * 1000}
        for kind, v in seconds.items()
    }


def measure_share(
    sites: Sites, loads: list[int], work_ms: float, calls_per_caller: int
) -> list[dict[str, Any]]:
    """Offloaded share of a function with an in-flight objective, per number of concurrent callers."""
    sites.publish(sites.busy, 1, work_ms, at_edge=True)
    rows = []
    with sites.caller() as probe:
        _until(
            f"{sites.busy} answering at the edge",
            lambda: _runs_at_edge(sites, probe, sites.busy, 1),
            sites.wait_s,
            sites.every,
        )
    for load in loads:
        where, failures, elapsed = _load(sites, load, calls_per_caller)
        if failures:
            raise BenchError(f"{len(failures)} calls failed at {load} callers: {failures[:3]}")
        total = sum(where.values())
        offloaded = sum(n for (site, _), n in where.items() if site == sites.cloud_name)
        rows.append(
            {
                "callers": load,
                "calls": total,
                "offloaded": offloaded,
                "share_offloaded": offloaded / total if total else 0.0,
                "reasons": {reason: n for (_, reason), n in sorted(where.items())},
                "calls_per_s": total / elapsed if elapsed else 0.0,
            }
        )
    return rows


def _load(sites: Sites, callers: int, calls: int) -> tuple[Counter[tuple[str, str]], list[str], float]:
    """`callers` threads making `calls` calls of the busy function each: (where they ran, failures,
    seconds)."""
    where: Counter[tuple[str, str]] = Counter()
    failures: list[str] = []
    lock = threading.Lock()

    def caller() -> None:
        with sites.caller() as client:
            for _ in range(calls):
                answer = client.post(f"/function/{sites.busy}")
                with lock:
                    if answer.status_code == 200:
                        where[_where(answer)] += 1
                    else:
                        failures.append(f"{answer.status_code} {answer.text[:100]}")

    threads = [threading.Thread(target=caller) for _ in range(callers)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return where, failures, time.monotonic() - started


def measure_publish(sites: Sites, publishes: int) -> dict[str, Any]:
    """Seconds from the cloud's answer to a publish until the edge runs that revision."""
    times = []
    with sites.caller() as client:
        for revision in range(1, publishes + 1):
            sites.publish("Published", revision, 0, at_edge=True)
            times.append(
                _until(
                    f"revision {revision} at the edge",
                    lambda r=revision: _runs_at_edge(sites, client, "Published", r),
                    sites.wait_s,
                    sites.every,
                )
            )
    return {"publishes": len(times), "p50_s": percentile(times, 50), "max_s": max(times)}


def render(result: dict[str, Any]) -> str:
    latency, share, publish = result["latency"], result["share"], result["publish"]
    s = result["settings"]
    lines = [
        f"Cloud-edge figures (edgefaas.perf.sites): {result.get('where', Sites.where)}",
        "",
        f"latency as the caller waits, {latency['edge']['calls']} calls each, taken in turn:",
        f"  {'':24}{'p50 ms':>10}{'p95 ms':>10}",
    ]
    for kind, label in (("edge", "served at the edge"), ("offloaded", "offloaded to the cloud")):
        lines.append(f"  {label:24}{latency[kind]['p50_ms']:>10.2f}{latency[kind]['p95_ms']:>10.2f}")
    ratio = (
        latency["offloaded"]["p50_ms"] / latency["edge"]["p50_ms"]
        if latency["edge"]["p50_ms"]
        else float("nan")
    )
    lines += [
        f"  offloaded / edge, p50: {ratio:.2f}",
        "",
        f"offloaded share as load grows (edge objective: {s['max_inflight']} calls at once; "
        f"{s['work_ms']:g} ms of work per call):",
        f"  {'callers':>8}{'calls':>8}{'offloaded':>11}{'share':>8}{'calls/s':>9}",
    ]
    for row in share:
        lines.append(
            f"  {row['callers']:>8}{row['calls']:>8}{row['offloaded']:>11}{row['share_offloaded']:>8.0%}"
            f"{row['calls_per_s']:>9.1f}"
        )
    lines += [
        "",
        f"publish in the cloud to answering at the edge ({publish['publishes']} updates, catalogue poll "
        f"{_seconds(s['poll'])}): p50 {publish['p50_s']:.2f} s, max {publish['max_s']:.2f} s",
    ]
    return "\n".join(lines) + "\n"


def _measure(
    sites: Any, args: argparse.Namespace
) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """The three figures on `sites` (Sites or LabSites), which are stopped after."""
    try:
        print("publish to answering at the edge ...", file=sys.stderr)
        publish = measure_publish(sites, args.publishes)
        print("latency at the edge and offloaded ...", file=sys.stderr)
        latency = measure_latency(sites, args.calls)
        share: list[dict[str, Any]] = []
        if sites.busy is None:
            print("no objective with max_inflight at the edge: no offloaded share measured", file=sys.stderr)
        else:
            print(f"offloaded share at {args.loads} callers ...", file=sys.stderr)
            share = measure_share(sites, args.loads, args.work_ms, args.calls_per_caller)
        return publish, latency, share
    finally:
        sites.stop()


def _measure_inventory(
    args: argparse.Namespace, settings: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]], str]:
    from edgefaas.deploy.inventory import InventoryError, load_inventory

    try:
        inventory = list(load_inventory(args.inventory))
    except InventoryError as exc:
        raise BenchError(str(exc)) from None
    sites = LabSites(inventory)
    # The edge's own objective and poll, not the loopback defaults.
    settings.update(max_inflight=sites.max_inflight, poll="the edge's")
    print(f"measuring {sites.where}", file=sys.stderr)
    return (*_measure(sites, args), sites.where)


def _seconds(value: Any) -> str:
    return f"{value:g} s" if isinstance(value, int | float) else str(value)


def _loads(text: str) -> list[int]:
    try:
        loads = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--loads takes numbers separated by commas, not {text!r}") from None
    if not loads or min(loads) < 1:
        raise argparse.ArgumentTypeError("--loads needs at least one number, each 1 or more")
    return loads


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m edgefaas.perf.sites",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--calls", type=int, default=100, help="latency calls per path (default 100)")
    parser.add_argument(
        "--loads", type=_loads, default=[1, 2, 4, 8, 16], help="concurrent callers (default 1,2,4,8,16)"
    )
    parser.add_argument(
        "--calls-per-caller", type=int, default=20, help="calls each caller makes per load (default 20)"
    )
    parser.add_argument("--max-inflight", type=int, default=4, help="the edge's objective (default 4)")
    parser.add_argument("--work-ms", type=float, default=50.0, help="the loaded function's work (default 50)")
    parser.add_argument("--publishes", type=int, default=10, help="updates timed (default 10)")
    parser.add_argument(
        "--poll", type=float, default=0.2, help="the edge's catalogue poll, seconds (default 0.2)"
    )
    parser.add_argument("--out", type=Path, help="where to write (default tests/perf/out/sites-<time>)")
    parser.add_argument(
        "--inventory",
        help="measure this inventory's deployed cloud and edge sites instead of gateways on loopback",
    )
    args = parser.parse_args(argv)
    for name in ("calls", "calls_per_caller", "max_inflight", "publishes"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be 1 or more")
    if args.work_ms < 0 or args.poll < 0.05:
        parser.error("--work-ms must be 0 or more and --poll 0.05 or more")
    out = args.out or out_root() / f"sites-{time.strftime('%Y%m%d-%H%M%S')}"
    settings = {"max_inflight": args.max_inflight, "work_ms": args.work_ms, "poll": args.poll}
    try:
        if args.inventory:
            publish, latency, share, where = _measure_inventory(args, settings)
        else:
            with tempfile.TemporaryDirectory(prefix="edgefaas-sites-") as root:
                print(f"starting a cloud and an edge gateway on loopback (logs in {root})", file=sys.stderr)
                sites = Sites(Path(root), {"Busy": {"max_inflight": args.max_inflight}}, args.poll)
                publish, latency, share = _measure(sites, args)
                where = sites.where
    except BenchError as exc:
        print(f"sites benchmark broke: {exc}", file=sys.stderr)
        return 2
    result = {
        "where": where,
        "settings": settings,
        "latency": latency,
        "share": share,
        "publish": publish,
        "cores": os.cpu_count(),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "sites_bench.json").write_text(json.dumps(result, indent=2) + "\n")
    text = render(result)
    (out / "sites-figures.txt").write_text(text)
    print(text, end="")
    print(f"written: {out / 'sites_bench.json'}, {out / 'sites-figures.txt'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
