"""edgefaas.perf: ratios against thresholds, the exit code, stats history parsing, scale files, the HTML."""

from __future__ import annotations

import base64
import json
import math
import re

import pytest

from edgefaas.perf import report
from edgefaas.perf.report import Ratio, Suite
from edgefaas.perf.runner import gateway_users, parse_duration, suite_command
from edgefaas.perf.scale import load_scale, record_point


def _side(p50: float, rps: float) -> dict:
    return {"calls": 100, "errors": 0, "seconds": 10, "p50_ms": p50, "p90_ms": p50, "p99_ms": p50,
            "mean_ms": p50, "rps": rps}  # fmt: skip


def gateway_figures(added_1: float = 0.5, added_16: float = 0.8, ratio_16: float = 0.75) -> dict:
    rows = []
    for users, added, ratio in ((1, added_1, 0.9), (16, added_16, ratio_16)):
        rows.append({"users": users, "direct": _side(1.0, 1000), "gateway": _side(1.0 + added, 1000 * ratio),
                     "added_p50_ms": added, "throughput_ratio": ratio})  # fmt: skip
    return {"rows": rows}


def triton_figures(fps: float = 25.0, ratio_1: float = 1.1, ratio_2: float = 1.0) -> dict:
    return {
        "verdicts": [
            {"name": "fps at concurrency 1", "value": fps, "target": 20, "at_least": True, "source": "pa"},
            {"name": "fps at concurrency 2", "value": fps + 1, "target": 20, "at_least": True},
            {"name": "function/direct p50 at 1 users", "value": ratio_1, "target": 1.15, "at_least": False},
            {"name": "function/direct p50 at 2 users", "value": ratio_2, "target": 1.15, "at_least": False},
        ],
        "clients": [{"clients": c, "figures": {"rps": 15.0}} for c in (1, 2, 4, 8)],
        "function_vs_direct": [{"users": u, "function": {"rps": 12.0}} for u in (1, 2)],
        "perf_analyzer": {
            "models": {
                "face_expression": [
                    {
                        "concurrency": 1,
                        "throughput": 16.5,
                        "p50_ms": 60,
                        "p90_ms": 61,
                        "p99_ms": 70,
                        "server_queue_ms": 0.1,
                        "server_compute_ms": 55,
                    },
                    {"concurrency": 2, "missing": True},
                ]
            }
        },
    }


def parsec_figures(ratios: tuple[float | None, ...] = (1.0, 1.1)) -> dict:
    cells = []
    for clients, ratio in zip((1, 4), ratios, strict=True):
        py = {"n": 10, "errors": 0, "p50_ms": 10.0 * (ratio or 1), "p99_ms": 12.0, "ops_s": 90.0}
        rs = {"n": 10, "errors": 0, "p50_ms": 10.0, "p99_ms": 12.0, "ops_s": 90.0}
        cells.append({"op": "ping", "clients": clients, "python": py, "rust": rs, "ratio_p50": ratio})
    return {"target_ratio": 1.2, "cells": cells}


def all_suites(**overrides: dict) -> list[Suite]:
    figures = {"gateway": gateway_figures(), "triton": triton_figures(), "parsec": parsec_figures()}
    figures.update(overrides)
    return [Suite(name, figures=f) for name, f in figures.items()]


# -- ratios and thresholds --------------------------------------------------------------------------


def test_ratio_at_most_and_at_least_edges():
    assert Ratio("s", "n", 1.15, 1.15, True).ok
    assert not Ratio("s", "n", 1.1501, 1.15, True).ok
    assert Ratio("s", "n", 0.70, 0.70, False, "%").ok
    assert not Ratio("s", "n", 0.699, 0.70, False, "%").ok


def test_ratio_not_measured_fails_and_says_so():
    for value in (None, math.nan):
        ratio = Ratio("s", "n", value, 1.0, True)
        assert not ratio.ok
        assert ratio.verdict == "FAIL (not measured)"
        assert ratio.shown_value == "-"


def test_ratio_formats_by_unit():
    assert Ratio("s", "n", 0.753, 0.7, False, "%").shown_value == "75%"
    assert Ratio("s", "n", 0.753, 0.7, False, "%").shown_threshold == ">= 70%"
    assert Ratio("s", "n", 1.234, 1.15, True).shown_threshold == "<= 1.15x"
    assert Ratio("s", "n", 0.5, 1.0, True, "ms").shown_value == "0.50 ms"


