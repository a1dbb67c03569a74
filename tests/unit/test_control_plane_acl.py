"""The control-plane ACL opener that deploys/platform.py installs on SONiC devices."""

import os
import subprocess
from pathlib import Path

import jinja2
import pytest

pytestmark = pytest.mark.unit
TEMPLATES = Path(__file__).resolve().parents[2] / "templates" / "platform"


@pytest.fixture
def opener(tmp_path):
    """Render the script against a temporary ports directory and fake iptables tools."""
    ports = tmp_path / "cacl.d"
    ports.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "restore.txt"
    calls = tmp_path / "iptables-calls.txt"
    (bin_dir / "iptables-restore").write_text(f"#!/bin/sh\ncat > {record}\n")
    # `-C` (check) fails the first time so that the script inserts its jump.
    (bin_dir / "iptables").write_text(
        f'#!/bin/sh\necho "$@" >> {calls}\ncase "$*" in *-C*) exit 1 ;; esac\nexit 0\n'
    )
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    text = jinja2.Template((TEMPLATES / "edgefaas-cacl.j2").read_text()).render(
        chain="EDGEFAAS-ALLOW", ports_dir=str(ports)
    )
    script = tmp_path / "edgefaas-cacl"
    script.write_text(text)
    script.chmod(0o755)

    def run():
        env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
        subprocess.run([str(script)], check=True, env=env)
        return record.read_text().splitlines(), calls.read_text().splitlines()

    return ports, run


def test_declared_ports_become_accept_rules_in_one_atomic_restore(opener):
    ports, run = opener
    (ports / "k3s.ports").write_text("6443/tcp K3S API\n8472/udp flannel VXLAN\n# comment\n\n")
    (ports / "nodeauth.ports").write_text("7443/tcp from=10.77.0.11/32 node authentication agent\n")
    restore, calls = run()
    assert restore[0] == "*filter" and restore[-1] == "COMMIT"
    assert ":EDGEFAAS-ALLOW - [0:0]" in restore  # declaring the chain flushes it atomically
    rules = [line for line in restore if line.startswith("-A")]
    assert len(rules) == 3
    assert any("-p tcp -m tcp --dport 6443" in r and "K3S API" in r for r in rules)
    assert any("-p udp -m udp --dport 8472" in r for r in rules)
    assert any("--dport 7443 -s 10.77.0.11/32" in r and "node authentication agent" in r for r in rules)
    assert "-w -I INPUT 1 -j EDGEFAAS-ALLOW" in calls


def test_no_declared_ports_leaves_an_empty_chain(opener):
    _ports, run = opener
    restore, _calls = run()
    assert [line for line in restore if line.startswith("-A")] == []
