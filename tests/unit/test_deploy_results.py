"""Reading pyinfra's --json results: from a real pyinfra run on this machine (@local)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from edgefaas.deploy import results

DEPLOY = """\
from pyinfra.operations import files

files.directory(name="Make the site directory", path="{path}/site", mode="755")
files.put(name="Write the marker", src="{path}/marker.src", dest="{path}/site/marker", mode="644")
for copy in ("a", "b"):
    files.put(name="Write a copy", src="{path}/marker.src", dest=f"{path}/site/copy-{{copy}}", mode="644")
"""


def _pyinfra_json(tmp_path, marker: str = "one") -> dict:
    (tmp_path / "deploy.py").write_text(DEPLOY.format(path=tmp_path))
    (tmp_path / "marker.src").write_text(marker + "\n")
    done = subprocess.run(
        [sys.executable, "-m", "pyinfra", "-y", "--json", "@local", str(tmp_path / "deploy.py")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_a_first_run_changes_and_a_re_run_does_not(tmp_path):
    first = results.parse(_pyinfra_json(tmp_path))
    assert not first.changed_nothing
    assert set(first.changed) == {"Make the site directory", "Write the marker", "Write a copy"}
    assert first.changed["Write the marker"] == ["@local"]
    # two operations share one name: both count, neither hides the other
    assert first.changed["Write a copy"] == ["@local", "@local"]
    assert "4 host-operations: 4 changed" in first.describe()

    again = results.parse(_pyinfra_json(tmp_path))
    assert again.changed_nothing and again.unchanged == again.host_operations == 4

    (tmp_path / "run.json").write_text(json.dumps(_pyinfra_json(tmp_path, marker="two")))
    assert results.main([str(tmp_path / "run.json"), "--unchanged"]) == 1


def test_a_dry_run_or_other_json_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no results"):
        results.parse({"plan": {}, "results": None})
    (tmp_path / "bad.json").write_text("{}")
    assert results.main([str(tmp_path / "bad.json")]) == 2
