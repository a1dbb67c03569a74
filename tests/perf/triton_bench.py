"""Triton figures: face_expression on 640x480 frames, direct and through EdgeFaaS, in one run.

    .venv/bin/python -m tests.perf.triton_bench [--inventory inventories/lab.py] [--duration 20]
        [--rounds 4] [--server NAME|URL] [--gateway-url URL] [--out DIR] [--strict] [--workers N]

Targets come from the inventory: every host whose data says `triton_server` is a Triton server
at http://<ssh_hostname>:<triton_http_port, default 8000>; the EdgeFaaS gateway is on the
`k3s_server` host at port <edgefaas_gateway_port, default 8080> (--gateway-url overrides).
All measurements are taken against ONE server: --server, or else the one the face-expression
function itself picks most often in a few calls sampled first (its offloader chooses per
request among all servers), so that direct and function-path figures are comparable.

What runs, side by side in one run:
  (a) perf_analyzer (from the `tritonserver` artifact: bin/perf_analyzer with LD_LIBRARY_PATH=lib)
      on add_sub (random FP32[4]) and face_expression (the 640x480 frame as real input data:
      an --input-data JSON with the pixels as UINT8 content and "shape": [480, 640, 3]) at
      concurrency 1..4, one invocation per level, count_windows mode (-s 25 --max-trials 15;
      a level that cannot stabilise is retried once at -s 50). Its CSV files are kept.
  (b) locust (tests/perf/locustfile_triton.py, headless) at 1 and 2 users: TritonUser
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

Everything goes under --out (default tests/perf/out/triton-<timestamp>, git-ignored):
triton_bench.json, perf_analyzer CSVs, locust CSVs and logs, the frame, the plot.
On the virtual lab all devices are containers on the machine that runs the load generator:
read the figures as ratios measured together, not as absolute device speeds.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgefaas.perf.stats import percentile
from edgefaas.triton import FACE_MODEL, NUMERIC_MODEL
from tests.perf.locust_run import LatencyFigures, LocustRunError, locust_env
from tests.perf.locust_run import run_locust as run_locust_shared

REPO = Path(__file__).resolve().parents[2]
LOCUSTFILE = Path(__file__).with_name("locustfile_triton.py")
OUT_ROOT = Path(__file__).with_name("out")
DEFAULT_FRAME = (640, 480)  # width, height
FUNCTION = "face-expression"
TARGET_FPS = 20.0
FPS_CONCURRENCY = (1, 2)
TARGET_P50_RATIO = 1.15
PA_CONCURRENCY = (1, 2, 3, 4)
CLIENTS = (1, 2, 4, 8)
SAME_SERVER_MIN_CALLS = 20  # fewer calls on the chosen server: judge the ratio over all calls
MAX_ERROR_SHARE = 0.01  # more failed calls than this in a run: the figures are not trusted
DEFAULT_HTTP_PORT = 8000
DEFAULT_GRPC_PORT = 8001
DEFAULT_GATEWAY_PORT = 8080

__all__ = ["FACE_MODEL", "NUMERIC_MODEL"]  # re-exported for the locustfile


class BenchError(RuntimeError):
    """The benchmark itself broke (no server, a failing call, no samples): not a missed target."""


# -- the frame ------------------------------------------------------------------------------------


def parse_frame_size(text: str) -> tuple[int, int]:
    """'640x480' -> (640, 480); ValueError for anything else."""
    parts = text.lower().replace(" ", "").split("x")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise ValueError(f"frame size must be WIDTHxHEIGHT, e.g. 640x480, not {text!r}")
    width, height = int(parts[0]), int(parts[1])
    if width < 1 or height < 1:
        raise ValueError(f"frame size must be positive, not {text!r}")
    return width, height


def letterbox(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`image` scaled to fit `size` (width, height) keeping its aspect, centred on black."""
    import cv2

    width, height = size
    h, w = image.shape[:2]
    scale = min(width / w, height / h)
    new_w, new_h = min(width, max(1, round(w * scale))), min(height, max(1, round(h * scale)))
    if (new_w, new_h) != (w, h):
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        image = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    top, left = (height - new_h) // 2, (width - new_w) // 2
    out = np.zeros((height, width, *image.shape[2:]), dtype=image.dtype)
    out[top : top + new_h, left : left + new_w] = image
    return out


