"""The gateway's overhead: one function called through the gateway and directly, side by side in one run.

    .venv/bin/python -m edgefaas.perf.gateway [--duration 20] [--users 1,16] [--function FuncC]
        [--rounds 2] [--public] [--locust-cpus 0] [--server-cpus 1] [--out DIR] [--strict]
        [--workers N]

What runs: a real gateway (``edgefaas gateway --backend local``) on loopback with a fresh data
dir in a temp folder; the function (functions/<name>.py) deployed through the admin API
(basic auth, the password from <data-dir>/admin-password) and called with a license's token
(--public: deployed public and called without one). The local backend runs the function as
its own runtime process on a loopback port, read from the gateway's log; that process is
the "direct" side, the very replica the gateway forwards to.

What is measured: for each number of users (closed loop: N users keep N calls in flight),
locust (edgefaas/perf/locustfile_functions.py, FastHttpUser, headless) calls the function
directly and through the gateway for --duration seconds each, split into --rounds rounds
whose order alternates (direct, gateway, gateway, direct, ...) so drifting machine load hits
both sides alike. Every call's own response time is kept (locust's statistics round to
whole ms); the first --warmup seconds of each run are left out. Per side: p50, p99 and
calls per second. Per row: the p50 the gateway adds, and gateway/direct throughput.

Targets: the gateway adds <= 1 ms at p50 (every row), and keeps >= 70% of direct
throughput at 16 users. They are reported PASS/FAIL; the exit status is 1 for a missed
target only with --strict (always 2 when the benchmark itself broke).

How to read it on a small machine: the load generator, the gateway and the function share
its cores. Directly, two processes compete (locust, runtime); through the gateway, three
(locust, gateway, runtime), so under load the gateway's CPU cost shows as lost throughput
and queueing rather than only as its own latency. --locust-cpus / --server-cpus pin the
load generator and the servers (gateway and function, which inherits it) with taskset, the
same for both sides. Figures also go to DIR/gateway_bench.json (default: a fresh folder
under the checkout's tests/perf/out/, which git ignores), with locust's own CSV files, stats history and HTML
reports, and the gateway log. --workers N runs each locust run as a master and N local workers
(edgefaas.perf.locust_run).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from edgefaas.perf.bench import BenchError, out_root, repo_root
from edgefaas.perf.locust_run import LatencyFigures, LocustRunError, free_port, locust_env
from edgefaas.perf.locust_run import run_locust as run_locust_shared

LOCUSTFILE = Path(__file__).with_name("locustfile_functions.py")
TARGET_ADDED_P50_MS = 1.0
TARGET_THROUGHPUT_RATIO = 0.70
THROUGHPUT_TARGET_USERS = 16
SIDES = ("direct", "gateway")
USER_CLASS = {"direct": "DirectUser", "gateway": "GatewayUser"}


SideFigures = LatencyFigures


@dataclass
class Row:
    users: int
    direct: SideFigures
    gateway: SideFigures

    @property
    def added_p50_ms(self) -> float:
        return self.gateway.p50_ms - self.direct.p50_ms

    @property
    def added_p99_ms(self) -> float:
        return self.gateway.p99_ms - self.direct.p99_ms

    @property
    def throughput_ratio(self) -> float:
        return self.gateway.rps / self.direct.rps if self.direct.rps else 0.0

    @property
    def p50_ok(self) -> bool:
        return self.added_p50_ms <= TARGET_ADDED_P50_MS

    @property
    def throughput_judged(self) -> bool:
        return self.users >= THROUGHPUT_TARGET_USERS

    @property
    def throughput_ok(self) -> bool:
        return self.throughput_ratio >= TARGET_THROUGHPUT_RATIO

    @property
    def throughput_verdict(self) -> str | None:
        if not self.throughput_judged:
            return None
        return "PASS" if self.throughput_ok else "FAIL"

    def to_json(self) -> dict[str, Any]:
        return {
            "users": self.users,
            "direct": asdict(self.direct),
            "gateway": asdict(self.gateway),
            "added_p50_ms": round(self.added_p50_ms, 4),
            "added_p99_ms": round(self.added_p99_ms, 4),
            "throughput_ratio": round(self.throughput_ratio, 4),
            "p50_target": "PASS" if self.p50_ok else "FAIL",
            "throughput_target": self.throughput_verdict,
        }


def summarize(runs: list[dict[str, Any]], warmup: float) -> SideFigures:
    """Figures for one side from its runs' samples, each run's first ``warmup`` seconds left out."""
    times: list[float] = []
    calls = errors = 0
    seconds = 0.0
    for run in runs:
        kept = [s for s in run["samples"] if s["t"] >= warmup]
        if not kept:
            continue
        seconds += max(s["t"] for s in kept) - warmup
        ok = [s["ms"] for s in kept if s["ok"]]
        calls += len(ok)
        errors += len(kept) - len(ok)
        times.extend(ok)
    return SideFigures.of(times, calls, errors, seconds, digits=4, rps_digits=1)


# -- the servers ------------------------------------------------------------------------------------


def taskset(cpus: str | None) -> list[str]:
    if not cpus:
        return []
    if not shutil.which("taskset"):
        raise BenchError("taskset is not installed; leave out --locust-cpus/--server-cpus")
    return ["taskset", "-c", cpus]


class Gateway:
    """`edgefaas gateway --backend local` on loopback, in its own data dir; stopped by PID."""

    def __init__(self, data_dir: Path, log_path: Path, cpus: str | None) -> None:
        self.data_dir = data_dir
        self.log_path = log_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEFAAS_")}
        command = [
            *taskset(cpus), sys.executable, "-m", "edgefaas.cli", "gateway",
            "--backend", "local", "--host", "127.0.0.1", "--port", str(self.port),
            "--data-dir", str(data_dir), "--log-level", "info",
        ]  # fmt: skip
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            cwd=repo_root(), start_new_session=True,
        )  # fmt: skip
        self.function_pids: set[int] = set()

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                status = self.process.returncode
                raise BenchError(f"the gateway exited with status {status}: {self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/healthz", timeout=1, trust_env=False).status_code == 200:
                    return
            time.sleep(0.1)
        raise BenchError(f"the gateway did not answer /healthz within {timeout:g}s: {self.log_tail()}")

    def admin(self) -> httpx.Client:
        password = (self.data_dir / "admin-password").read_text().strip()
        return httpx.Client(base_url=self.url, auth=("admin", password), timeout=60, trust_env=False)

    def replica_url(self, function: str, timeout: float = 10.0) -> str:
        """The function's own runtime: the local backend logs 'NAME vN: pid P on URL' when it starts one."""
        pattern = re.compile(rf"\b{re.escape(function)} v\d+: pid (\d+) on (http://\S+)")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = pattern.findall(self.log_path.read_text(errors="replace"))
            if found:
                self.function_pids.update(int(pid) for pid, _ in found)
                return found[-1][1]
            time.sleep(0.1)
        raise BenchError(f"no replica of {function} in the gateway's log: {self.log_tail()}")

    def log_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"

    def stop(self) -> None:
        """SIGTERM the gateway (it stops its functions), then make sure each PID it started is gone."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for pid in self.function_pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)  # only if the gateway failed to stop it (exits with it anyway)
        self._log.close()


def deploy(gateway: Gateway, function: str, public: bool) -> str | None:
    """Deploy functions/<function>.py; a license token for it (None when public)."""
    code = (repo_root() / "functions" / f"{function}.py").read_text()
    with gateway.admin() as admin:
        answer = admin.post("/system/functions", json={"service": function, "code": code, "public": public})
        if answer.status_code != 202:
            raise BenchError(f"deploying {function}: {answer.status_code} {answer.text}")
        if public:
            return None
        answer = admin.post("/system/licenses", json={"name": "gateway-bench", "plan": "standard"})
        if answer.status_code != 201:
            raise BenchError(f"issuing a license: {answer.status_code} {answer.text}")
        return answer.json()["token"]


def check_sides_agree(gateway_url: str, direct_url: str, function: str, token: str | None) -> None:
    """One call each way before measuring: both must answer 2xx, the same function."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(timeout=30, trust_env=False) as client:
        via = client.post(f"{gateway_url}/function/{function}", json={"message": "check"}, headers=headers)
        direct = client.post(f"{direct_url}/", json={"message": "check"})
    for side, answer in (("gateway", via), ("direct", direct)):
        if not answer.is_success:
            raise BenchError(f"a {side} call of {function} failed: {answer.status_code} {answer.text[:300]}")
    if via.headers.get("content-type") != direct.headers.get("content-type"):
        raise BenchError(f"the two sides answer differently: {via.text[:200]!r} vs {direct.text[:200]!r}")


