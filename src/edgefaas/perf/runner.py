"""`edgefaas perf`: run the suites headless, each as its bench in this package, and build the report.

Each suite is one subprocess (`python -m edgefaas.perf.<suite>`) run in the checkout (the benches
read its functions/ and inventories/), with its output under OUT/<suite>/ and its log in
OUT/<suite>/bench.log; the report reads the JSON each bench writes. A bench that fails, or that
flags its own run as not trusted, is a suite that could not run (report.EXIT_SUITE), with the
reason from its log.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgefaas.perf import report
from edgefaas.perf.bench import repo_root
from edgefaas.perf.scale import ScaleSeries, load_scale

# joint (edge/cloud joint inference) needs a cloud site in the inventory, so it is asked for by name.
SUITES = ("gateway", "triton", "parsec", "joint")
LOCUST_SUITES = ("gateway", "triton")
DEFAULT_SCALE_JSON = Path("tests/perf/scale-figures.json")


def parse_duration(text: str) -> float:
    """'60s', '2m', '1m30s', '1h' or plain seconds -> seconds; ValueError otherwise."""
    text = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        seconds = float(text)
    else:
        parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", text)
        if not parts or "".join(n + u for n, u in parts) != text:
            raise ValueError(f"not a duration: {text!r} (e.g. 60s, 2m, 1m30s)")
        seconds = sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError(f"a duration must be positive, not {text!r}")
    return seconds


def gateway_users(users: int) -> list[int]:
    """The user counts of the gateway suite: 1, a quarter of `users`, and `users`."""
    return sorted({1, max(1, users // 4), users})


@dataclass(frozen=True)
class PerfOptions:
    inventory: str
    duration_s: float
    users: int
    out: Path
    suites: tuple[str, ...]
    workers: int = 0
    scale_json: Path | None = None
    # Upload report.html to the inventory's gateway (its console's Performance page).
    publish: bool = False
    # The CA an HTTPS gateway is verified by (None: EDGEFAAS_CA_FILE, else the K3S server's, over SSH).
    ca_file: Path | None = None


def suite_command(name: str, options: PerfOptions, out: Path) -> list[str]:
    """The bench command line of one suite, writing under `out`."""
    python = [sys.executable, "-m", f"edgefaas.perf.{name}"]
    duration = f"{options.duration_s:g}"
    workers = ["--workers", str(options.workers)] if options.workers else []
    if name == "gateway":
        users = ",".join(map(str, gateway_users(options.users)))
        return [
            *python,
            "--duration",
            duration,
            "--users",
            users,
            "--rounds",
            "2",
            "--out",
            str(out),
            *workers,
        ]
    if name == "triton":
        ca = ["--ca-file", str(options.ca_file)] if options.ca_file else []
        return [*python, "--inventory", options.inventory, "--duration", duration, "--rounds", "2",
                "--out", str(out), *workers, *ca]  # fmt: skip
    if name == "joint":
        # Its size is pictures x rounds, not a duration: about a minute on the lab's CPUs.
        return [*python, "--inventory", options.inventory, "--rounds", "3", "--out", str(out)]
    if name == "parsec":
        seconds = f"{max(1.0, min(5.0, options.duration_s / 6)):g}"
        return [*python, "--duration", seconds, "--clients", "1,4", "--json", str(out / "parsec_bench.json")]
    raise ValueError(f"unknown suite {name!r}; choose from {', '.join(SUITES)}")


FIGURES_FILE = {
    "gateway": "gateway_bench.json",
    "triton": "triton_bench.json",
    "parsec": "parsec_bench.json",
    "joint": "joint_bench.json",
}


def _stop_group(process: subprocess.Popen) -> None:
    """Interrupt the bench (its cleanup runs), then kill what is left of the group it leads."""
    for sig, wait in ((signal.SIGINT, 60), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=wait)
            return


def failure_reason(log_text: str, lines: int = 8) -> str:
    """Why a bench failed, from its log: its own 'benchmark failed' lines, a traceback's last line,
    else the log's last lines (never the command line written at its top)."""
    kept = [line for line in log_text.strip().splitlines() if not line.startswith("$ ")]
    for index, line in enumerate(kept):
        if line.startswith("benchmark failed"):
            return "\n".join(kept[index : index + lines])
    if any(line.startswith("Traceback") for line in kept):
        return kept[-1]
    return "\n".join(kept[-lines:]) or "(empty log)"


def _log_tail(path: Path) -> str:
    with contextlib.suppress(OSError):
        return failure_reason(path.read_text(errors="replace"))
    return "(no log)"


