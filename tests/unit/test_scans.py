"""The security scans' parsers, verdicts and reports, on real Lynis and kube-hunter output.

scan_samples/lynis-sonic.dat is a Lynis 3.0.8 report of a lab switch (shortened);
scan_samples/kube-hunter-readonly-kubelet.json is kube-hunter 0.6.8's report of a stand-in
kubelet on loopback whose read-only port is open with a privileged pod: real findings of
high, medium and low severity.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from edgefaas.scans import accepted, debsecurity, kubehunter, lynis, remote, report

SAMPLES = Path(__file__).parent / "scan_samples"
# A warning in Lynis's own format that names one of the blueprint's services.
K3S_WARNING = "warning[]=FILE-7524|Incorrect permissions for file /etc/rancher/k3s/k3s.yaml|-|-|\n"


def _lynis_sample(extra: str = "") -> str:
    return (SAMPLES / "lynis-sonic.dat").read_text() + extra


def _scan(text: str, device: str = "sonic-1") -> lynis.ScanResult:
    return lynis.ScanResult(device, lynis.parse_report(text, device), None, 1.0)


def _hunt() -> kubehunter.HuntResult:
    text = (SAMPLES / "kube-hunter-readonly-kubelet.json").read_text()
    return kubehunter.HuntResult(kubehunter.parse_report(text), None, 1.0)


# ---- Lynis --------------------------------------------------------------------------------


def test_a_lynis_report_gives_the_index_warnings_and_suggestions():
    parsed = lynis.parse_report(_lynis_sample(), "sonic-1")
    assert parsed.hardening_index == 57
    assert [w.test_id for w in parsed.warnings] == ["PKGS-7388"]
    assert "security repository" in parsed.warnings[0].message
    assert len(parsed.suggestions) == 5
    assert parsed.suggestions[1].details == "AllowTcpForwarding (set YES to NO)"
    assert parsed.tests_executed > 200
    assert parsed.lynis_version == "3.0.8"


def test_a_report_cut_short_is_refused():
    cut = "".join(
        line + "\n" for line in _lynis_sample().splitlines() if not line.startswith("hardening_index")
    )
    with pytest.raises(lynis.LynisError, match="no hardening index"):
        lynis.parse_report(cut, "sonic-1")


def test_a_base_system_warning_is_listed_but_does_not_fail():
    cases = report.lynis_cases([_scan(_lynis_sample())], table=())
    assert [c.outcome for c in cases] == ["passed", "skipped"]
    assert "hardening index 57" in cases[0].output


def test_a_warning_about_the_blueprint_fails_unless_its_reason_is_declared():
    result = _scan(_lynis_sample(K3S_WARNING))
    failing = [c for c in report.lynis_cases([result], table=()) if c.outcome == "failure"]
    assert len(failing) == 1 and "FILE-7524" in failing[0].name and "k3s" in failing[0].message

    reason = accepted.Accepted("lynis", "FILE-7524", "/etc/rancher/k3s/k3s.yaml", "read by the agents' group")
    cases = report.lynis_cases([result], table=(reason,))
    assert not [c for c in cases if c.outcome == "failure"]
    assert any("read by the agents' group" in c.output for c in cases)
    # An entry for another file, or another test, accepts nothing.
    for other in (
        accepted.Accepted("lynis", "FILE-7524", "/etc/other", "x"),
        accepted.Accepted("lynis", "FILE-7000", "", "x"),
        accepted.Accepted("kube-hunter", "FILE-7524", "", "x"),
    ):
        assert [c.outcome for c in report.lynis_cases([result], table=(other,))].count("failure") == 1


def test_a_device_that_could_not_be_scanned_is_an_error():
    cases = report.lynis_cases([lynis.ScanResult("jetson-1", None, "jetson-1: ssh failed: refused", 0.1)])
    assert [(c.outcome, c.message) for c in cases] == [("error", "jetson-1: ssh failed: refused")]


def test_the_blueprints_names_are_matched_as_whole_words():
    assert accepted.blueprint_names_in("/var/lib/rancher/k3s/server/tls") == ["k3s", "rancher"]
    assert accepted.blueprint_names_in("edgefaas-gateway.service and NATS") == ["edgefaas", "nats"]
    assert accepted.blueprint_names_in("truncated signatures in /etc/k3sx and kernel modules") == []


def test_the_lynis_tree_carries_the_package_and_a_profile_that_keeps_the_device_as_it_is():
    with tarfile.open(fileobj=io.BytesIO(lynis.tree_archive()), mode="r:") as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert {"lynis/lynis", "lynis/include/consts", "lynis/db/languages/en", "lynis/default.prf"} <= set(
            members
        )
        assert all(m.uid == 0 and not m.mode & 0o022 for m in members.values())
        profile = tar.extractfile(members["lynis/custom.prf"]).read().decode()
    assert "refresh-repositories=no" in profile and "skip-upgrade-test=yes" in profile


# ---- kube-hunter --------------------------------------------------------------------------


def test_kube_hunter_findings_are_counted_by_severity():
    hunt = _hunt()
    assert hunt.report.by_severity() == {"high": 2, "medium": 1, "low": 1}
    assert hunt.report.services == ["Kubelet API (readonly) at 127.0.0.1:10255"]
    assert {f.vid for f in hunt.report.findings} == {"KHV002", "KHV044", "KHV043", "KHV052"}


def test_high_and_medium_findings_fail_unless_explained_and_low_ones_pass():
    cases = report.hunt_cases(_hunt(), table=())
    failed = sorted(c.name.split(":")[0] for c in cases if c.outcome == "failure")
    assert failed == ["high", "high", "medium"]
    assert [c.outcome for c in cases if c.name.startswith("low")] == ["passed"]

    reason = accepted.Accepted(
        "kube-hunter", "KHV002", ":10255", "the version is public in the release notes"
    )
    cases = report.hunt_cases(_hunt(), table=(reason,))
    assert len([c for c in cases if c.outcome == "failure"]) == 2
    explained = next(c for c in cases if "KHV002" in c.name)
    assert explained.outcome == "passed" and "release notes" in explained.output


def test_a_device_kube_hunter_did_not_reach_is_an_error():
    cases = report.hunt_cases(_hunt(), table=(), addresses=["127.0.0.1", "192.0.2.13"])
    errors = [c for c in cases if c.outcome == "error"]
    assert [c.name for c in errors] == ["kube-hunter reached 192.0.2.13"]


def test_a_report_that_is_not_kube_hunters_is_refused():
    with pytest.raises(kubehunter.KubeHunterError):
        kubehunter.parse_report("Started hunting\n")
    with pytest.raises(kubehunter.KubeHunterError, match="vulnerabilities"):
        kubehunter.parse_report('{"nodes": []}')


# ---- Debian security data -----------------------------------------------------------------

VERSION_PAIRS = [
    ("1.0", "1.0"),
    ("1.0-1", "1.0-2"),
    ("1:1.0", "2.0"),
    ("1.0~rc1", "1.0"),
    ("1.0", "1.0+deb12u1"),
    ("20230311+deb12u1", "20250419~deb12u2"),
    ("1.6-2.1+deb12u2", "1.6-2.1+deb12u3"),
    ("1.0.9-2+b6", "1.0.9-2+deb12u1"),
    ("2.6.1", "2.6.2"),
    ("1.2.3a", "1.2.3"),
    ("1.02", "1.2"),
    ("7.88.1-10+deb12u12", "7.88.1-10+deb12u5"),
    ("0:1.0", "1.0"),
    ("1.0-1~bpo12+1", "1.0-1"),
]


@pytest.mark.parametrize(("a", "b"), VERSION_PAIRS)
def test_versions_order_as_dpkg_orders_them(a, b):
    def sign(x: int) -> int:
        return (x > 0) - (x < 0)

    for left, right in ((a, b), (b, a)):
        expected = 0
        for op, value in (("lt", -1), ("gt", 1)):
            if subprocess.run(["dpkg", "--compare-versions", left, op, right]).returncode == 0:
                expected = value
        assert sign(debsecurity.compare_versions(left, right)) == expected, (left, right)


PACKAGES_INDEX = """\
Package: jq
Version: 1.6-2.1+deb12u3
Architecture: amd64

