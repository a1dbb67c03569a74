"""The combined performance report: ratios against thresholds, the exit code, plots, one HTML file.

Pure functions over the suites' own result files (gateway_bench.json, triton_bench.json,
parsec_bench.json, locust's *_stats_history.csv), so they can be tested without a lab.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgefaas.perf.scale import ScaleSeries

# The thresholds every ratio is held to.
GATEWAY_ADDED_P50_MS = 1.0
GATEWAY_THROUGHPUT_RATIO = 0.70
GATEWAY_THROUGHPUT_USERS = 16
FUNCTION_TRITON_P50_RATIO = 1.15
PARSEC_P50_RATIO = 1.2
TRITON_FPS = 20.0

# click exits 2 on a usage error (a bad option), so a suite that could not run has a code of its own.
EXIT_OK, EXIT_THRESHOLD, EXIT_SUITE = 0, 1, 3

GATEWAY_NOTE = (
    "The gateway suite runs a gateway of its own on this machine (edgefaas gateway --backend local) "
    "and calls one function through it and directly. It cannot use the lab's gateway: the direct side "
    "is the function's pod, and pods are not reachable from the machine that runs the load generator "
    "(only the gateway's port is). Locally, the direct side is the very replica the gateway forwards to."
)


@dataclass(frozen=True)
class Ratio:
    """One side-by-side figure and the threshold it is held to."""

    suite: str
    name: str
    value: float | None
    threshold: float
    at_most: bool  # True: value <= threshold passes; False: value >= threshold passes
    unit: str = "x"
    source: str = ""

    @property
    def ok(self) -> bool:
        if self.value is None or math.isnan(self.value):
            return False
        return self.value <= self.threshold if self.at_most else self.value >= self.threshold

    @property
    def verdict(self) -> str:
        if self.value is None or math.isnan(self.value):
            return "FAIL (not measured)"
        return "PASS" if self.ok else "FAIL"

    def _fmt(self, value: float) -> str:
        if self.unit == "%":
            return f"{value:.0%}"
        if self.unit == "x":
            return f"{value:.2f}x"
        return f"{value:.2f} {self.unit}"

    @property
    def shown_value(self) -> str:
        return "-" if self.value is None or math.isnan(self.value) else self._fmt(self.value)

    @property
    def shown_threshold(self) -> str:
        return f"{'<=' if self.at_most else '>='} {self._fmt(self.threshold)}"


@dataclass
class Suite:
    """What one suite left: its figures (the bench's JSON), or why it could not run."""

    name: str
    figures: dict[str, Any] | None = None
    problem: str | None = None
    out: Path | None = None
    seconds: float = 0.0
    html_reports: list[Path] = field(default_factory=list)

    @property
    def ran(self) -> bool:
        return self.problem is None and self.figures is not None


# -- ratios ---------------------------------------------------------------------------------------


def gateway_ratios(figures: dict[str, Any]) -> list[Ratio]:
    """From gateway_bench.json: added p50 at every user count; throughput ratio at 16+ users."""
    ratios = []
    for row in figures.get("rows", []):
        users = row["users"]
        direct, gateway = row["direct"], row["gateway"]
        source = f"gateway p50 {gateway['p50_ms']:.3f} ms vs direct {direct['p50_ms']:.3f} ms"
        ratios.append(
            Ratio("gateway", f"gateway vs direct: p50 added at {users} users", row["added_p50_ms"],
                  GATEWAY_ADDED_P50_MS, True, "ms", source)
        )  # fmt: skip
        if users >= GATEWAY_THROUGHPUT_USERS:
            source = f"gateway {gateway['rps']:.0f} req/s vs direct {direct['rps']:.0f} req/s"
            ratios.append(
                Ratio("gateway", f"gateway/direct throughput at {users} users", row["throughput_ratio"],
                      GATEWAY_THROUGHPUT_RATIO, False, "%", source)
            )  # fmt: skip
    if not any(r.name.startswith("gateway/direct throughput") for r in ratios):
        ratios.append(
            Ratio("gateway", f"gateway/direct throughput at {GATEWAY_THROUGHPUT_USERS} users", None,
                  GATEWAY_THROUGHPUT_RATIO, False, "%", f"no row with {GATEWAY_THROUGHPUT_USERS}+ users")
        )  # fmt: skip
    return ratios


def triton_ratios(figures: dict[str, Any]) -> list[Ratio]:
    """From triton_bench.json's verdicts: function/direct p50 (<= 1.15x) and fps (>= 20)."""
    ratios = []
    for verdict in figures.get("verdicts", []):
        if verdict["name"].startswith("fps"):
            ratios.append(
                Ratio("triton", f"Triton face_expression {verdict['name']}", verdict["value"], TRITON_FPS,
                      False, "fps", verdict.get("source", ""))
            )  # fmt: skip
        else:
            ratios.append(
                Ratio("triton", verdict["name"].replace("function/direct", "function/direct Triton"),
                      verdict["value"], FUNCTION_TRITON_P50_RATIO, True, "x", verdict.get("source", ""))
            )  # fmt: skip
    return ratios


def parsec_ratios(figures: dict[str, Any]) -> list[Ratio]:
    """From parsec_bench.json: per operation, the worst Python/Rust p50 over the client counts."""
    threshold = float(figures.get("target_ratio", PARSEC_P50_RATIO))
    by_op: dict[str, list[dict[str, Any]]] = {}
    for cell in figures.get("cells", []):
        by_op.setdefault(cell["op"], []).append(cell)
    ratios = []
    for op, cells in by_op.items():
        measured = [c for c in cells if c.get("ratio_p50") is not None]
        worst = max(measured, key=lambda c: c["ratio_p50"], default=None)
        clients = ",".join(str(c["clients"]) for c in cells)
        source = (
            f"worst of {clients} clients: {worst['clients']} (Python {worst['python']['p50_ms']:.2f} ms, "
            f"Rust {worst['rust']['p50_ms']:.2f} ms)"
            if worst
            else "no cell measured"
        )
        value = worst["ratio_p50"] if worst else None
        ratios.append(
            Ratio("parsec", f"Python/Rust Parsec client p50, {op}", value, threshold, True, "x", source)
        )
    return ratios


RATIOS_OF = {"gateway": gateway_ratios, "triton": triton_ratios, "parsec": parsec_ratios}


def all_ratios(suites: Iterable[Suite]) -> list[Ratio]:
    ratios: list[Ratio] = []
    for suite in suites:
        if suite.figures is not None and suite.name in RATIOS_OF:
            ratios.extend(RATIOS_OF[suite.name](suite.figures))
    return ratios


def exit_code(suites: Sequence[Suite], ratios: Sequence[Ratio]) -> int:
    """3 when a suite could not run; else 1 when a threshold is broken; else 0."""
    if any(not suite.ran for suite in suites):
        return EXIT_SUITE
    if any(not ratio.ok for ratio in ratios):
        return EXIT_THRESHOLD
    return EXIT_OK


# -- locust's stats history -------------------------------------------------------------------------


@dataclass
class HistorySeries:
    """One locust run's percentiles over time (seconds since its first row), one name."""

    label: str
    t: list[float] = field(default_factory=list)
    users: list[int] = field(default_factory=list)
    rps: list[float] = field(default_factory=list)
    p50: list[float] = field(default_factory=list)
    p95: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)