def test_gateway_ratios_judge_p50_on_every_row_and_throughput_at_16_users():
    ratios = report.gateway_ratios(gateway_figures(added_1=0.5, added_16=1.4, ratio_16=0.69))
    by_name = {r.name: r for r in ratios}
    assert by_name["gateway vs direct: p50 added at 1 users"].ok
    assert not by_name["gateway vs direct: p50 added at 16 users"].ok
    throughput = by_name["gateway/direct throughput at 16 users"]
    assert throughput.value == 0.69 and not throughput.ok
    assert throughput.threshold == report.GATEWAY_THROUGHPUT_RATIO == 0.70
    assert not any("throughput at 1 users" in r.name for r in ratios)


def test_gateway_ratios_without_a_16_user_row_fail_the_throughput_threshold():
    figures = gateway_figures()
    figures["rows"] = figures["rows"][:1]
    missing = [r for r in report.gateway_ratios(figures) if "throughput" in r.name]
    assert len(missing) == 1 and missing[0].value is None and not missing[0].ok


def test_triton_ratios_carry_the_thresholds():
    ratios = report.triton_ratios(triton_figures(fps=19.9, ratio_1=1.2, ratio_2=1.15))
    fps = [r for r in ratios if "fps" in r.name]
    p50 = [r for r in ratios if "p50" in r.name]
    assert [r.ok for r in fps] == [False, True]  # 19.9 and 20.9 against 20
    assert all(r.threshold == 20.0 and not r.at_most for r in fps)
    assert [r.ok for r in p50] == [False, True]
    assert all(r.threshold == 1.15 and r.at_most and "Triton" in r.name for r in p50)


def test_parsec_ratio_is_the_worst_cell_per_operation():
    (ratio,) = report.parsec_ratios(parsec_figures((1.05, 1.25)))
    assert ratio.value == 1.25 and not ratio.ok and ratio.threshold == 1.2
    assert "4" in ratio.source  # the worst cell's clients
    (ratio,) = report.parsec_ratios(parsec_figures((None, None)))
    assert ratio.value is None and not ratio.ok


# -- exit code --------------------------------------------------------------------------------------


def test_exit_code_zero_when_every_threshold_holds():
    suites = all_suites()
    ratios = report.all_ratios(suites)
    assert len(ratios) == 3 + 4 + 1
    assert report.exit_code(suites, ratios) == 0


def test_exit_code_one_when_a_threshold_is_broken():
    suites = all_suites(triton=triton_figures(ratio_2=1.3))
    assert report.exit_code(suites, report.all_ratios(suites)) == 1


def test_exit_code_three_when_a_suite_could_not_run_even_with_a_broken_threshold():
    suites = all_suites(triton=triton_figures(fps=5))
    suites.append(Suite("parsec", problem="no parsec service"))
    assert report.exit_code(suites, report.all_ratios(suites)) == 3
    suites = all_suites()
    suites[0] = Suite("gateway", figures=gateway_figures(), problem="NOT TRUSTED")
    assert report.exit_code(suites, report.all_ratios(suites)) == 3


def test_exit_codes_are_distinct_from_click_s_usage_error():
    codes = (report.EXIT_OK, report.EXIT_THRESHOLD, report.EXIT_SUITE)
    assert len(set(codes)) == 3 and 2 not in codes


# -- locust's stats history -------------------------------------------------------------------------

HISTORY_HEADER = (
    '"Timestamp","User Count","Type","Name","Requests/s","Failures/s","50%","66%","75%","80%","90%",'
    '"95%","98%","99%","99.9%","99.99%","100%","Total Request Count","Total Failure Count"'
)


def _history_row(
    stamp: int, users: int, type_: str, name: str, rps: str, *pcts: str, total: str = "10"
) -> str:
    p50, p95, p99 = pcts
    cells = [p50] * 5 + [p95] + [p99] * 5
    return f'"{stamp}","{users}","{type_}","{name}","{rps}","0",' + ",".join(cells) + f',"{total}","0"'


def test_parse_stats_history_keeps_the_aggregated_rows_as_series():
    text = "\n".join([
        HISTORY_HEADER,
        _history_row(1000, 0, "", "Aggregated", "0.000000", "N/A", "N/A", "N/A", total="0"),
        _history_row(1000, 4, "", "Aggregated", "0.000000", "0", "0", "0", total="1121"),
        _history_row(1001, 4, "POST", "DirectUser", "150.0", "3", "8", "12"),
        _history_row(1001, 4, "", "Aggregated", "150.0", "3", "8", "12"),
        _history_row(1003, 4, "", "Aggregated", "180.5", "4", "9", "20"),
    ])  # fmt: skip
    series = report.parse_stats_history(text, "direct")
    assert series.label == "direct"
    assert series.t == [0.0, 0.0, 1.0, 3.0]
    assert series.users == [0, 4, 4, 4]
    assert series.rps == [0.0, 0.0, 150.0, 180.5]
    # no request in the window yet: no figure, not 0 ms
    assert all(math.isnan(v) for v in series.p50[:2] + series.p99[:2])
    assert series.p50[2:] == [3.0, 4.0]
    assert series.p95[2:] == [8.0, 9.0] and series.p99[2:] == [12.0, 20.0]
    named = report.parse_stats_history(text, name="DirectUser")
    assert named.t == [0.0] and named.p99 == [12.0]


