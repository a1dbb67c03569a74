"""The lab's bgpcfgd stand-in leaves the announcer's FRR objects alone, as bgpcfgd does: its
reloads carry them over instead of deleting them (checked with FRR's own frr-reload.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgefaas.lab.sonic import bgpcfgd
from edgefaas.sonic import announce

pytestmark = pytest.mark.unit

FRR_RELOAD = Path("/usr/lib/frr/frr-reload.py")
RUNNING = """frr version 8.4.4
frr defaults traditional
hostname sonic-1
service integrated-vtysh-config
!
router bgp 65101
 no bgp network import-check
 !
 address-family ipv4 unicast
  network 10.255.1.7/32 route-map FROM_SDN_APPLIANCE_ROUTES_RM
 exit-address-family
exit
!
ip prefix-list EDGEFAAS_FN_7 seq 5 permit 10.255.1.7/32
ip prefix-list OTHER seq 5 permit 10.9.0.0/24
!
route-map FROM_SDN_APPLIANCE_ROUTES_RM permit 10
 call EDGEFAAS_FN_RM
 on-match next
exit
!
route-map FROM_SDN_APPLIANCE_ROUTES_RM permit 100
 set community 65100:200
 set origin incomplete
exit
!
route-map EDGEFAAS_FN_RM permit 7
 match ip address prefix-list EDGEFAAS_FN_7
 set large-community 65101:7:3 additive
exit
!
route-map EDGEFAAS_FN_RM permit 65535
exit
!
end
"""


def _rendered() -> str:
    config = {
        "DEVICE_METADATA": {"localhost": {"hostname": "sonic-1", "bgp_asn": "65101"}},
        "LOOPBACK_INTERFACE": {},
    }
    state = {"ADVERTISE_NETWORK_TABLE": {"10.255.1.7/32": {"profile": "FROM_SDN_APPLIANCE_ROUTES"}}}
    appl = {"BGP_PROFILE_TABLE": {"FROM_SDN_APPLIANCE_ROUTES": {"community_id": "65100:200"}}}
    return bgpcfgd.render(config, state, appl, "sonic-1").text


def test_the_announcers_objects_are_carried_over_and_nothing_else():
    kept = bgpcfgd.others_objects(RUNNING)
    # What the stand-in carries over is exactly what the announcer owns.
    assert announce.frr_objects(kept) == announce.frr_objects(RUNNING)
    assert "OTHER" not in kept and "permit 100" not in kept
    assert bgpcfgd.others_objects("router bgp 65101\nexit\n") == ""


def _reload_deltas(tmp_path: Path, new: str) -> str:
    running = tmp_path / "running.conf"
    running.write_text(RUNNING)
    conf = tmp_path / "frr.conf"
    conf.write_text(new)
    proc = subprocess.run(
        [
            sys.executable,
            str(FRR_RELOAD),
            "--test",
            "--stdout",
            f"--rundir={tmp_path}",
            "--input",
            str(running),
            str(conf),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_frr_reload_of_the_stand_ins_configuration_deletes_none_of_them(tmp_path):
    if not FRR_RELOAD.exists() or not shutil.which("vtysh"):
        pytest.skip("FRR's frr-reload.py is not installed")
    alone = _reload_deltas(tmp_path, _rendered())
    assert "no route-map EDGEFAAS_FN_RM permit 7" in alone  # why the stand-in carries them over
    carried = _reload_deltas(tmp_path, _rendered() + bgpcfgd.others_objects(RUNNING))
    deltas = [line for line in carried.splitlines() if line.startswith(("no ", "ip ", "route-map "))]
    assert not [line for line in deltas if "EDGEFAAS" in line or line.endswith("permit 10")], carried
