"""Triton's perf_analyzer: taken from the tritonserver artifact, run per concurrency level, read back."""

from __future__ import annotations

import csv
import io
import math
import os
import signal
import subprocess
import tarfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from edgefaas.perf.bench import BenchError


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