def test_parse_stats_history_reads_na_as_no_figure():
    text = "\n".join([HISTORY_HEADER, _history_row(5, 1, "", "Aggregated", "2.0", "N/A", "7", "9")])
    series = report.parse_stats_history(text)
    assert math.isnan(series.p50[0]) and series.p95 == [7.0] and series.p99 == [9.0]


def test_parse_stats_history_refuses_other_csvs():
    with pytest.raises(ValueError, match="not a locust stats history"):
        report.parse_stats_history('"Type","Name","Request Count"\n"POST","x","1"\n')


# -- scale figures ----------------------------------------------------------------------------------


def test_scale_record_and_load_round_trip(tmp_path):
    path = tmp_path / "scale.json"
    record_point(path, "K3S", 10, 214.66, 24.04, "today", unit="nodes")
    record_point(path, "K3S", 3, 70.0, 8.6, "today", unit="nodes")
    record_point(path, "K3S", 10, 200.0, 20.0, "later", unit="nodes")  # replaces the 10-node point
    (series,) = load_scale(path)
    assert series.unit == "nodes"
    assert [(p.devices, p.deploy_s, p.rerun_s, p.recorded) for p in series.points] == [
        (3, 70.0, 8.6, "today"),
        (10, 200.0, 20.0, "later"),
    ]


def test_the_seeded_scale_figures_load():
    from edgefaas.perf.bench import repo_root
    from edgefaas.perf.runner import DEFAULT_SCALE_JSON

    series = {s.name: s for s in load_scale(repo_root() / DEFAULT_SCALE_JSON)}
    k3s = next(s for name, s in series.items() if name.startswith("K3S"))
    assert [(p.devices, p.deploy_s, p.rerun_s) for p in k3s.points] == [(3, 70.0, 8.6), (10, 214.7, 24.0)]
    assert all("2-core" in p.recorded for s in series.values() for p in s.points)


def test_scale_refuses_a_file_without_series(tmp_path):
    path = tmp_path / "scale.json"
    path.write_text(json.dumps({"points": []}))
    with pytest.raises(ValueError, match="series"):
        load_scale(path)


# -- the HTML ---------------------------------------------------------------------------------------


def test_html_has_every_ratio_its_threshold_and_verdict_and_no_external_resources(tmp_path):
    pytest.importorskip("matplotlib")
    suites = all_suites(triton=triton_figures(ratio_1=1.3))
    suites.append(Suite("extra", problem="it <broke>"))
    ratios = report.all_ratios(suites)
    code = report.exit_code(suites, ratios)
    lines = report.throughput_series(suites)
    series = report.HistorySeries("a", [0, 1], [1, 1], [1, 1], [1, 2], [2, 3], [3, 4])
    page = report.build_html(
        suites, ratios, code, throughput_png=report.plot_throughput(lines),
        history={"h": report.plot_history([series], "h")},
        out=tmp_path,
    )  # fmt: skip
    for ratio in ratios:
        row = re.search(rf"<td>{re.escape(ratio.name)}</td>(.*?)</tr>", page)
        assert row, ratio.name
        assert ratio.shown_threshold.replace(">", "&gt;").replace("<", "&lt;") in row.group(1)
        assert ratio.verdict in row.group(1)
    assert "FAIL" in page and "Exit code <b>3</b>" in page
    assert "it &lt;broke&gt;" in page  # escaped
    assert "pods are not reachable" in page
    assert "perf_analyzer" in page and "16.50" in page
    assert not re.search(r"""(src|href)=['"]https?:""", page)
    pngs = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)
    assert len(pngs) == 2
    assert all(base64.b64decode(png).startswith(b"\x89PNG") for png in pngs)


def test_throughput_series_per_side():
    lines = report.throughput_series(all_suites())
    assert lines["function direct (req/s)"] == ([1, 16], [1000, 1000])
    assert lines["function gateway (req/s)"] == ([1, 16], [900.0, 750.0])
    assert lines["Triton direct, face_expression (fps)"][0] == [1, 2, 4, 8]


def test_ratios_csv_has_a_row_per_ratio():
    ratios = report.all_ratios(all_suites())
    text = report.ratios_csv(ratios)
    assert len(text.strip().splitlines()) == len(ratios) + 1


