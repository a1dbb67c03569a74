"""edgefaas.perf.locust_run: a run's command lines (alone or distributed); merging workers' samples."""

from __future__ import annotations

import json
from pathlib import Path

from edgefaas.perf.locust_run import locust_commands, merged_samples


def _value(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_a_lone_run_writes_csv_history_and_html(tmp_path):
    (command,) = locust_commands(Path("f.py"), "DirectUser", 4, 5.0, tmp_path, "t1", ["--function", "FuncC"])
    assert "--headless" in command and "--csv-full-history" in command
    assert _value(command, "--html") == str(tmp_path / "locust-t1.html")
    assert _value(command, "--csv") == str(tmp_path / "locust-t1")
    assert _value(command, "--samples-file") == str(tmp_path / "samples-t1.json")
    assert _value(command, "--run-time") == "5s" and _value(command, "--users") == "4"
    assert "--master" not in command and "--worker" not in command


def test_run_time_is_whole_seconds_rounded_up(tmp_path):
    # locust refuses "9.5s": the gateway bench's 15 s over 2 rounds plus 2 s of warm-up
    (command,) = locust_commands(Path("f.py"), "U", 1, 9.5, tmp_path, "t")
    assert _value(command, "--run-time") == "10s"


def test_distributed_run_is_a_master_and_n_workers_on_one_port(tmp_path):
    commands = locust_commands(
        Path("f.py"), "DirectUser", 4, 5.0, tmp_path, "t", ["--function", "X"], workers=2, port=5599
    )
    master, *workers = commands
    assert len(workers) == 2
    assert "--master" in master and _value(master, "--expect-workers") == "2"
    assert _value(master, "--master-bind-port") == "5599"
    for worker in workers:
        assert "--worker" in worker and "--headless" not in worker and "--html" not in worker
        assert _value(worker, "--master-port") == "5599"
        assert _value(worker, "--function") == "X"  # the locustfile's own options go to every process
        assert "DirectUser" in worker


def test_merged_samples_joins_the_workers_files_in_time_order(tmp_path):
    (tmp_path / "samples-t.json").write_text(json.dumps({"users": ["U"], "samples": []}))
    (tmp_path / "samples-t.101.json").write_text(json.dumps({"samples": [{"t": 2.0, "ms": 1, "ok": True}]}))
    (tmp_path / "samples-t.202.json").write_text(json.dumps({"samples": [{"t": 1.0, "ms": 2, "ok": True}]}))
    (tmp_path / "samples-t2.json").write_text(json.dumps({"samples": [{"t": 0.5, "ms": 9, "ok": True}]}))
    merged = merged_samples(tmp_path, "t")
    assert merged is not None
    assert merged["files"] == 3
    assert [s["t"] for s in merged["samples"]] == [1.0, 2.0]
    assert merged_samples(tmp_path, "absent") is None