Package: curl
Version: 7.88.1-10+deb12u12
Architecture: amd64

Package: curl
Version: 7.88.1-10+deb12u5
Architecture: amd64
"""


def test_installed_packages_older_than_the_security_suite_are_pending():
    versions = debsecurity.parse_packages(PACKAGES_INDEX)
    assert versions == {"jq": "1.6-2.1+deb12u3", "curl": "7.88.1-10+deb12u12"}
    index = debsecurity.SecurityIndex("bookworm-security", "amd64", "today", versions)
    installed = [("jq", "1.6-2.1+deb12u2"), ("curl", "7.88.1-10+deb12u12"), ("bash", "5.2.15-2+b2")]
    assert debsecurity.pending_fixes(installed, index, blueprint=["jq"]) == [
        debsecurity.Pending("jq", "1.6-2.1+deb12u2", "1.6-2.1+deb12u3", True)
    ]


def test_the_device_query_answer_is_read():
    answer = "bookworm\narm64\nii \tjq\t1.6-2.1+deb12u2\tarm64\nrc \told\t1.0\tarm64\nii \tbash\t5.2\tarm64\n"
    assert debsecurity.parse_device_query(answer) == (
        "bookworm",
        "arm64",
        [("jq", "1.6-2.1+deb12u2"), ("bash", "5.2")],
    )
    with pytest.raises(ValueError):
        debsecurity.parse_device_query("")


# ---- SSH and reports ----------------------------------------------------------------------


def test_ssh_reaches_a_host_as_the_inventory_says():
    host = remote.Host(
        "sonic-1",
        {
            "ssh_hostname": "192.0.2.11",
            "ssh_user": "admin",
            "ssh_port": 2222,
            "ssh_key": "/keys/lab",
            "ssh_known_hosts_file": "/keys/known_hosts",
            "ssh_strict_host_key_checking": "yes",
        },
    )
    argv = remote.ssh_argv(host, "true")
    assert argv[-2:] == ["admin@192.0.2.11", "true"]
    for option in (["-p", "2222"], ["-i", "/keys/lab"], ["-o", "StrictHostKeyChecking=yes"]):
        assert any(argv[i : i + 2] == option for i in range(len(argv)))
    assert "UserKnownHostsFile=/keys/known_hosts" in argv
    assert remote.as_root(host, "id -u").startswith("sudo -n ")
    assert not remote.as_root(remote.Host("r", {"ssh_user": "root"}), "id -u").startswith("sudo")
    with pytest.raises(remote.RemoteError, match="password"):
        remote.ssh_argv(remote.Host("x", {"ssh_password": "secret"}), "true")


def test_the_junit_report_and_summary_carry_every_verdict(tmp_path):
    scans = report.Scans(
        lynis=[
            _scan(_lynis_sample(K3S_WARNING)),
            _scan(_lynis_sample().replace("hardening_index=57", "hardening_index=61"), "sonic-2"),
            lynis.ScanResult("jetson-1", None, "unreachable", 0.0),
        ],
        hunt=_hunt(),
        debian=[debsecurity.Listing("sonic-1", "bookworm", "amd64", 243, [], "today")],
        seconds=12.5,
        addresses=["127.0.0.1"],
        profiles={"sonic-1": "sonic", "sonic-2": "sonic", "jetson-1": "jetson"},
    )
    figures = report.write(scans, tmp_path, tmp_path / "scan.xml")
    root = ET.parse(tmp_path / "scan.xml").getroot()
    assert root.tag == "testsuites"
    assert [s.get("name") for s in root] == ["lynis", "kube-hunter", "debian-security"]
    # k3s warning + 2 high + 1 medium fail; the unreachable device is an error; base-system warnings skip
    assert (root.get("failures"), root.get("errors"), root.get("skipped")) == ("4", "1", "2")
    assert int(root.get("tests")) == sum(int(s.get("tests")) for s in root) == 6 + 5 + 1
    assert figures["devices"]["sonic-1"]["hardening_index"] == 57
    assert figures["hardening_index_by_profile"] == {"sonic": 57}  # no jetson index: none scanned
    assert figures["kube_hunter"]["by_severity"] == {"high": 2, "medium": 1, "low": 1}
    text = (tmp_path / "summary.txt").read_text()
    assert "sonic-1: index 57" in text and "jetson-1: not scanned: unreachable" in text
    assert "high 2, medium 1, low 1" in text and "lowest index per profile: sonic 57" in text


# ---- the tools' venvs ---------------------------------------------------------------------


def test_a_tools_venv_is_reused_while_its_pins_are_unchanged_and_remade_when_they_change(
    tmp_path, monkeypatch
):
    from edgefaas.scans import tools

    monkeypatch.setattr(tools, "REQUIREMENTS", tmp_path / "requirements")
    monkeypatch.setattr(tools, "VENVS", tmp_path / "venvs")
    monkeypatch.setenv("EDGEFAAS_CACHE", str(tmp_path / "cache"))
    (tmp_path / "requirements").mkdir()
    pins = tmp_path / "requirements" / "lftools.txt"
    pins.write_text("# nothing to install: the venv alone\n")

    made = tools.venv_bin("lftools")
    assert (made / "python").exists()
    marker = made.parent / "marker"
    marker.write_text("kept")
    assert tools.venv_bin("lftools") == made and marker.exists()

    pins.write_text("# other pins\n")
    assert tools.venv_bin("lftools") == made and not marker.exists()

    with pytest.raises(tools.ToolError, match="unknown tool"):
        tools.venv_bin("nmap")
    # A pin pip cannot install (a wheel file that is not there: no index is asked).
    pins.write_text(f"{tmp_path / 'missing-1.0-py3-none-any.whl'}\n")
    with pytest.raises(tools.ToolError, match="lftools"):
        tools.venv_bin("lftools")