def _number(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "", "N/A") else math.nan
    except ValueError:
        return math.nan


def parse_stats_history(text: str, label: str = "", name: str = "Aggregated") -> HistorySeries:
    """locust's --csv-full-history `*_stats_history.csv`: the rows of `name` as plot series.

    Rows before the first request (percentiles 'N/A') are kept as NaN so the time axis stays
    true; ValueError when the CSV lacks locust's columns.
    """
    reader = csv.DictReader(io.StringIO(text))
    needed = {"Timestamp", "User Count", "Name", "Requests/s", "50%", "95%", "99%"}
    missing = needed - set(reader.fieldnames or [])
    if missing:
        raise ValueError(f"not a locust stats history: no column {', '.join(sorted(missing))}")
    series = HistorySeries(label or name)
    start: float | None = None
    for row in reader:
        if row["Name"] != name:
            continue
        stamp = float(row["Timestamp"])
        start = stamp if start is None else start
        series.t.append(stamp - start)
        series.users.append(int(float(row["User Count"] or 0)))
        rps = _number(row["Requests/s"])
        series.rps.append(rps)
        # With no request in its window (the first second or so) locust writes 0 or N/A for the
        # percentiles, even when earlier requests exist: no figure, not 0 ms.
        idle = not rps > 0
        for values, column in ((series.p50, "50%"), (series.p95, "95%"), (series.p99, "99%")):
            values.append(math.nan if idle else _number(row[column]))
    return series


