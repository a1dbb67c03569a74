"""The lab's SD-WAN provider edge stand-in (edgefaas.lab.wan), laid before first boot."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from edgefaas.lab import profiles, wan
from edgefaas.lab.spec import load_spec, parse_spec

pytestmark = pytest.mark.unit


def _root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    return root


def test_the_switches_sdwan_peers_are_the_lab_s_wan_devices():
    lab = load_spec()
    assert wan.sdwan_peers(lab) == [{"name": "wan-1", "address": lab.device("wan-1").address, "asn": 65000}]
    only_switches = parse_spec(
        {"devices": [{"name": "sonic-1", "profile": "sonic", "roles": ["k3s_server"]}]}
    )
    assert wan.sdwan_peers(only_switches) == []


def test_the_cloud_servers_peer_with_the_pe_at_its_cloud_segment_address():
    lab = load_spec()
    assert wan.cloud_sdwan_peers(lab) == [{"name": "wan-1", "address": lab.cloud_gateway, "asn": 65000}]
    no_cloud = parse_spec({"devices": [{"name": "w", "profile": "wan"}]})
    assert wan.cloud_sdwan_peers(no_cloud) == []


def test_the_pe_accepts_every_switch_of_the_lab_subnet_with_bfd_and_announces_the_client_subnet():
    lab = parse_spec({"subnet": "10.78.0.0/24"})
    text = wan.frr_conf(lab, lab.device("wan-1"))
    assert "router bgp 65000" in text
    assert "bgp listen range 10.78.0.0/24 peer-group SWITCHES" in text
    assert " neighbor SWITCHES remote-as external" in text and " neighbor SWITCHES bfd" in text
    assert "  network 10.200.0.0/24" in text
    # The cloud segment behind it: announced to the switches, its servers accepted as peers.
    assert "  network 10.78.1.0/24" in text
    assert "bgp listen range 10.78.1.0/24 peer-group CLOUD" in text and "  neighbor CLOUD activate" in text
    if shutil.which("vtysh"):  # FRR's own parser, where FRR is installed
        proc = subprocess.run(
            ["vtysh", "--dryrun", "--inputfile", "/dev/stdin"], input=text, capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_profile_lays_frr_forwarding_and_the_wan_client(tmp_path):
    lab = load_spec()
    root = _root(tmp_path)
    profiles.apply(root, lab, lab.device("wan-1"))
    daemons = (root / "etc/frr/daemons").read_text()
    assert "bgpd=yes" in daemons and "bfdd=yes" in daemons
    assert "router bgp 65000" in (root / "etc/frr/frr.conf").read_text()
    assert "net.ipv4.ip_forward = 1" in (root / wan.SYSCTL_FILE).read_text()
    wants = root / "etc/systemd/system/multi-user.target.wants"
    assert {p.name for p in wants.iterdir()} == {"frr.service", wan.CLIENT_UNIT}
    script = (root / wan.CLIENT_SCRIPT).read_text()
    assert "ip -n wanclient route replace default via 10.200.0.1" in script
    assert "ip -n wanclient addr replace 10.200.0.2/24 dev eth0" in script
    # Nothing of a switch: no SONiC database, no SONiC marker.
    assert not (root / "etc/sonic").exists() and not (root / "etc/redis").exists()
    assert (root / "etc/edgefaas/device-label").read_text() == "wan\n"


@pytest.mark.skipif(not shutil.which("sh"), reason="no POSIX shell")
def test_the_client_script_is_valid_shell(tmp_path):
    script = tmp_path / "client.sh"
    script.write_text(wan.client_script())
    assert subprocess.run(["sh", "-n", str(script)], capture_output=True).returncode == 0
