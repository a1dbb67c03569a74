"""Inventories are checked when loaded, before pyinfra contacts any host."""

import subprocess
import sys
from pathlib import Path

import pytest

from edgefaas.deploy.inventory import InventoryError, check_groups, lab_groups, load_inventory
from edgefaas.lab.spec import load_spec
from edgefaas.lab.state import LabState

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]


def groups(**kwargs):
    base = {"sonic": ["s1", "s2"], "jetson": ["j1"], "k3s_server": ["s1"], "k3s_agent": ["s2", "j1"]}
    base.update(kwargs)
    return base


def test_a_well_formed_inventory_passes():
    check_groups(groups())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"k3s_server": []}, "no host in group 'k3s_server'"),
        ({"k3s_server": ["s1", "s2"], "k3s_agent": ["j1"]}, "no HA settings"),
        ({"k3s_agent": ["s1", "j1"]}, "both 'k3s_server' and 'k3s_agent'"),
        ({"jetson": ["j1", "s2"]}, "both 'sonic' and 'jetson'"),
        ({"jetson": []}, "j1 in a K3S group but in none of the profile groups"),
    ],
)
def test_bad_inventories_are_refused_with_the_reason(change, message):
    with pytest.raises(InventoryError, match=message):
        check_groups(groups(**change))


def _two_sites(**kwargs):
    """An edge site as above and a cloud site of two servers of profile `cloud`."""
    base = groups(cloud=["c1", "c2"], k3s_server=["s1", "c1"], k3s_agent=["s2", "j1", "c2"])
    base.update(kwargs)
    return base


def test_a_cloud_site_beside_an_edge_site_has_a_server_of_its_own():
    check_groups(_two_sites())
    with pytest.raises(InventoryError, match=r"site 'cloud' has K3S agents \(c1, c2\) but no host in group"):
        check_groups(_two_sites(k3s_server=["s1"], k3s_agent=["s2", "j1", "c1", "c2"]))
    with pytest.raises(InventoryError, match="'k3s_server' \\(s1, s2\\) of site 'edge' but no HA"):
        check_groups(_two_sites(k3s_server=["s1", "s2", "c1"], k3s_agent=["j1", "c2"]))


def test_a_site_is_host_data_and_a_bad_site_name_is_refused_with_the_host():
    # A second edge site: its own switch as its server, named in the host data.
    second = [("s3", {"edgefaas_site": "edge-b"})]
    check_groups(groups(sonic=["s1", "s2", *second], k3s_server=["s1", *second]))
    with pytest.raises(InventoryError, match="site 'edge-b' has K3S agents"):
        check_groups(groups(sonic=["s1", "s2", *second], k3s_agent=["s2", "j1", *second]))
    bad = [("s3", {"edgefaas_site": "Edge_B"})]
    with pytest.raises(InventoryError, match="s3: edgefaas_site 'Edge_B' is not a site name"):
        check_groups(groups(sonic=["s1", "s2", *bad], k3s_agent=["s2", "j1", *bad]))


def test_ha_servers_are_allowed_when_asked_for():
    check_groups(groups(k3s_server=["s1", "s2"], k3s_agent=["j1"]), ha=True)


def test_lab_groups_come_from_the_state_file(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEFAAS_STATE", str(tmp_path))
    LabState(spec=load_spec(devices=6)).save()
    found = lab_groups()
    # One server per site: the edge's first switch and the cloud's server.
    assert [name for name, _ in found["k3s_server"]] == ["sonic-1", "cloud-1"]
    assert len(found["sonic"]) + len(found["jetson"]) == 6
    assert [name for name, _ in found["cloud"]] == ["cloud-1"]
    data = dict(found["sonic"])["sonic-2"]
    assert data["ssh_hostname"] == "10.77.0.12"
    assert data["ssh_strict_host_key_checking"] == "yes"
    assert Path(data["ssh_known_hosts_file"]).name == "known_hosts"
    check_groups(found)


def _pyinfra(*args, env_state):
    env = {"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin", "EDGEFAAS_STATE": str(env_state)}
    return subprocess.run(
        [sys.executable, "-m", "pyinfra", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_pyinfra_refuses_an_inventory_without_a_server_before_connecting(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from edgefaas.deploy.inventory import check_groups\n"
        "sonic = [('sonic-1', {'ssh_hostname': '192.0.2.1'})]\n"
        "check_groups({'sonic': sonic})\n"
    )
    proc = _pyinfra("-y", str(bad), "deploys/platform.py", env_state=tmp_path)
    assert proc.returncode != 0
    assert "no host in group 'k3s_server'" in proc.stdout + proc.stderr
    assert "Connecting to hosts" not in proc.stdout + proc.stderr


def test_lab_inventory_without_a_lab_says_to_bring_it_up(tmp_path):
    proc = _pyinfra("-y", "inventories/lab.py", "deploys/platform.py", env_state=tmp_path)
    assert proc.returncode != 0
    assert "edgefaas lab up" in proc.stdout + proc.stderr


def test_real_lab_example_is_a_valid_inventory():
    inventory = load_inventory(str(REPO / "inventories/real_lab_example.py"), cwd=str(REPO))
    assert [h.name for h in inventory.get_group("k3s_server")] == ["sonic-1"]
    assert {h.name for h in inventory.get_group("k3s_agent")} == {"sonic-2", "jetson-1", "jetson-2"}
    sonic1 = inventory.get_host("sonic-1")
    assert sonic1.data.device_profile == "sonic"  # group_data applies to real inventories too
    assert inventory.get_host("jetson-2").data.device_profile == "jetson"


def test_a_missing_inventory_file_is_refused_without_asking_pyinfra(tmp_path):
    with pytest.raises(InventoryError, match="no such inventory file"):
        load_inventory(str(tmp_path / "missing.py"), cwd=str(tmp_path))
    assert not (tmp_path / "pyinfra-debug.log").exists()


def test_an_inventory_that_fails_to_load_says_why(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from edgefaas.deploy.inventory import check_groups\ncheck_groups({'sonic': ['s1']})\n")
    with pytest.raises(InventoryError, match=r"bad.py: .*no host in group 'k3s_server'"):
        load_inventory(str(bad), cwd=str(tmp_path))