# -- plots ------------------------------------------------------------------------------------------


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_history(series: Sequence[HistorySeries], title: str) -> str | None:
    """p50/p95/p99 over time, one panel per series; a base64 PNG (None without series)."""
    series = [s for s in series if s.t]
    if not series:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(series), figsize=(5.2 * len(series), 3.4), squeeze=False)
    for ax, s in zip(axes[0], series, strict=True):
        for values, label in ((s.p50, "p50"), (s.p95, "p95"), (s.p99, "p99")):
            ax.plot(s.t, values, label=label)
        ax.set_title(s.label, fontsize=9)
        ax.set_xlabel("seconds into the run")
        ax.set_ylabel("response time (ms, locust's rounding)")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return _png(fig)


def throughput_series(suites: Iterable[Suite]) -> dict[str, tuple[list[int], list[float]]]:
    """Throughput against users, per side: {label: (users, requests per second)}."""
    lines: dict[str, tuple[list[int], list[float]]] = {}
    for suite in suites:
        if suite.figures is None:
            continue
        if suite.name == "gateway":
            rows = suite.figures.get("rows", [])
            for side in ("direct", "gateway"):
                lines[f"function {side} (req/s)"] = (
                    [r["users"] for r in rows],
                    [r[side]["rps"] for r in rows],
                )
        elif suite.name == "triton":
            clients = suite.figures.get("clients", [])
            lines["Triton direct, face_expression (fps)"] = (
                [c["clients"] for c in clients],
                [c["figures"]["rps"] for c in clients],
            )
            compared = suite.figures.get("function_vs_direct", [])
            lines["Triton via the function (fps)"] = (
                [c["users"] for c in compared],
                [c["function"]["rps"] for c in compared],
            )
    return {label: line for label, line in lines.items() if line[0]}


def plot_throughput(lines: dict[str, tuple[list[int], list[float]]]) -> str | None:
    if not lines:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    for label, (users, rate) in lines.items():
        ax.plot(users, rate, "o-", label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("concurrent users (closed loop)")
    ax.set_ylabel("requests per second")
    ax.legend(fontsize=7)
    ax.set_title("throughput against users", fontsize=10)
    return _png(fig)


def plot_scale(series: Sequence[ScaleSeries]) -> str | None:
    series = [s for s in series if s.points]
    if not series:
        return None
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for s in series:
        devices = [p.devices for p in s.points]
        left.plot(devices, [p.deploy_s for p in s.points], "o-", label=s.name)
        right.plot(devices, [p.rerun_s for p in s.points], "o-", label=s.name)
    sizes = sorted({p.devices for s in series for p in s.points})
    for ax, what in ((left, "deploy (clean)"), (right, "no-change re-run")):
        ax.set_xticks(sizes)
        ax.set_xlabel("devices (K3S: nodes)")
        ax.set_ylabel("seconds")
        ax.set_title(what, fontsize=10)
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=7, loc="upper left")
    return _png(fig)


# -- HTML -----------------------------------------------------------------------------------------