# -- locust -----------------------------------------------------------------------------------------


def run_locust(
    side: str,
    url: str,
    users: int,
    seconds: float,
    out: Path,
    tag: str,
    function: str,
    token: str | None,
    cpus: str | None,
    workers: int = 0,
) -> dict[str, Any]:
    env = locust_env()
    env["LOCUST_LICENSE_TOKEN"] = token or ""  # not on the command line, where ps would show it
    options = ["--host", url, "--function", function]
    try:
        return run_locust_shared(
            LOCUSTFILE, USER_CLASS[side], users, seconds, out, tag, options, env, workers, taskset(cpus), 60
        )
    except LocustRunError as exc:
        raise BenchError(f"locust ({side}, {users} users): {exc}") from None


def measure(args: argparse.Namespace, urls: dict[str, str], token: str | None, out: Path) -> list[Row]:
    rows = []
    seconds = args.duration / args.rounds
    for users in args.users:
        runs: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
        for round_ in range(args.rounds):
            order = SIDES if round_ % 2 == 0 else SIDES[::-1]
            for side in order:
                print(f"  {users:>3} users, round {round_ + 1}/{args.rounds}: {side} ...", flush=True)
                run = run_locust(
                    side, urls[side], users, seconds + args.warmup, out, f"{side}-u{users}-r{round_ + 1}",
                    args.function, token if side == "gateway" else None, args.locust_cpus, args.workers,
                )  # fmt: skip
                runs[side].append(run)
        row = Row(users, summarize(runs["direct"], args.warmup), summarize(runs["gateway"], args.warmup))
        for side in SIDES:
            figures: SideFigures = getattr(row, side)
            if figures.calls == 0:
                raise BenchError(f"no {side} call succeeded at {users} users (see {out}/locust-*.log)")
        rows.append(row)
    return rows