def sample_photo() -> Path:
    """matplotlib's grace_hopper.jpg (600x512, one frontal face)."""
    from matplotlib import cbook

    return Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def frame_jpeg(source: Path | None, size: tuple[int, int] = DEFAULT_FRAME, quality: int = 90) -> bytes:
    """The benchmark frame as JPEG bytes: `source` (default the sample photo) letterboxed to `size`.

    A picture already of that size is sent as it is, so a camera's own JPEG stays untouched.
    """
    import cv2

    from edgefaas.vision.images import decode_image

    data = (source or sample_photo()).read_bytes()
    rgb = decode_image(data)
    if rgb.shape[1] == size[0] and rgb.shape[0] == size[1] and data.startswith(b"\xff\xd8\xff"):
        return data
    framed = letterbox(rgb, size)
    ok, encoded = cv2.imencode(
        ".jpg", cv2.cvtColor(framed, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise BenchError("OpenCV could not encode the frame as JPEG")
    return encoded.tobytes()


def input_data_json(image: np.ndarray, name: str = "IMAGE") -> dict[str, Any]:
    """perf_analyzer's --input-data document sending `image` (HxWx3 uint8) as the `name` tensor."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        raise ValueError(f"expected an HxWx3 uint8 image, got {getattr(image, 'dtype', type(image))} {shape}")
    content = np.ascontiguousarray(image).reshape(-1).tolist()
    return {"data": [{name: {"content": content, "shape": [int(d) for d in image.shape]}}]}


# -- perf_analyzer --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PerfRow:
    """One concurrency level of perf_analyzer's CSV, latencies in milliseconds."""

    concurrency: int
    throughput: float  # inferences per second
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    client_send_ms: float
    network_ms: float  # "Network+Server Send/Recv"
    server_queue_ms: float
    server_compute_ms: float  # compute input + infer + output
    client_recv_ms: float
    stability_pct: int = 25

    @property
    def avg_latency_ms(self) -> float:
        parts = (self.client_send_ms, self.network_ms, self.server_queue_ms, self.server_compute_ms)
        return sum(parts) + self.client_recv_ms


_PERF_REQUIRED = ("Concurrency", "Inferences/Second", "p50 latency")


def parse_perf_csv(text: str, stability_pct: int = 25) -> list[PerfRow]:
    """perf_analyzer's -f CSV: one PerfRow per concurrency level (microseconds become ms).

    Only the first table is read (--collect-metrics appends more after a blank line).
    ValueError when the header lacks a required column or a value is not a number.
    """
    table = text.strip().split("\n\n", 1)[0]
    reader = csv.DictReader(io.StringIO(table))
    missing = [c for c in _PERF_REQUIRED if c not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(f"not a perf_analyzer CSV: no column {', '.join(missing)} in {reader.fieldnames}")

    def us(row: dict[str, str], column: str) -> float:
        value = (row.get(column) or "").strip()
        return float(value) / 1000 if value else math.nan

    rows = []
    for row in reader:
        if not any((v or "").strip() for v in row.values()):
            continue
        try:
            compute = sum(
                us(row, c) for c in ("Server Compute Input", "Server Compute Infer", "Server Compute Output")
            )
            rows.append(
                PerfRow(
                    concurrency=int(row["Concurrency"]),
                    throughput=float(row["Inferences/Second"]),
                    p50_ms=us(row, "p50 latency"),
                    p90_ms=us(row, "p90 latency"),
                    p95_ms=us(row, "p95 latency"),
                    p99_ms=us(row, "p99 latency"),
                    client_send_ms=us(row, "Client Send"),
                    network_ms=us(row, "Network+Server Send/Recv"),
                    server_queue_ms=us(row, "Server Queue"),
                    server_compute_ms=compute,
                    client_recv_ms=us(row, "Client Recv"),
                    stability_pct=stability_pct,
                )
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"bad perf_analyzer row {row}: {exc}") from None
    return rows


def unpack_perf_analyzer(tarball: Path, dest: Path) -> Path:
    """bin/perf_analyzer and lib/ from the tritonserver artifact into `dest`; the binary's path."""
    with tarfile.open(tarball) as tar:
        members = [m for m in tar.getmembers() if m.name == "bin/perf_analyzer" or m.name.startswith("lib/")]
        if not any(m.name == "bin/perf_analyzer" for m in members):
            raise BenchError(f"{tarball} holds no bin/perf_analyzer")
        tar.extractall(dest, members=members, filter="tar")
    return dest / "bin" / "perf_analyzer"


def perf_analyzer_tarball() -> Path | None:
    from edgefaas.lab.artifacts import lookup

    artifact = lookup("tritonserver")
    if artifact is None or not Path(artifact.path).is_file():
        return None
    return Path(artifact.path)


@dataclass
class PerfAnalyzer:
    binary: Path
    log: Path
    timeout: float = 180.0

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
        env["LD_LIBRARY_PATH"] = str(self.binary.parent.parent / "lib")
        return env

    def argv(
        self,
        model: str,
        url: str,
        concurrency: int,
        report: Path,
        window: int,
        stability: int,
        trials: int,
        input_data: Path | None,
    ) -> list[str]:
        from edgefaas.triton.client import http_url

        argv = [
            str(self.binary),
            "-m",
            model,
            "-u",
            http_url(url),
            "-i",
            "http",
            "--concurrency-range",
            f"{concurrency}:{concurrency}",
            "--measurement-mode",
            "count_windows",
            "--measurement-request-count",
            str(window),
            "-s",
            str(stability),
            "--max-trials",
            str(trials),
            "-f",
            str(report),
        ]
        if input_data is not None:
            argv += ["--input-data", str(input_data)]
        return argv

    def measure(
        self,
        model: str,
        url: str,
        concurrency: int,
        report: Path,
        window: int,
        input_data: Path | None = None,
    ) -> PerfRow | None:
        """One concurrency level; None when it could not stabilise even at 50%."""
        for stability, trials in ((25, 15), (50, 8)):
            report.unlink(missing_ok=True)
            argv = self.argv(model, url, concurrency, report, window, stability, trials, input_data)
            with self.log.open("a") as log:
                log.write(f"\n$ {' '.join(argv)}\n")
                log.flush()
                process = subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT)
                try:
                    process.wait(timeout=self.timeout)
                except subprocess.TimeoutExpired:
                    os.kill(process.pid, signal.SIGKILL)
                    process.wait()
                    log.write(f"(killed after {self.timeout:g} s)\n")
                    continue
            if process.returncode == 0 and report.exists():
                rows = parse_perf_csv(report.read_text(), stability_pct=stability)
                if rows:
                    return rows[0]
        return None


def write_perf_csv(rows: Sequence[PerfRow], path: Path) -> None:
    """The levels of one model in one CSV (ms), beside perf_analyzer's own per-level files."""
    names = [*PerfRow.__dataclass_fields__, "avg_latency_ms"]
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=names)
        writer.writeheader()
        for row in rows:
            writer.writerow({**asdict(row), "avg_latency_ms": round(row.avg_latency_ms, 3)})


# -- inventory ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TritonServer:
    name: str
    http_url: str
    grpc_url: str


@dataclass(frozen=True)
class Targets:
    servers: tuple[TritonServer, ...]
    gateway_url: str | None


def targets_from_inventory(inventory: Iterable[Any]) -> Targets:
    """Triton servers (hosts with `triton_server` data) and the gateway (the `k3s_server` host).

    Addresses are `ssh_hostname` (the host's name when unset); ports come from host data
    (triton_http_port, triton_grpc_port, edgefaas_gateway_port) or the deploys' defaults.
    BenchError when no host serves Triton.
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
            configured = data.get("edgefaas_gateway_url")
            port = int(data.get("edgefaas_gateway_port") or DEFAULT_GATEWAY_PORT)
            gateway = (configured or f"http://{address}:{port}").rstrip("/")
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


# -- locust samples -------------------------------------------------------------------------------


@dataclass
class Figures(LatencyFigures):
    served_by: dict[str, int] = field(default_factory=dict)
    # function path only: p50 of the function's own Triton round trip, and of the rest of the path
    inference_p50_ms: float = math.nan
    outside_inference_p50_ms: float = math.nan


def summarize(runs: Iterable[dict[str, Any]], warmup: float, server: str | None = None) -> Figures:
    """Figures over runs' samples, each run's first `warmup` seconds left out.

    With `server`, latencies are only those of calls served by it (throughput stays over all
    calls: a closed loop's rate is not the rate of a subset).
    """
    times: list[float] = []
    inference: list[float] = []
    outside: list[float] = []
    calls = errors = 0
    seconds = 0.0
    served: Counter = Counter()
    for run in runs:
        kept = [s for s in run.get("samples", []) if s["t"] >= warmup]
        if not kept:
            continue
        seconds += max(s["t"] for s in kept) - warmup
        for sample in kept:
            if not sample["ok"]:
                errors += 1
                continue
            calls += 1
            by = (sample.get("served_by") or "").rstrip("/")
            if by:
                served[by] += 1
            if server is None or by == server.rstrip("/"):
                times.append(sample["ms"])
                if isinstance(sample.get("inference_ms"), int | float):
                    inference.append(sample["inference_ms"])
                    outside.append(sample["ms"] - sample["inference_ms"])
    return Figures.of(
        times,
        calls,
        errors,
        seconds,
        served_by=dict(served.most_common()),
        inference_p50_ms=round(percentile(sorted(inference), 50), 3),
        outside_inference_p50_ms=round(percentile(sorted(outside), 50), 3),
    )


def failure_problem(label: str, figures: Figures, limit: float = MAX_ERROR_SHARE) -> str | None:
    """A sentence when more than `limit` of the calls behind `figures` failed, else None."""
    total = figures.calls + figures.errors
    if total == 0:
        return f"{label}: no call finished"
    if figures.errors / total > limit:
        return f"{label}: {figures.errors} of {total} calls failed ({figures.errors / total:.1%})"
    return None


# -- targets --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    name: str
    value: float | None
    target: float
    at_least: bool  # True: value >= target passes; False: value <= target passes
    source: str = ""

    @property
    def ok(self) -> bool:
        if self.value is None or math.isnan(self.value):
            return False
        return self.value >= self.target if self.at_least else self.value <= self.target

    @property
    def label(self) -> str:
        return "PASS" if self.ok else "FAIL"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def ratio(numerator: float, denominator: float) -> float | None:
    """numerator / denominator; None when either is missing, NaN, or the denominator not positive."""
    if any(v is None or math.isnan(v) for v in (numerator, denominator)) or denominator <= 0:
        return None
    return numerator / denominator


def fps_verdicts(
    perf_rows: Sequence[PerfRow], direct: dict[int, Figures], target: float = TARGET_FPS
) -> list[Verdict]:
    """>= target fps at each of FPS_CONCURRENCY: perf_analyzer's figure, else locust's direct rps."""
    by_level = {row.concurrency: row for row in perf_rows}
    verdicts = []
    for level in FPS_CONCURRENCY:
        if level in by_level:
            value, source = by_level[level].throughput, "perf_analyzer"
        elif level in direct and direct[level].calls:
            value, source = direct[level].rps, "locust TritonUser"
        else:
            value, source = None, "not measured"
        verdicts.append(Verdict(f"fps at concurrency {level}", value, target, True, source))
    return verdicts


def ratio_verdict(
    users: int,
    direct: Figures,
    function: Figures,
    same_server: Figures,
    server_url: str,
    limit: float = TARGET_P50_RATIO,
) -> Verdict:
    """function/direct p50 <= limit.

    Judged over the function calls that `server_url` (the direct side's server) ran when there
    are at least SAME_SERVER_MIN_CALLS of them, else over all the function's calls: the
    function's offloader may send calls elsewhere, and only same-server calls compare alike.
    """
    on_server = function.served_by.get(server_url.rstrip("/"), 0)
    if on_server >= SAME_SERVER_MIN_CALLS:
        judged, source = same_server, f"the {on_server} function calls the direct server ran"
    else:
        judged, source = function, "all function calls"
    name = f"function/direct p50 at {users} users"
    return Verdict(name, ratio(judged.p50_ms, direct.p50_ms), limit, False, source)


# -- locust runs ----------------------------------------------------------------------------------


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
) -> dict[str, Any]:
    """One headless locust run (master and `workers` local workers if asked); its samples."""
    options = ["--frame-image", str(frame)]
    if user_class == "TritonUser":
        options += ["--triton-url", target]
    else:
        options += ["--host", target, "--function", function]
    env = locust_env(keep=("LOCUST_LICENSE_TOKEN",))
    env.pop("TRITON_URL", None)
    env.pop("GATEWAY_URL", None)
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


def sample_function(gateway: str, function: str, jpeg: bytes, calls: int) -> tuple[Counter, list[dict]]:
    """`calls` calls of the function (after two unmeasured ones): served_by counts, the answers."""
    import httpx

    served: Counter = Counter()
    answers = []
    with httpx.Client(timeout=30, trust_env=False) as client:
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
    out = args.out or OUT_ROOT / time.strftime("triton-%Y%m%d-%H%M%S")
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
        inventory = load_inventory(args.inventory, cwd=str(REPO))
    except InventoryError as exc:
        raise BenchError(str(exc)) from None
    targets = targets_from_inventory(inventory)
    gateway = (args.gateway_url or targets.gateway_url or "").rstrip("/")
    if not gateway:
        raise BenchError("no k3s_server host in the inventory and no --gateway-url: no gateway to call")
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
    served, answers = sample_function(gateway, args.function, jpeg, args.sample_calls)
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
                    user_class, users, run_seconds, out, tag, frame_path, target, args.function, args.workers
                )
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