_STYLE = """
body{font-family:sans-serif;max-width:1150px;margin:1em auto;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #bbb;padding:3px 7px;font-size:13px}
th{background:#eee}.PASS{color:#060;font-weight:bold}.FAIL{color:#b00;font-weight:bold}
.note{color:#555;font-size:13px}img{max-width:100%}
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _img(png: str | None, alt: str) -> str:
    if png is None:
        return f"<p class='note'>(no data for: {_e(alt)})</p>"
    return f"<img alt='{_e(alt)}' src='data:image/png;base64,{png}'>"


def ratio_table(ratios: Sequence[Ratio]) -> str:
    rows = [
        "<table><tr><th>suite</th><th>ratio</th><th>measured</th><th>threshold</th><th>verdict</th>"
        "<th>from</th></tr>"
    ]
    for r in ratios:
        css = "PASS" if r.ok else "FAIL"
        rows.append(
            f"<tr><td>{_e(r.suite)}</td><td>{_e(r.name)}</td><td>{_e(r.shown_value)}</td>"
            f"<td>{_e(r.shown_threshold)}</td><td class='{css}'>{_e(r.verdict)}</td>"
            f"<td>{_e(r.source)}</td></tr>"
        )
    rows.append("</table>")
    return "\n".join(rows)


def perf_analyzer_table(triton: dict[str, Any]) -> str:
    pa = triton.get("perf_analyzer", {})
    if pa.get("skipped"):
        return f"<p class='note'>perf_analyzer skipped: {_e(pa['skipped'])}</p>"
    parts = []
    for model, rows in pa.get("models", {}).items():
        parts.append(f"<h4>{_e(model)} (HTTP, count_windows)</h4><table><tr><th>concurrency</th>"
                     "<th>infer/s</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>queue ms</th>"
                     "<th>compute ms</th></tr>")  # fmt: skip
        for row in rows:
            if row.get("missing"):
                parts.append(f"<tr><td>{row['concurrency']}</td><td colspan=6>unstable or failed</td></tr>")
                continue
            cells = (row["throughput"], row["p50_ms"], row["p90_ms"], row["p99_ms"])
            cells += (row["server_queue_ms"], row["server_compute_ms"])
            parts.append(
                f"<tr><td>{row['concurrency']}</td>" + "".join(f"<td>{v:.2f}</td>" for v in cells) + "</tr>"
            )
        parts.append("</table>")
    return "\n".join(parts)


def joint_table(joint: dict[str, Any]) -> str:
    """Edge only, cloud only and joint side by side (edgefaas.perf.joint's joint_bench.json)."""

    def cell(value: Any, percent: bool = False) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "-"
        return f"{value:.0%}" if percent else f"{value:.1f}"

    source = joint.get("set", {})
    parts = [
        f"<p class='note'>Edge {_e(joint.get('edge_url'))}, cloud {_e(joint.get('cloud_url'))}, "
        f"threshold {_e(joint.get('threshold'))}; {_e(source.get('pictures'))} pictures x "
        f"{_e(joint.get('rounds'))} rounds from {_e(source.get('source'))}.</p>",
        "<table><tr><th>way</th><th>accuracy</th><th>agreement with cloud</th><th>faces at the edge</th>"
        "<th>pictures to the cloud</th><th>p50 ms</th><th>p95 ms</th><th>KB to the cloud</th>"
        "<th>faces</th><th>errors</th></tr>",
    ]
    for mode, f in joint.get("modes", {}).items():
        parts.append(
            f"<tr><td>{_e(mode)}</td><td>{cell(f.get('accuracy'), True)}</td>"
            f"<td>{cell(f.get('agreement_with_cloud'), True)}</td><td>{cell(f.get('edge_share'), True)}</td>"
            f"<td>{cell(f.get('pictures_to_cloud'), True)}</td><td>{cell(f.get('p50_ms'))}</td>"
            f"<td>{cell(f.get('p95_ms'))}</td><td>{cell(f.get('mean_cloud_kb'))}</td>"
            f"<td>{_e(f.get('faces'))}</td><td>{_e(f.get('errors'))}</td></tr>"
        )
    parts.append("</table>")
    if not source.get("labelled"):
        parts.append(
            "<p class='note'>No labelled set: accuracy is not measured (docs/triton.md, Joint inference).</p>"
        )
    return "\n".join(parts)


def scale_table(series: Sequence[ScaleSeries]) -> str:
    rows = [
        "<table><tr><th>series</th><th>devices</th><th>deploy s</th><th>re-run s</th><th>recorded</th></tr>"
    ]
    for s in series:
        for p in s.points:
            rows.append(
                f"<tr><td>{_e(s.name)}</td><td>{p.devices} {_e(s.unit)}</td><td>{p.deploy_s:.1f}</td>"
                f"<td>{p.rerun_s:.1f}</td><td>{_e(p.recorded)}</td></tr>"
            )
    rows.append("</table>")
    return "\n".join(rows)


def build_html(
    suites: Sequence[Suite],
    ratios: Sequence[Ratio],
    code: int,
    *,
    title: str = "EdgeFaaS performance report",
    context: dict[str, Any] | None = None,
    history: dict[str, str | None] | None = None,
    throughput_png: str | None = None,
    scale: Sequence[ScaleSeries] = (),
    scale_png: str | None = None,
    scale_source: str = "",
    out: Path | None = None,
) -> str:
    """The whole report as one self-contained HTML page (plots inline, no external files)."""
    verdict = {EXIT_OK: "every threshold holds", EXIT_THRESHOLD: "a threshold is broken",
               EXIT_SUITE: "a suite could not run"}[code]  # fmt: skip
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f"<p>Exit code <b>{code}</b>: {_e(verdict)}.</p>",
    ]
    if context:
        parts.append(
            "<table>" + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in context.items())
        )
        parts.append("</table>")
    parts.append("<h2>Suites</h2><table><tr><th>suite</th><th>state</th><th>seconds</th><th>output</th></tr>")
    for suite in suites:
        state = "ran" if suite.ran else f"could not run: {suite.problem}"
        where = (
            suite.out.relative_to(out) if out and suite.out and suite.out.is_relative_to(out) else suite.out
        )
        parts.append(
            f"<tr><td>{_e(suite.name)}</td><td class='{'PASS' if suite.ran else 'FAIL'}'>{_e(state)}</td>"
            f"<td>{suite.seconds:.0f}</td><td>{_e(where or '-')}</td></tr>"
        )
    parts.append("</table>")
    parts.append("<h2>Ratios and thresholds</h2>")
    parts.append(ratio_table(ratios))
    if any(s.name == "gateway" for s in suites):
        parts.append(f"<p class='note'>{_e(GATEWAY_NOTE)}</p>")
    if any(s.name == "parsec" for s in suites):
        parts.append(
            "<p class='note'>The Parsec suite starts a private Parsec service on this machine and runs the "
            "Python client and the Rust parsec-client baseline one after the other against it.</p>"
        )
    parts.append("<h2>Percentiles over time</h2>")
    parts.append(
        "<p class='note'>From locust's --csv-full-history stats history (one row a second, whole "
        "milliseconds below 100 ms). The ratios above come from every call's own, unrounded time.</p>"
    )
    for label, png in (history or {}).items():
        parts.append(f"<h3>{_e(label)}</h3>{_img(png, label)}")
    parts.append("<h2>Throughput against users</h2>")
    parts.append(_img(throughput_png, "throughput against users"))
    triton = next((s.figures for s in suites if s.name == "triton" and s.figures), None)
    if triton is not None:
        parts.append("<h2>perf_analyzer (Triton)</h2>")
        parts.append(perf_analyzer_table(triton))
    joint = next((s.figures for s in suites if s.name == "joint" and s.figures), None)
    if joint is not None:
        parts.append("<h2>Joint inference (edge and cloud)</h2>")
        parts.append(joint_table(joint))
    parts.append("<h2>Scale: deploy and no-change re-run against devices</h2>")
    if scale:
        parts.append(f"<p class='note'>From {_e(scale_source)}.</p>")
        parts.append(_img(scale_png, "scale"))
        parts.append(scale_table(scale))
    else:
        parts.append("<p class='note'>No scale figures (--scale-json).</p>")
    reports = [(s.name, p) for s in suites for p in s.html_reports]
    if reports:
        parts.append("<h2>locust's own reports</h2><ul>")
        for name, path in reports:
            shown = path.relative_to(out) if out and path.is_relative_to(out) else path
            parts.append(f"<li>{_e(name)}: <a href='{_e(shown)}'>{_e(shown)}</a></li>")
        parts.append("</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)


def ratios_csv(ratios: Sequence[Ratio]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["suite", "ratio", "value", "unit", "threshold", "at_most", "verdict", "source"])
    for r in ratios:
        writer.writerow([r.suite, r.name, r.value, r.unit, r.threshold, r.at_most, r.verdict, r.source])
    return buffer.getvalue()


def parsec_csv(figures: dict[str, Any]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["op", "clients", "side", "n", "errors", "p50_ms", "p99_ms", "ops_s", "ratio_p50"])
    for cell in figures.get("cells", []):
        for side in ("python", "rust"):
            s = cell[side]
            writer.writerow([cell["op"], cell["clients"], side, s["n"], s["errors"], s["p50_ms"], s["p99_ms"],
                             s["ops_s"], cell.get("ratio_p50")])  # fmt: skip
    return buffer.getvalue()