def run_suite(name: str, options: PerfOptions, repo: Path, timeout: float) -> report.Suite:
    """Run one suite's bench; its figures, or why it could not run."""
    out = options.out / name
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "bench.log"
    command = suite_command(name, options, out)
    started = time.monotonic()
    suite = report.Suite(name, out=out)
    with log_path.open("wb") as log:
        log.write(("$ " + " ".join(command) + "\n").encode())
        log.flush()
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=repo,
            start_new_session=True,
        )  # fmt: skip
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _stop_group(process)
            suite.problem = f"did not finish within {timeout:.0f} s (log: {log_path})"
        except KeyboardInterrupt:
            _stop_group(process)
            raise
    suite.seconds = time.monotonic() - started
    figures_path = out / FIGURES_FILE[name]
    if figures_path.is_file():
        with contextlib.suppress(ValueError):
            suite.figures = json.loads(figures_path.read_text())
    if suite.problem is None:
        if suite.figures is None:
            suite.problem = f"exit status {process.returncode}, no {figures_path.name}: {_log_tail(log_path)}"
        elif name in ("triton", "joint") and suite.figures.get("problems"):
            suite.problem = "NOT TRUSTED, " + "; ".join(suite.figures["problems"])
        elif process.returncode not in (0, 1):
            suite.problem = f"exit status {process.returncode}: {_log_tail(log_path)}"
    suite.html_reports = sorted(out.glob("locust-*.html"))
    if name == "parsec" and suite.figures is not None:
        (out / "parsec_bench.csv").write_text(report.parsec_csv(suite.figures))
    return suite


def suite_timeout(name: str, options: PerfOptions) -> float:
    """Generous: the bench's own measured time several times over, plus start-up."""
    runs = {"gateway": 4 * len(gateway_users(options.users)), "triton": 12, "parsec": 12, "joint": 4}[name]
    return runs * (options.duration_s + 60) + 600


def history_plots(suites: Sequence[report.Suite], users: int) -> dict[str, str | None]:
    """Percentiles over time of a few representative runs per suite."""
    plots: dict[str, str | None] = {}
    for suite in suites:
        if suite.out is None or suite.name not in LOCUST_SUITES:
            continue
        if suite.name == "gateway":
            top = max(gateway_users(users))
            picks = [
                (f"direct-u{top}-r1", f"direct, {top} users"),
                (f"gateway-u{top}-r1", f"gateway, {top} users"),
            ]
            title = "function calls: directly and through the gateway (round 1)"
        else:
            picks = [
                ("direct-u1-r1", "Triton direct, 1 user"),
                ("function-u1-r1", "via the function, 1 user"),
                ("clients-8", "Triton direct, 8 clients"),
            ]
            title = "Triton face_expression inference"
        series = []
        for tag, label in picks:
            path = suite.out / f"locust-{tag}_stats_history.csv"
            if path.is_file():
                with contextlib.suppress(ValueError):
                    series.append(report.parse_stats_history(path.read_text(), label))
        plots[title] = report.plot_history(series, title)
    return plots


def run_perf(options: PerfOptions, log: Callable[[str], None] = print) -> int:
    """Every suite, then OUT/report.html and OUT/ratios.csv; the exit code (report.exit_code)."""
    repo = repo_root()
    options.out.mkdir(parents=True, exist_ok=True)
    suites: list[report.Suite] = []
    if not (repo / "functions").is_dir():
        suites = [
            report.Suite(n, problem=f"no functions/ in {repo}: run from a checkout") for n in options.suites
        ]
    else:
        for name in options.suites:
            log(f"perf: {name} suite (log: {options.out / name / 'bench.log'}) ...")
            suite = run_suite(name, options, repo, suite_timeout(name, options))
            state = "done" if suite.ran else f"COULD NOT RUN: {suite.problem}"
            log(f"perf: {name} suite {state} ({suite.seconds:.0f} s)")
            suites.append(suite)
    ratios = report.all_ratios(suites)
    code = report.exit_code(suites, ratios)
    scale: list[ScaleSeries] = []
    scale_source = ""
    scale_path = options.scale_json or (repo / DEFAULT_SCALE_JSON)
    if scale_path.is_file():
        try:
            scale = load_scale(scale_path)
            scale_source = str(scale_path)
        except ValueError as exc:
            log(f"perf: scale figures skipped: {exc}")
    context: dict[str, Any] = {
        "inventory": options.inventory,
        "duration per measurement": f"{options.duration_s:g} s",
        "users": f"{options.users} (gateway rows: {', '.join(map(str, gateway_users(options.users)))})",
        "locust": f"master + {options.workers} local workers" if options.workers else "one process",
        "suites": ", ".join(options.suites),
        "machine": f"{os.cpu_count()} CPUs, load average {' / '.join(f'{x:.2f}' for x in os.getloadavg())}",
        "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    page = report.build_html(
        suites, ratios, code, context=context, history=history_plots(suites, options.users),
        throughput_png=report.plot_throughput(report.throughput_series(suites)),
        scale=scale, scale_png=report.plot_scale(scale), scale_source=scale_source, out=options.out,
    )  # fmt: skip
    (options.out / "report.html").write_text(page)
    (options.out / "ratios.csv").write_text(report.ratios_csv(ratios))
    for r in ratios:
        log(f"  {r.verdict:<5} {r.name}: {r.shown_value} (threshold {r.shown_threshold})")
    for suite in suites:
        if not suite.ran:
            log(f"  suite {suite.name} could not run: {suite.problem}")
    log(f"perf: report {options.out / 'report.html'}; exit code {code}")
    if options.publish:
        from edgefaas.perf.publish import publish

        publish(options.out / "report.html", options.inventory, log=log, ca_file=options.ca_file)
    return code