# -- runner's pure parts ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"), [("60s", 60), ("2m", 120), ("1m30s", 90), ("15", 15), ("1h", 3600)]
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "10x", "0s", "5s5"])
def test_parse_duration_refuses(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_failure_reason_prefers_the_bench_s_own_words_then_the_exception():
    from edgefaas.perf.runner import failure_reason

    log = "$ python -m edgefaas.perf.x\nstarting\nbenchmark failed: no gateway\n  detail\n"
    assert failure_reason(log) == "benchmark failed: no gateway\n  detail"
    trace = "$ cmd\nTraceback (most recent call last):\n  File x\nhttpx.ConnectError: refused\n"
    assert failure_reason(trace) == "httpx.ConnectError: refused"
    assert failure_reason("$ cmd\n") == "(empty log)"


def test_gateway_users_always_include_one_and_the_most():
    assert gateway_users(16) == [1, 4, 16]
    assert gateway_users(1) == [1]
    assert gateway_users(2) == [1, 2]


def test_suite_commands_pass_workers_to_the_locust_suites_only(tmp_path):
    from edgefaas.perf.runner import PerfOptions

    options = PerfOptions("inv.py", 15, 16, tmp_path, ("gateway", "triton", "parsec"), workers=2)
    gateway = suite_command("gateway", options, tmp_path / "g")
    assert gateway[gateway.index("--workers") + 1] == "2"
    assert gateway[gateway.index("--users") + 1] == "1,4,16"
    triton = suite_command("triton", options, tmp_path / "t")
    assert triton[triton.index("--inventory") + 1] == "inv.py" and "--workers" in triton
    assert "--workers" not in suite_command("parsec", options, tmp_path / "p")
    with pytest.raises(ValueError):
        suite_command("nope", options, tmp_path)


def test_cli_refuses_unknown_suites_and_bad_durations_before_running_anything(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from edgefaas import cli
    from edgefaas.perf import runner

    monkeypatch.setattr(runner, "run_perf", lambda *a, **k: pytest.fail("must not run"))
    result = CliRunner().invoke(cli.main, ["perf", "--suites", "gateway,nope", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "--suites" in result.output
    result = CliRunner().invoke(cli.main, ["perf", "--duration", "soon", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "--duration" in result.output


def test_cli_help_names_every_exit_status():
    from click.testing import CliRunner

    from edgefaas import cli

    result = CliRunner().invoke(cli.main, ["perf", "--help"])
    assert result.exit_code == 0
    statuses = dict(re.findall(r"^\s+([0-3])\s+(.+)$", result.output, re.MULTILINE))
    assert statuses["3"].startswith("a suite could not run")
    assert statuses["2"].startswith("usage error")
    assert set(statuses) == {"0", "1", "2", "3"}


def test_cli_exit_code_is_run_perf_s(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from edgefaas import cli
    from edgefaas.perf import runner

    seen = {}

    def fake(options, log):
        seen["options"] = options
        return 1

    monkeypatch.setattr(runner, "run_perf", fake)
    args = ["perf", "--suites", "parsec", "--duration", "2m", "--workers", "2", "--out", str(tmp_path)]
    result = CliRunner().invoke(cli.main, args)
    assert result.exit_code == 1
    options = seen["options"]
    assert options.suites == ("parsec",) and options.duration_s == 120 and options.workers == 2
    assert options.inventory == "inventories/lab.py" and options.out == tmp_path.resolve()


def test_the_gateway_s_ca_file_reaches_the_triton_suite_and_a_missing_one_is_a_usage_error(
    tmp_path, monkeypatch
):
    from click.testing import CliRunner

    from edgefaas import cli
    from edgefaas.perf import runner

    seen = {}

    def fake(options, log):
        seen["options"] = options
        return 0

    monkeypatch.setattr(runner, "run_perf", fake)
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.delenv("EDGEFAAS_CA_FILE", raising=False)
    result = CliRunner().invoke(cli.main, ["perf", "--ca-file", str(ca), "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    triton = suite_command("triton", seen.pop("options"), tmp_path / "t")
    assert triton[triton.index("--ca-file") + 1] == str(ca.resolve())
    # The environment's file when no option is given; no file at all: none passed, the bench reads it.
    result = CliRunner().invoke(
        cli.main, ["perf", "--out", str(tmp_path / "o")], env={"EDGEFAAS_CA_FILE": str(ca)}
    )
    assert result.exit_code == 0 and seen.pop("options").ca_file == ca.resolve()
    result = CliRunner().invoke(cli.main, ["perf", "--out", str(tmp_path / "o")])
    assert "--ca-file" not in suite_command("triton", seen.pop("options"), tmp_path / "t")
    result = CliRunner().invoke(cli.main, ["perf", "--ca-file", str(tmp_path / "absent.pem")])
    assert result.exit_code == 2 and "--ca-file" in result.output