# -- report -----------------------------------------------------------------------------------------


def table(rows: list[Row]) -> str:
    header = (
        f"{'users':>5} | {'direct p50':>10} {'p99':>8} {'req/s':>8} | {'gateway p50':>11} {'p99':>8} "
        f"{'req/s':>8} | {'added p50':>9} {'added p99':>9} {'gw/direct':>9} | "
        f"{'p50<=1ms':>8} {'tput>=70%':>9}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        d, g = row.direct, row.gateway
        tput = row.throughput_verdict or "-"
        lines.append(
            f"{row.users:>5} | {d.p50_ms:>8.3f}ms {d.p99_ms:>6.2f}ms {d.rps:>8.0f} | {g.p50_ms:>9.3f}ms "
            f"{g.p99_ms:>6.2f}ms {g.rps:>8.0f} | {row.added_p50_ms:>7.3f}ms {row.added_p99_ms:>7.2f}ms "
            f"{row.throughput_ratio:>8.0%} | {'PASS' if row.p50_ok else 'FAIL':>8} {tput:>9}"
        )
    return "\n".join(lines)


def machine_note(args: argparse.Namespace) -> str:
    cpus = os.cpu_count() or 0
    try:
        load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "?"
    pinning = (
        f"locust on CPUs {args.locust_cpus or 'any'}, "
        f"gateway and function on CPUs {args.server_cpus or 'any'}"
    )
    return (
        f"{cpus} CPUs, load average {load} at the start; the load generator shares the machine with the "
        f"gateway and the function ({pinning}), so under load the gateway's CPU cost also shows as lost "
        f"throughput, not only as added latency."
    )


def parse_users(text: str) -> list[int]:
    users = [int(part) for part in text.split(",") if part.strip()]
    if not users or min(users) < 1:
        raise argparse.ArgumentTypeError("users must be positive integers, e.g. 1,16")
    return users


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds per side and row")
    parser.add_argument("--users", type=parse_users, default=[1, 16], help="concurrent users (default 1,16)")
    parser.add_argument("--function", default="FuncC", help="a file in functions/ (default FuncC)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per row (default 2)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds left out of each run (default 2)")
    parser.add_argument(
        "--public", action="store_true", help="deploy the function public; call it with no token"
    )
    parser.add_argument("--locust-cpus", help="pin locust with taskset -c, e.g. 0")
    parser.add_argument("--server-cpus", help="pin the gateway and its function with taskset -c, e.g. 1")
    parser.add_argument("--out", type=Path, help="output folder (default: a new one under tests/perf/out/)")
    parser.add_argument(
        "--workers", type=int, default=0, help="run locust as a master with this many local workers"
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.duration <= 0:
        parser.error("--rounds must be >= 1 and --duration > 0")
    if not (repo_root() / "functions" / f"{args.function}.py").is_file():
        parser.error(f"no functions/{args.function}.py")

    out = args.out or out_root() / time.strftime("gateway-%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    data_dir = Path(tempfile.mkdtemp(prefix="edgefaas-gateway-bench-"))
    note = machine_note(args)
    gateway: Gateway | None = None
    try:
        gateway = Gateway(data_dir, out / "gateway.log", args.server_cpus)
        gateway.wait_ready()
        token = deploy(gateway, args.function, args.public)
        urls = {"gateway": gateway.url, "direct": gateway.replica_url(args.function)}
        check_sides_agree(urls["gateway"], urls["direct"], args.function, token)
        pids = ", ".join(map(str, sorted(gateway.function_pids)))
        auth = "public, no token" if args.public else "called with a license token"
        print(f"gateway {urls['gateway']} (pid {gateway.process.pid}); {args.function} directly at "
              f"{urls['direct']} (pid {pids}); {auth}", flush=True)  # fmt: skip
        rows = measure(args, urls, token, out)
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 2
    finally:
        if gateway is not None:
            gateway.stop()
        shutil.rmtree(data_dir, ignore_errors=True)

    print()
    print(f"{args.function} through the gateway vs directly; {args.duration:g}s per side and row in "
          f"{args.rounds} alternating rounds, {args.warmup:g}s warm-up left out of each run")  # fmt: skip
    print(table(rows))
    print(
        f"targets: added p50 <= {TARGET_ADDED_P50_MS:g} ms (every row); gateway >= "
        f"{TARGET_THROUGHPUT_RATIO:.0%} of direct throughput at {THROUGHPUT_TARGET_USERS}+ users"
    )
    print(f"note: {note}")
    missed = [r for r in rows if not r.p50_ok or r.throughput_verdict == "FAIL"]
    figures = {
        "function": args.function,
        "auth": "public" if args.public else "license",
        "duration_s": args.duration,
        "rounds": args.rounds,
        "warmup_s": args.warmup,
        "locust_cpus": args.locust_cpus,
        "server_cpus": args.server_cpus,
        "locust_workers": args.workers,
        "cpus": os.cpu_count(),
        "note": note,
        "targets": {
            "added_p50_ms": TARGET_ADDED_P50_MS,
            "throughput_ratio": TARGET_THROUGHPUT_RATIO,
            "throughput_at_users": THROUGHPUT_TARGET_USERS,
        },
        "rows": [row.to_json() for row in rows],
        "all_targets_met": not missed,
    }
    (out / "gateway_bench.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(f"figures: {out / 'gateway_bench.json'}")
    return 1 if missed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
