"""edgefaas.perf.perf_analyzer: its CSV read back, its command line."""

from __future__ import annotations

import math

import pytest

from edgefaas.perf import perf_analyzer

pytestmark = pytest.mark.unit

# What perf_analyzer 2.51 wrote on these machines (-f), trimmed to two levels.
PA_CSV = (
    "Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,Server Compute Input,"
    "Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,p95 latency,p99 latency\n"
    "1,25.3128,578,1925,501,305,35299,327,1,35196,52382,58843,72258\n"
    "2,26.9552,600,3136,32955,472,36289,340,1,70982,91182,101164,105791\n"
)


# -- perf_analyzer's CSV -------------------------------------------------------------------------


def test_perf_csv_rows_in_milliseconds():
    rows = perf_analyzer.parse_perf_csv(PA_CSV)
    assert [r.concurrency for r in rows] == [1, 2]
    first = rows[0]
    assert first.throughput == pytest.approx(25.3128)
    assert first.p50_ms == pytest.approx(35.196)
    assert first.p99_ms == pytest.approx(72.258)
    assert first.server_queue_ms == pytest.approx(0.501)
    assert first.server_compute_ms == pytest.approx((305 + 35299 + 327) / 1000)
    # the components add up to the average latency perf_analyzer reports (38.9 ms for this level)
    assert first.avg_latency_ms == pytest.approx((578 + 1925 + 501 + 305 + 35299 + 327 + 1) / 1000)
    assert rows[1].server_queue_ms == pytest.approx(32.955)
    assert first.stability_pct == 25


def test_perf_csv_reads_only_the_first_table_and_keeps_the_stability():
    metrics = "\n\nServer Metrics\nGPU UUID,Avg GPU Utilization\nx,0\n"
    rows = perf_analyzer.parse_perf_csv(PA_CSV + metrics, stability_pct=50)
    assert len(rows) == 2
    assert {r.stability_pct for r in rows} == {50}


def test_perf_csv_missing_optional_columns_are_nan():
    rows = perf_analyzer.parse_perf_csv("Concurrency,Inferences/Second,p50 latency\n3,100.5,2500\n")
    assert rows[0].p50_ms == pytest.approx(2.5)
    assert math.isnan(rows[0].p99_ms)
    assert math.isnan(rows[0].server_queue_ms)


@pytest.mark.parametrize(
    "text",
    ["", "Concurrency,p50 latency\n1,200\n", "a,b,c\n1,2,3\n"],
    ids=["empty", "no-throughput", "not-perf-analyzer"],
)
def test_perf_csv_without_the_required_columns_is_refused(text):
    with pytest.raises(ValueError, match="not a perf_analyzer CSV"):
        perf_analyzer.parse_perf_csv(text)


def test_perf_csv_with_a_non_number_is_refused():
    with pytest.raises(ValueError, match="bad perf_analyzer row"):
        perf_analyzer.parse_perf_csv("Concurrency,Inferences/Second,p50 latency\n1,fast,200\n")


def test_merged_perf_csv_round_trips(tmp_path):
    rows = perf_analyzer.parse_perf_csv(PA_CSV)
    path = tmp_path / "merged.csv"
    perf_analyzer.write_perf_csv(rows, path)
    text = path.read_text().splitlines()
    assert text[0].startswith("concurrency,throughput,p50_ms")
    assert text[1].startswith("1,25.3128,35.196")
    assert len(text) == 3


def test_perf_analyzer_command_line(tmp_path):
    analyzer = perf_analyzer.PerfAnalyzer(tmp_path / "pa" / "bin" / "perf_analyzer", tmp_path / "log")
    argv = analyzer.argv(
        "face_expression", "http://10.77.0.12:8000", 2, tmp_path / "c.csv", 40, 25, 15, tmp_path / "in.json"
    )
    joined = " ".join(argv)
    assert "-u 10.77.0.12:8000" in joined
    assert "--concurrency-range 2:2" in joined
    assert "--measurement-mode count_windows --measurement-request-count 40 -s 25 --max-trials 15" in joined
    assert argv[-2:] == ["--input-data", str(tmp_path / "in.json")]
    assert analyzer.env["LD_LIBRARY_PATH"] == str(tmp_path / "pa" / "lib")
    assert "--input-data" not in analyzer.argv("add_sub", "h:8000", 1, tmp_path / "c.csv", 9, 25, 15, None)
