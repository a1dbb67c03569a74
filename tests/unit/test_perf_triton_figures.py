"""edgefaas.perf.triton_figures: figures from samples, and the targets judged on them."""

from __future__ import annotations

import math

import pytest

from edgefaas.perf import perf_analyzer, triton_figures
from tests.unit.test_perf_analyzer import PA_CSV

pytestmark = pytest.mark.unit

# -- targets --------------------------------------------------------------------------------------


def _figures(
    p50: float, rps: float = 10.0, calls: int = 100, served_by: dict | None = None
) -> triton_figures.Figures:
    return triton_figures.Figures(calls, 0, 10.0, p50, p50, p50, p50, rps, served_by or {})


@pytest.mark.parametrize(
    ("value", "ok"), [(20.0, True), (19.99, False), (35.0, True), (None, False), (math.nan, False)]
)
def test_at_least_verdict(value, ok):
    assert triton_figures.Verdict("fps", value, 20.0, True).ok is ok


@pytest.mark.parametrize(("value", "ok"), [(1.15, True), (1.1501, False), (0.9, True), (None, False)])
def test_at_most_verdict(value, ok):
    verdict = triton_figures.Verdict("ratio", value, 1.15, False)
    assert verdict.ok is ok
    assert verdict.label == ("PASS" if ok else "FAIL")
    assert verdict.to_json()["ok"] is ok


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [(46.0, 40.0, 1.15), (10.0, 0.0, None), (math.nan, 1.0, None), (1.0, math.nan, None)],
)
def test_ratio(a, b, expected):
    assert triton_figures.ratio(a, b) == (pytest.approx(expected) if expected is not None else None)


def test_fps_from_perf_analyzer_first_then_locust():
    rows = perf_analyzer.parse_perf_csv(PA_CSV)[:1]  # only concurrency 1 measured by perf_analyzer
    direct = {1: _figures(40.0, rps=24.0), 2: _figures(80.0, rps=18.5)}
    one, two = triton_figures.fps_verdicts(rows, direct)
    assert (one.value, one.source, one.ok) == (pytest.approx(25.3128), "perf_analyzer", True)
    assert (two.value, two.source, two.ok) == (18.5, "locust TritonUser", False)


def test_fps_not_measured_fails():
    (one, two) = triton_figures.fps_verdicts([], {})
    assert one.value is None
    assert not one.ok
    assert two.source == "not measured"


SERVER = "http://10.77.0.12:8000"


def test_ratio_judged_on_same_server_calls_when_there_are_enough():
    direct = _figures(40.0, served_by={SERVER: 200})
    function = _figures(60.0, served_by={SERVER: 150, "http://10.77.0.11:8000": 50})
    same = _figures(44.0, served_by=function.served_by)
    verdict = triton_figures.ratio_verdict(1, direct, function, same, SERVER + "/")
    assert verdict.value == pytest.approx(1.1)
    assert verdict.ok
    assert "150 function calls" in verdict.source


def test_ratio_judged_on_all_calls_when_the_function_went_elsewhere():
    direct = _figures(40.0, served_by={SERVER: 200})
    function = _figures(
        60.0, served_by={SERVER: triton_figures.SAME_SERVER_MIN_CALLS - 1, "http://10.77.0.11:8000": 150}
    )
    same = _figures(44.0, served_by=function.served_by)
    verdict = triton_figures.ratio_verdict(2, direct, function, same, SERVER)
    assert verdict.value == pytest.approx(1.5)
    assert not verdict.ok
    assert verdict.source == "all function calls"
    assert verdict.name == "function/direct p50 at 2 users"


# -- samples --------------------------------------------------------------------------------------


def test_summarize_leaves_out_warmup_counts_errors_and_servers():
    run = {
        "samples": [
            {"t": 0.5, "ms": 999.0, "ok": True, "served_by": "a"},  # warm-up: left out
            {"t": 2.0, "ms": 10.0, "ok": True, "served_by": "a"},
            {"t": 3.0, "ms": 30.0, "ok": True, "served_by": "b/"},
            {"t": 4.0, "ms": 20.0, "ok": False},
            {"t": 6.0, "ms": 40.0, "ok": True, "served_by": "a"},
        ]
    }
    figures = triton_figures.summarize([run, {"samples": []}], warmup=1.0)
    assert figures.calls == 3
    assert figures.errors == 1
    assert figures.seconds == pytest.approx(5.0)
    assert figures.rps == pytest.approx(0.6)
    assert figures.p50_ms == 30.0
    assert figures.p99_ms == 40.0
    assert figures.served_by == {"a": 2, "b": 1}
    only_a = triton_figures.summarize([run], warmup=1.0, server="a")
    assert only_a.p50_ms == 10.0  # latencies of a's calls only (10, 40)
    assert only_a.calls == 3  # throughput stays over every call


def test_summarize_splits_the_function_path_into_inference_and_the_rest():
    run = {
        "samples": [
            {"t": 1.0, "ms": 50.0, "ok": True, "served_by": "a", "inference_ms": 40.0},
            {"t": 2.0, "ms": 90.0, "ok": True, "served_by": "b", "inference_ms": 30.0},
            {"t": 3.0, "ms": 70.0, "ok": True, "served_by": "a", "inference_ms": 45.0},
        ]
    }
    everything = triton_figures.summarize([run], warmup=0.0)
    assert everything.inference_p50_ms == 40.0
    assert everything.outside_inference_p50_ms == 25.0  # of 10, 60, 25
    only_a = triton_figures.summarize([run], warmup=0.0, server="a")
    assert only_a.inference_p50_ms == 40.0  # of 40, 45
    assert only_a.outside_inference_p50_ms == 10.0  # of 10, 25
    direct = triton_figures.summarize([{"samples": [{"t": 1.0, "ms": 5.0, "ok": True}]}], warmup=0.0)
    assert math.isnan(direct.inference_p50_ms)


def test_summarize_of_nothing():
    figures = triton_figures.summarize([], warmup=2.0)
    assert figures.calls == 0
    assert figures.rps == 0.0
    assert math.isnan(figures.p50_ms)


def test_failed_calls_make_a_run_untrusted():
    fine = triton_figures.Figures(990, 10, 10.0, 1, 1, 1, 1, 99.0)
    assert triton_figures.failure_problem("direct at 1 users", fine) is None  # exactly 1%: kept
    storm = triton_figures.Figures(36, 4177, 10.0, 1, 1, 1, 1, 3.6)
    problem = triton_figures.failure_problem("direct at 1 users", storm)
    assert problem is not None
    assert "4177 of 4213" in problem
    assert "direct at 1 users" in problem
    assert (
        triton_figures.failure_problem("8 clients", triton_figures.Figures(0, 0, 0.0, 1, 1, 1, 1, 0.0))
        == "8 clients: no call finished"
    )
