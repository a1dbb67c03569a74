"""The cloud-edge figures command (edgefaas.perf.sites) on two real gateway processes."""

from __future__ import annotations

import json

import pytest

from edgefaas.perf import sites

pytestmark = pytest.mark.unit


def test_the_figures_show_offload_only_past_the_objective_and_every_publish_arriving(tmp_path, capsys):
    options = ["--calls", "5", "--loads", "1,6", "--max-inflight", "2", "--work-ms", "100"]
    code = sites.main([*options, "--calls-per-caller", "4", "--publishes", "2", "--out", str(tmp_path)])
    assert code == 0, capsys.readouterr().err
    result = json.loads((tmp_path / "sites_bench.json").read_text())
    assert result["latency"]["edge"]["calls"] == result["latency"]["offloaded"]["calls"] == 5
    alone, crowded = result["share"]
    # One caller never passes an objective of two calls at once; six callers must.
    assert alone["offloaded"] == 0 and alone["reasons"] == {"local": 4}
    assert 0 < crowded["offloaded"] < crowded["calls"] == 24
    assert set(crowded["reasons"]) == {"local", "queue_depth"}
    assert result["publish"]["publishes"] == 2 and result["publish"]["max_s"] < 30
    assert "offloaded to the cloud" in (tmp_path / "sites-figures.txt").read_text()


@pytest.mark.parametrize(
    ("argv", "said"), [(["--loads", "2,x"], "--loads takes numbers"), (["--calls", "0"], "--calls")]
)
def test_bad_options_are_refused_naming_them(argv, said, capsys):
    with pytest.raises(SystemExit) as exit_:
        sites.main(argv)
    assert exit_.value.code == 2 and said in capsys.readouterr().err


def test_an_inventory_without_a_cloud_site_is_refused_before_anything_is_measured(tmp_path, capsys):
    inventory = tmp_path / "one_site.py"
    inventory.write_text("sonic = [('sonic-1', {'ssh_hostname': '192.0.2.1'})]\nk3s_server = [sonic[0]]\n")
    code = sites.main(["--inventory", str(inventory), "--out", str(tmp_path / "out")])
    assert code == 2
    assert "no cloud site and edge site" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_missing_inventory_is_refused_naming_it(tmp_path, capsys):
    assert sites.main(["--inventory", str(tmp_path / "nowhere.py")]) == 2
    assert "nowhere.py: no such inventory file" in capsys.readouterr().err
