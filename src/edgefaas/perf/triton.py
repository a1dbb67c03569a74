"""Triton figures: face_expression on 640x480 frames, direct and through EdgeFaaS, in one run.

    .venv/bin/python -m edgefaas.perf.triton [--inventory inventories/lab.py] [--duration 20]
        [--rounds 4] [--server NAME|URL] [--gateway-url URL] [--ca-file PEM] [--out DIR] [--strict]
        [--workers N]

Targets come from the inventory: every host whose data says `triton_server` is a Triton server
at http://<ssh_hostname>:<triton_http_port, default 8000> (Triton's own endpoint: plain HTTP);
the EdgeFaaS gateway is on the `k3s_server` host at https://<ssh_hostname>:<edgefaas_gateway_port,
default 8080> (http:// where the inventory turns edgefaas_gateway_tls off; edgefaas_gateway_url or
--gateway-url override). An HTTPS gateway is verified by the blueprint's CA alone: --ca-file
(env EDGEFAAS_CA_FILE), else the K3S server's /etc/edgefaas/ca.pem read over SSH
(edgefaas.perf.site_gateway); the sampled calls and locust's FunctionUser both check it.
All measurements are taken against ONE server: --server, or else the one the face-expression
function itself picks most often in a few calls sampled first (its offloader chooses per
request among all servers), so that direct and function-path figures are comparable.

What runs, side by side in one run:
  (a) perf_analyzer (from the `tritonserver` artifact: bin/perf_analyzer with LD_LIBRARY_PATH=lib)
      on add_sub (random FP32[4]) and face_expression (the 640x480 frame as real input data:
      an --input-data JSON with the pixels as UINT8 content and "shape": [480, 640, 3]) at
      concurrency 1..4, one invocation per level, count_windows mode (-s 25 --max-trials 15;
      a level that cannot stabilise is retried once at -s 50). Its CSV files are kept.
  (b) locust (edgefaas/perf/locustfile_triton.py, headless) at 1 and 2 users: TritonUser
      (tritonclient.http, binary tensors, straight to the server) against FunctionUser (the
      same frame as JPEG, POSTed to /function/face-expression through the gateway), in
      --rounds alternating rounds so drifting machine load hits both sides alike. Every call's
      own response time is kept; the first --warmup seconds of each run are left out. The
      function's answers say which server ran each call (served_by): reported as a
      distribution, and the function's p50 is also given over the calls the chosen server ran.
  (c) clients sharing one server (Scenario 4.2): locust TritonUsers, each its own client and
      connection, at 1, 2, 4 and 8 users (1 and 2 are (b)'s direct runs); frames per second
      and p50 per level, plotted to triton_clients.png.

Targets: face_expression >= 20 fps at concurrency 1 and 2 (perf_analyzer's figure; locust's
direct figure if perf_analyzer could not measure); function-path p50 <= 1.15x direct p50 at
1 and 2 users (judged over the calls the chosen server ran when there are enough of them,
else over all). Reported PASS/FAIL; the exit status is 1 for a missed target only with
--strict, 2 when the benchmark itself broke.

A run whose server stops answering, or with more than 1% failed calls in any locust run, is
reported NOT TRUSTED and exits 2 (its figures are still written).

Everything goes under --out (default tests/perf/out/triton-<timestamp> in the checkout, git-ignored):
triton_bench.json, perf_analyzer CSVs, locust CSVs and logs, the frame, the plot.
On the virtual lab all devices are containers on the machine that runs the load generator:
read the figures as ratios measured together, not as absolute device speeds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import ssl
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgefaas.perf.bench import BenchError, out_root, repo_root
from edgefaas.perf.frames import DEFAULT_FRAME, frame_jpeg, input_data_json, parse_frame_size
from edgefaas.perf.locust_run import LocustRunError, locust_env
from edgefaas.perf.locust_run import run_locust as run_locust_shared
from edgefaas.perf.perf_analyzer import (
    PerfAnalyzer,
    PerfRow,
    perf_analyzer_tarball,
    unpack_perf_analyzer,
    write_perf_csv,
)
from edgefaas.perf.site_gateway import (
    GatewayAccessError,
    GatewayTarget,
    gateway_ca,
    gateway_url_of,
    verify_context,
    write_ca_file,
)
from edgefaas.perf.triton_figures import (
    FPS_CONCURRENCY,
    TARGET_FPS,
    TARGET_P50_RATIO,
    Figures,
    failure_problem,
    fps_verdicts,
    ratio,
    ratio_verdict,
    summarize,
)
from edgefaas.triton import FACE_MODEL, NUMERIC_MODEL

LOCUSTFILE = Path(__file__).with_name("locustfile_triton.py")
FUNCTION = "face-expression"
PA_CONCURRENCY = (1, 2, 3, 4)
CLIENTS = (1, 2, 4, 8)
DEFAULT_HTTP_PORT = 8000
DEFAULT_GRPC_PORT = 8001


# -- inventory ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TritonServer:
    name: str
    http_url: str
    grpc_url: str


@dataclass(frozen=True)
class Targets:
    servers: tuple[TritonServer, ...]
    gateway: GatewayTarget | None

    @property
    def gateway_url(self) -> str | None:
        return self.gateway.url if self.gateway else None


def targets_from_inventory(inventory: Iterable[Any]) -> Targets:
    """Triton servers (hosts with `triton_server` data) and the gateway (the `k3s_server` host).

    Addresses are `ssh_hostname` (the host's name when unset); ports come from host data
    (triton_http_port, triton_grpc_port, edgefaas_gateway_port) or the deploys' defaults, and
    the gateway's scheme from edgefaas_gateway_tls. BenchError when no host serves Triton.
    """
    servers = []
    gateway = None
    for host in inventory:
        data = host.data
        address = data.get("ssh_hostname") or host.name
        if data.get("triton_server"):
            http_port = int(data.get("triton_http_port") or DEFAULT_HTTP_PORT)
            grpc_port = int(data.get("triton_grpc_port") or DEFAULT_GRPC_PORT)
            servers.append(TritonServer(host.name, f"http://{address}:{http_port}", f"{address}:{grpc_port}"))
        if gateway is None and "k3s_server" in host.groups:
            try:
                gateway = GatewayTarget(gateway_url_of(host), host.name, data)
            except GatewayAccessError as exc:
                raise BenchError(str(exc)) from None
    if not servers:
        raise BenchError("no host in the inventory has triton_server data: no Triton server to measure")
    return Targets(tuple(servers), gateway)


def pick_server(
    servers: Sequence[TritonServer], wanted: str | None, served_by: Counter
) -> tuple[TritonServer, str]:
    """The server to measure, and why: `wanted` (a name or URL), else the one the function used most."""
    if wanted:
        for server in servers:
            if wanted in (server.name, server.http_url, server.http_url.split("://", 1)[1]):
                return server, "chosen with --server"
        raise BenchError(f"--server {wanted}: not one of {', '.join(s.name for s in servers)}")
    by_url = {s.http_url: s for s in servers}
    for url, count in served_by.most_common():
        if url.rstrip("/") in by_url:
            total = sum(served_by.values())
            return by_url[url.rstrip("/")], f"the function's choice in {count} of {total} sampled calls"
    return servers[0], "the inventory's first server (the function named none of them)"


def run_locust(
    user_class: str,
    users: int,
    seconds: int,
    out: Path,
    tag: str,
    frame: Path,
    target: str,
    function: str,
    workers: int = 0,
    ca_file: Path | None = None,
) -> dict[str, Any]:
    """One headless locust run (master and `workers` local workers if asked); its samples.

    `ca_file`: the CA FunctionUser verifies an HTTPS gateway by.
    """
    options = ["--frame-image", str(frame)]
    if user_class == "TritonUser":
        options += ["--triton-url", target]
    else:
        options += ["--host", target, "--function", function]
        if ca_file is not None:
            options += ["--ca-file", str(ca_file)]
    env = locust_env(keep=("LOCUST_LICENSE_TOKEN",))
    env.pop("TRITON_URL", None)
    env.pop("GATEWAY_URL", None)
    env.pop("EDGEFAAS_CA_FILE", None)  # the CA chosen here, on the command line, is the only one
    try:
        return run_locust_shared(LOCUSTFILE, user_class, users, seconds, out, tag, options, env, workers)
    except LocustRunError as exc:
        raise BenchError(str(exc)) from None


# -- checks before measuring ----------------------------------------------------------------------


def ready_servers(servers: Sequence[TritonServer]) -> list[TritonServer]:
    import httpx

    ready = []
    for server in servers:
        with contextlib.suppress(httpx.HTTPError):
            answer = httpx.get(f"{server.http_url}/v2/models/{FACE_MODEL}/ready", timeout=5, trust_env=False)
            if answer.status_code == 200:
                ready.append(server)
    return ready


def server_ready(server: TritonServer) -> bool:
    return bool(ready_servers([server]))


def sample_function(
    gateway: str, function: str, jpeg: bytes, calls: int, verify: ssl.SSLContext | bool = True
) -> tuple[Counter, list[dict]]:
    """`calls` calls of the function (after two unmeasured ones): served_by counts, the answers.

    `verify`: what the gateway's HTTPS is checked by (its CA's context).
    """
    import httpx

    served: Counter = Counter()
    answers = []
    with httpx.Client(timeout=30, trust_env=False, verify=verify) as client:
        for index in range(calls + 2):
            try:
                answer = client.post(
                    f"{gateway}/function/{function}", content=jpeg, headers={"Content-Type": "image/jpeg"}
                )
            except httpx.HTTPError as exc:
                raise BenchError(f"the gateway {gateway} did not answer: {exc!r}") from None
            if answer.status_code != 200:
                raise BenchError(
                    f"{function} through {gateway}: HTTP {answer.status_code} {answer.text[:300]}"
                )
            body = answer.json()
            if index >= 2:
                served[str(body.get("served_by", "")).rstrip("/")] += 1
                answers.append(body)
    return served, answers


# -- report ---------------------------------------------------------------------------------------


def _ms(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.1f}"


def report_table(result: dict[str, Any]) -> str:
    lines = []
    server = result["server"]
    lines.append(
        f"face_expression on {result['frame']['width']}x{result['frame']['height']} frames; "
        f"server {server['name']} {server['http_url']} ({server['why']})"
    )
    lines.append("")
    lines.append(f"{'figure':<42} {'value':>10} {'target':>10} {'verdict':>7}  source")
    for v in result["verdicts"]:
        value = (
            "-"
            if v["value"] is None
            else (f"{v['value']:.2f}x" if not v["at_least"] else f"{v['value']:.1f}")
        )
        target = f">= {v['target']:g}" if v["at_least"] else f"<= {v['target']:g}x"
        lines.append(
            f"{v['name']:<42} {value:>10} {target:>10} {'PASS' if v['ok'] else 'FAIL':>7}  {v['source']}"
        )
    lines.append("")
    lines.append("direct tritonclient vs the EdgeFaaS function path (locust, closed loop)")
    lines.append(
        f"{'users':>5} | {'direct p50':>10} {'p90':>7} {'fps':>6} | {'function p50':>12} {'p90':>7} "
        f"{'fps':>6} | {'same-srv p50':>12} {'infer':>7} {'rest':>7} | {'ratio':>6} {'same-srv':>8} | "
        "function served_by"
    )
    for row in result["function_vs_direct"]:
        d, f, s = row["direct"], row["function"], row["function_same_server"]
        served = ", ".join(f"{url.split('://')[-1]} {n}" for url, n in f["served_by"].items())
        r_all = "-" if row["ratio_all"] is None else f"{row['ratio_all']:.2f}"
        r_same = "-" if row["ratio_same_server"] is None else f"{row['ratio_same_server']:.2f}"
        lines.append(
            f"{row['users']:>5} | {_ms(d['p50_ms']):>8}ms {_ms(d['p90_ms']):>5}ms {d['rps']:>6.1f} | "
            f"{_ms(f['p50_ms']):>10}ms {_ms(f['p90_ms']):>5}ms {f['rps']:>6.1f} | {_ms(s['p50_ms']):>10}ms "
            f"{_ms(s['inference_p50_ms']):>5}ms {_ms(s['outside_inference_p50_ms']):>5}ms | "
            f"{r_all:>6} {r_same:>8} | {served}"
        )
    lines.append(
        "  same-srv: function calls the direct server ran; infer: the function's own Triton round trip "
        "(p50); rest: gateway, pod network, JPEG decoding (p50 of response - infer)"
    )
    lines.append("")
    lines.append("clients sharing one server (locust TritonUsers, each its own connection)")
    lines.append(
        f"{'clients':>7} | {'fps':>6} {'per client':>10} | {'p50':>8} {'p90':>8} {'p99':>8} | errors"
    )
    for row in result["clients"]:
        f = row["figures"]
        per = f["rps"] / row["clients"] if row["clients"] else 0
        lines.append(
            f"{row['clients']:>7} | {f['rps']:>6.1f} {per:>10.1f} | {_ms(f['p50_ms']):>6}ms "
            f"{_ms(f['p90_ms']):>6}ms {_ms(f['p99_ms']):>6}ms | {f['errors']}"
        )
    for model, rows in result["perf_analyzer"].get("models", {}).items():
        lines.append("")
        lines.append(f"perf_analyzer {model} (HTTP, count_windows)")
        header = f"{'conc':>4} | {'infer/s':>8} | {'p50':>8} {'p90':>8} {'p99':>8} | "
        lines.append(header + f"{'queue':>7} {'compute':>8} | stability")
        for row in rows:
            if row.get("missing"):
                lines.append(f"{row['concurrency']:>4} | no figure: unstable or failed (perf_analyzer.log)")
                continue
            lines.append(
                f"{row['concurrency']:>4} | {row['throughput']:>8.1f} | {row['p50_ms']:>6.2f}ms "
                f"{row['p90_ms']:>6.2f}ms {row['p99_ms']:>6.2f}ms | {row['server_queue_ms']:>5.2f}ms "
                f"{row['server_compute_ms']:>6.2f}ms | {row['stability_pct']}%"
            )
    if result["perf_analyzer"].get("skipped"):
        lines.append(f"perf_analyzer skipped: {result['perf_analyzer']['skipped']}")
    return "\n".join(lines)


def plot_clients(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clients = [row["clients"] for row in result["clients"]]
    fps = [row["figures"]["rps"] for row in result["clients"]]
    p50 = [row["figures"]["p50_ms"] for row in result["clients"]]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    left.plot(clients, fps, "o-", label="locust TritonUsers (one connection each)")
    face_rows = [
        r for r in result["perf_analyzer"].get("models", {}).get(FACE_MODEL, []) if not r.get("missing")
    ]
    if face_rows:
        left.plot(
            [r["concurrency"] for r in face_rows],
            [r["throughput"] for r in face_rows],
            "s--",
            label="perf_analyzer concurrency",
        )
    left.axhline(TARGET_FPS, color="grey", linestyle=":", label=f"target {TARGET_FPS:g} fps")
    left.set_xlabel("concurrent clients")
    left.set_ylabel("frames per second (all clients)")
    left.set_xticks(list(CLIENTS))
    left.set_ylim(0, max([TARGET_FPS, *fps, *(r["throughput"] for r in face_rows)]) * 1.15)
    left.legend(fontsize=8)
    right.plot(clients, p50, "o-", color="tab:red")
    right.set_xlabel("concurrent clients")
    right.set_ylabel("p50 latency per frame (ms)")
    right.set_xticks(list(CLIENTS))
    right.set_ylim(bottom=0)
    server = result["server"]
    fig.suptitle(
        f"face_expression {result['frame']['width']}x{result['frame']['height']}: clients sharing "
        f"{server['name']} ({server['http_url']})",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def machine_state() -> dict[str, Any]:
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = []
    return {"cpus": os.cpu_count(), "load_average": load, "at": time.strftime("%Y-%m-%dT%H:%M:%S")}


# -- main -----------------------------------------------------------------------------------------


def run_perf_analyzer(
    args: argparse.Namespace, server: TritonServer, out: Path, input_json: Path, work: Path
) -> tuple[dict[str, Any], list[PerfRow]]:
    """(a): both models at PA_CONCURRENCY; the figures as JSON, and face_expression's rows."""
    if args.skip_perf_analyzer:
        return {"skipped": "--skip-perf-analyzer", "models": {}}, []
    tarball = args.perf_analyzer_tarball or perf_analyzer_tarball()
    if tarball is None or not Path(tarball).is_file():
        return {"skipped": "no tritonserver artifact (edgefaas lab build triton)", "models": {}}, []
    analyzer = PerfAnalyzer(unpack_perf_analyzer(Path(tarball), work), out / "perf_analyzer.log")
    models: dict[str, list[dict[str, Any]]] = {}
    face: list[PerfRow] = []
    for model, window, data in (
        (NUMERIC_MODEL, args.add_sub_window, None),
        (FACE_MODEL, args.face_window, input_json),
    ):
        rows: list[PerfRow] = []
        models[model] = []
        for level in PA_CONCURRENCY:
            print(f"  perf_analyzer {model} concurrency {level} ...", flush=True)
            row = analyzer.measure(
                model, server.http_url, level, out / f"perf_analyzer-{model}-c{level}.csv", window, data
            )
            if row is None:
                models[model].append({"concurrency": level, "missing": True})
                continue
            rows.append(row)
            models[model].append({**asdict(row), "avg_latency_ms": round(row.avg_latency_ms, 3)})
        write_perf_csv(rows, out / f"perf_analyzer-{model}.csv")
        if model == FACE_MODEL:
            face = rows
    return {"tarball": str(tarball), "models": models}, face


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--inventory", default="inventories/lab.py")
    parser.add_argument(
        "--duration",
        type=float,
        default=20.0,
        help="measured seconds per side and user count, and per clients level (default 20)",
    )
    parser.add_argument(
        "--rounds", type=int, default=4, help="alternating direct/function rounds (default 4)"
    )
    parser.add_argument(
        "--warmup", type=float, default=2.0, help="seconds left out of each locust run (default 2)"
    )
    parser.add_argument(
        "--server",
        help="the Triton server to measure: inventory name or URL (default: the "
        "function's most frequent choice)",
    )
    parser.add_argument("--gateway-url", help="the EdgeFaaS gateway (default: from the inventory)")
    parser.add_argument(
        "--ca-file",
        type=Path,
        help="PEM of the CA an https:// gateway is verified by (default: env EDGEFAAS_CA_FILE, else "
        "the K3S server's /etc/edgefaas/ca.pem over SSH)",
    )
    parser.add_argument("--function", default=FUNCTION)
    parser.add_argument("--frame-image", type=Path, help="JPEG/PNG to letterbox (default: grace_hopper.jpg)")
    parser.add_argument("--frame-size", type=parse_frame_size, default=DEFAULT_FRAME, help="default 640x480")
    parser.add_argument(
        "--sample-calls", type=int, default=10, help="function calls sampled first (default 10)"
    )
    parser.add_argument("--face-window", type=int, default=40, help="perf_analyzer requests per window, face")
    parser.add_argument(
        "--add-sub-window", type=int, default=1000, help="perf_analyzer requests per window, add_sub"
    )
    parser.add_argument("--perf-analyzer-tarball", type=Path, help="default: the tritonserver artifact")
    parser.add_argument("--skip-perf-analyzer", action="store_true")
    parser.add_argument("--out", type=Path, help="default: tests/perf/out/triton-<timestamp>")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument(
        "--workers", type=int, default=0, help="run locust as a master with this many local workers"
    )
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.rounds < 1 or args.sample_calls < 1:
        parser.error("--duration must be > 0, --rounds and --sample-calls >= 1")

    started = time.monotonic()
    out = args.out or out_root() / time.strftime("triton-%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="edgefaas-triton-bench-"))
    try:
        result = bench(args, out, work)
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["elapsed_s"] = round(time.monotonic() - started, 1)
    (out / "triton_bench.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    plot_clients(result, out / "triton_clients.png")
    print()
    print(report_table(result))
    print()
    machine = result["machine"]
    print(
        f"machine: {machine['start']['cpus']} CPUs, load average {machine['start']['load_average']} at the "
        f"start, {machine['end']['load_average']} at the end; whole run {result['elapsed_s']:g} s"
    )
    print(f"figures: {out / 'triton_bench.json'}; plot: {out / 'triton_clients.png'}")
    if result["problems"]:
        print("NOT TRUSTED, the benchmark broke while measuring:", file=sys.stderr)
        for problem in result["problems"]:
            print(f"  {problem}", file=sys.stderr)
        return 2
    missed = [v for v in result["verdicts"] if not v["ok"]]
    return 1 if missed and args.strict else 0


def bench(args: argparse.Namespace, out: Path, work: Path) -> dict[str, Any]:
    from edgefaas.deploy.inventory import InventoryError, load_inventory
    from edgefaas.vision.images import decode_image

    start_state = machine_state()
    try:
        inventory = load_inventory(args.inventory, cwd=str(repo_root()))
    except InventoryError as exc:
        raise BenchError(str(exc)) from None
    targets = targets_from_inventory(inventory)
    site = targets.gateway
    if args.gateway_url:
        # Another address of the same site: its CA is still the one the K3S server publishes.
        url = args.gateway_url.rstrip("/")
        site = GatewayTarget(url, site.host, site.data) if site else GatewayTarget(url, None, {})
    if site is None:
        raise BenchError("no k3s_server host in the inventory and no --gateway-url: no gateway to call")
    gateway = site.url
    try:
        ca_pem = gateway_ca(site, args.ca_file)
    except GatewayAccessError as exc:
        raise BenchError(f"the gateway {gateway}: {exc}") from None
    verify = verify_context(ca_pem) if ca_pem is not None else True
    ca_file = write_ca_file(ca_pem, work) if ca_pem is not None else None
    servers = ready_servers(targets.servers)
    if not servers:
        raise BenchError(
            f"no Triton server has {FACE_MODEL} ready: {', '.join(s.http_url for s in targets.servers)}"
        )

    jpeg = frame_jpeg(args.frame_image, args.frame_size)
    frame_path = out / "frame-{}x{}.jpg".format(*args.frame_size)
    frame_path.write_bytes(jpeg)
    pixels = decode_image(jpeg)
    input_json = work / "face_expression-input.json"
    input_json.write_text(json.dumps(input_data_json(pixels)))

    print(f"sampling {args.sample_calls} calls of {args.function} through {gateway} ...", flush=True)
    served, answers = sample_function(gateway, args.function, jpeg, args.sample_calls, verify)
    server, why = pick_server(servers, args.server, served)
    from edgefaas.triton.client import FaceExpressionClient, InferenceError

    try:
        direct_faces, _ = FaceExpressionClient(server.http_url).recognize(pixels)
    except InferenceError as exc:
        raise BenchError(str(exc)) from None
    function_faces = answers[-1]["faces"]
    if len(direct_faces) != len(function_faces):
        raise BenchError(
            f"direct found {len(direct_faces)} faces, the function {len(function_faces)}: not the same work"
        )
    print(
        f"measuring {server.name} {server.http_url} ({why}); {len(direct_faces)} face(s) in the frame",
        flush=True,
    )

    problems: list[str] = []

    def still_ready(after: str, wait: float = 60.0) -> None:
        """A server that went away during a phase spoils it; one that stays away ends the run."""
        if server_ready(server):
            return
        problems.append(f"{server.name}'s {FACE_MODEL} was not ready after {after}")
        print(f"  WARNING: {problems[-1]}; waiting up to {wait:g} s for it", flush=True)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            time.sleep(2)
            if server_ready(server):
                return
        raise BenchError(f"{problems[-1]}, nor {wait:g} s later: is someone redeploying it?")

    pa, face_rows = run_perf_analyzer(args, server, out, input_json, work)
    still_ready("perf_analyzer")

    seconds = args.duration / args.rounds
    run_seconds = max(1, round(seconds + args.warmup))
    direct: dict[int, Figures] = {}
    comparison = []
    ratio_verdicts = []
    for users in FPS_CONCURRENCY:
        runs: dict[str, list[dict[str, Any]]] = {"TritonUser": [], "FunctionUser": []}
        for round_ in range(args.rounds):
            order = ("TritonUser", "FunctionUser") if round_ % 2 == 0 else ("FunctionUser", "TritonUser")
            for user_class in order:
                print(
                    f"  locust {user_class} {users} user(s), round {round_ + 1}/{args.rounds} ...", flush=True
                )
                target = server.http_url if user_class == "TritonUser" else gateway
                tag = f"{'direct' if user_class == 'TritonUser' else 'function'}-u{users}-r{round_ + 1}"
                run = run_locust(
                    user_class, users, run_seconds, out, tag, frame_path, target, args.function, args.workers,
                    ca_file,
                )  # fmt: skip
                runs[user_class].append(run)
        still_ready(f"the runs at {users} users")
        d = summarize(runs["TritonUser"], args.warmup)
        f = summarize(runs["FunctionUser"], args.warmup)
        same = summarize(runs["FunctionUser"], args.warmup, server=server.http_url)
        for side, figures in (("direct", d), ("function", f)):
            if figures.calls == 0:
                raise BenchError(f"no {side} call succeeded at {users} users (see {out}/locust-*.log)")
            problem = failure_problem(f"{side} at {users} users", figures)
            if problem:
                problems.append(problem)
        direct[users] = d
        ratio_verdicts.append(ratio_verdict(users, d, f, same, server.http_url))
        comparison.append(
            {
                "users": users,
                "direct": asdict(d),
                "function": asdict(f),
                "function_same_server": asdict(same),
                "ratio_all": ratio(f.p50_ms, d.p50_ms),
                "ratio_same_server": ratio(same.p50_ms, d.p50_ms),
            }
        )

    clients = []
    for count in CLIENTS:
        if count in direct:
            figures = direct[count]
        else:
            print(f"  locust TritonUser {count} clients ...", flush=True)
            run = run_locust(
                "TritonUser",
                count,
                max(1, round(args.duration + args.warmup)),
                out,
                f"clients-{count}",
                frame_path,
                server.http_url,
                args.function,
                args.workers,
            )
            figures = summarize([run], args.warmup)
            if figures.calls == 0:
                raise BenchError(
                    f"no call succeeded with {count} clients (see {out}/locust-clients-{count}.log)"
                )
        clients.append({"clients": count, "figures": asdict(figures)})

    still_ready("the locust runs")
    verdicts = [*fps_verdicts(face_rows, direct), *ratio_verdicts]
    return {
        "frame": {
            "width": args.frame_size[0],
            "height": args.frame_size[1],
            "jpeg_bytes": len(jpeg),
            "tensor_bytes": int(pixels.nbytes),
            "faces": len(direct_faces),
        },
        "server": {**asdict(server), "why": why},
        "servers_ready": [asdict(s) for s in servers],
        "gateway": gateway,
        "function": args.function,
        "sampled_served_by": dict(served.most_common()),
        "duration_s": args.duration,
        "rounds": args.rounds,
        "warmup_s": args.warmup,
        "locust_workers": args.workers,
        "perf_analyzer": pa,
        "function_vs_direct": comparison,
        "clients": clients,
        "verdicts": [v.to_json() for v in verdicts],
        "targets": {"fps": TARGET_FPS, "fps_at": list(FPS_CONCURRENCY), "p50_ratio": TARGET_P50_RATIO},
        "machine": {"start": start_state, "end": machine_state()},
        "problems": problems,
    }


if __name__ == "__main__":
    sys.exit(main())
