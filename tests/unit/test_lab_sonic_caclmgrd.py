"""The lab's caclmgrd stand-in: CTRLPLANE tables -> INPUT rules, with caclmgrd's semantics."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from edgefaas.lab.sonic import caclmgrd


def _external(port: str, src: str = "0.0.0.0/0", priority: str = "9999", **extra: str) -> dict:
    return {"PRIORITY": priority, "PACKET_ACTION": "ACCEPT", "L4_DST_PORT": port, "SRC_IP": src, **extra}


def _table(*services: str) -> dict:
    return {"type": "CTRLPLANE", "stage": "ingress", "services": list(services), "policy_desc": "x"}


def _acl_lines(rules: list[str]) -> list[str]:
    """The rules from ACL entries: between the fixed BGP accept and the TTL<2 accepts."""
    start = rules.index("-A INPUT -p tcp --dport 179 -j ACCEPT") + 1
    end = next(i for i, r in enumerate(rules) if "--ttl-lt 2" in r or "--hl-lt 2" in r)
    return rules[start:end]


def test_the_lab_profile_ssh_rule_opens_ssh_and_drops_the_rest():
    ruleset = caclmgrd.translate(
        {"SSH_ONLY": _table("SSH")},
        {"SSH_ONLY|RULE_1": {"PRIORITY": "9999", "PACKET_ACTION": "ACCEPT", "SRC_IP": "0.0.0.0/0"}},
    )
    assert ruleset.problems == []
    assert ruleset.v4[0] == "-A INPUT -s 127.0.0.1/32 -i lo -j ACCEPT"
    assert "-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT" in ruleset.v4
    assert "-A INPUT -p icmp --icmp-type echo-request -j ACCEPT" in ruleset.v4
    assert _acl_lines(ruleset.v4) == ["-A INPUT -p tcp -s 0.0.0.0/0 --dport 22 -j ACCEPT"]
    assert ruleset.v4[-1] == ruleset.v6[-1] == "-A INPUT -j DROP"


def test_no_rules_means_no_default_drop_as_in_caclmgrd():
    # A CTRLPLANE table without rules says neither IPv4 nor IPv6: caclmgrd skips it.
    ruleset = caclmgrd.translate({"SSH_ONLY": _table("SSH")}, {})
    assert "-A INPUT -j DROP" not in ruleset.v4 and ruleset.acl_rules == 0


def test_external_client_is_tcp_only_and_ip_protocol_is_not_read():
    ruleset = caclmgrd.translate(
        {"EDGEFAAS_K3S_8472": _table("EXTERNAL_CLIENT")},
        {"EDGEFAAS_K3S_8472|RULE_1": _external("8472", "10.0.0.0/24", IP_PROTOCOL="17")},
    )
    assert _acl_lines(ruleset.v4) == ["-A INPUT -p tcp -s 10.0.0.0/24 --dport 8472 -j ACCEPT"]
    assert not [r for r in ruleset.v4 if "-p udp" in r and "8472" in r]


def test_rules_run_in_descending_priority_compared_as_strings():
    rules = {
        "T|RULE_1": _external("6443", "10.0.0.1/32", priority="10"),
        "T|RULE_2": _external("6443", "10.0.0.2/32", priority="9"),
        "T|RULE_3": _external("6443", "10.0.0.3/32", priority="9999"),
    }
    lines = _acl_lines(caclmgrd.translate({"T": _table("EXTERNAL_CLIENT")}, rules).v4)
    # caclmgrd sorts the strings: "9999" > "9" > "10".
    assert [line.split(" -s ")[1].split()[0] for line in lines] == [
        "10.0.0.3/32",
        "10.0.0.2/32",
        "10.0.0.1/32",
    ]


def test_a_rule_without_a_port_takes_the_tables_port_as_caclmgrd_does():
    # caclmgrd's own test vector shape: an ACCEPT for one source, then a catch-all DROP.
    rules = {
        "EXTERNAL_CLIENT_ACL|DEFAULT_RULE": {"ETHER_TYPE": "2048", "PACKET_ACTION": "DROP", "PRIORITY": "1"},
        "EXTERNAL_CLIENT_ACL|RULE_1": _external("8081", "20.0.0.55/32", priority="9998"),
    }
    ruleset = caclmgrd.translate({"EXTERNAL_CLIENT_ACL": _table("EXTERNAL_CLIENT")}, rules)
    assert _acl_lines(ruleset.v4) == [
        "-A INPUT -p tcp -s 20.0.0.55/32 --dport 8081 -j ACCEPT",
        "-A INPUT -p tcp --dport 8081 -j DROP",
    ]


def test_a_port_range_is_one_rule_per_port():
    rule = {
        "PRIORITY": "9999",
        "PACKET_ACTION": "ACCEPT",
        "L4_DST_PORT_RANGE": "8081-8083",
        "SRC_IP": "1.2.3.0/24",
    }
    lines = _acl_lines(caclmgrd.translate({"T": _table("EXTERNAL_CLIENT")}, {"T|R": rule}).v4)
    assert [line.split("--dport ")[1].split()[0] for line in lines] == ["8081", "8082", "8083"]


def test_a_table_whose_rules_name_different_ports_is_reported_and_skipped():
    rules = {"K|RULE_1": _external("6443"), "K|RULE_2": _external("10250", priority="9998")}
    ruleset = caclmgrd.translate({"K": _table("EXTERNAL_CLIENT")}, rules)
    assert _acl_lines(ruleset.v4) == []
    assert any("ACL_TABLE|K" in p and "different destination ports" in p for p in ruleset.problems)


def test_malformed_rules_are_reported_and_skipped_and_the_rest_applied():
    rules = {
        "T|BAD_SRC": _external("9000", "10.0.0.300/32", priority="30"),
        "T|BAD_ACTION": {**_external("9000", priority="20"), "PACKET_ACTION": "MAYBE"},
        "T|NO_PRIORITY": {"PACKET_ACTION": "ACCEPT", "L4_DST_PORT": "9000", "SRC_IP": "10.0.0.1/32"},
        "T|BAD_PORT": _external("70000", priority="15"),
        "T|GOOD": _external("9000", "10.0.0.9/32", priority="10"),
    }
    ruleset = caclmgrd.translate(
        {"T": _table("EXTERNAL_CLIENT"), "U": _table("TELNET"), "NOT_CTRL": {"type": "L3"}}, rules
    )
    assert _acl_lines(ruleset.v4) == ["-A INPUT -p tcp -s 10.0.0.9/32 --dport 9000 -j ACCEPT"]
    reported = "\n".join(ruleset.problems)
    for name in ("BAD_SRC", "BAD_ACTION", "NO_PRIORITY", "BAD_PORT"):
        assert f"ACL_RULE|T|{name}" in reported
    assert "unrecognized service 'TELNET'" in reported


def test_a_rule_of_the_other_family_is_dropped_from_the_table():
    rules = {
        "T|A": _external("9000", "10.0.0.0/8", priority="20"),
        "T|B": {"PRIORITY": "10", "PACKET_ACTION": "ACCEPT", "L4_DST_PORT": "9000", "SRC_IPV6": "fd00::/8"},
    }
    ruleset = caclmgrd.translate({"T": _table("EXTERNAL_CLIENT")}, rules)
    assert len(_acl_lines(ruleset.v4)) == 1 and "fd00::/8" not in "\n".join(ruleset.v6)
    assert any("ACL_RULE|T|B" in p and "IPv6 rule in an IPv4 table" in p for p in ruleset.problems)


def test_services_ssh_snmp_ntp_and_ipv6_tables():
    rules = {"S|R": {"PRIORITY": "1", "PACKET_ACTION": "ACCEPT", "SRC_IPV6": "fd00::/64"}}
    ruleset = caclmgrd.translate({"S": _table("SNMP", "NTP")}, rules)
    assert _acl_lines(ruleset.v6) == [
        "-A INPUT -p tcp -s fd00::/64 --dport 161 -j ACCEPT",
        "-A INPUT -p udp -s fd00::/64 --dport 161 -j ACCEPT",
        "-A INPUT -p udp -s fd00::/64 --dport 123 -j ACCEPT",
    ]
    assert ruleset.v4[-1] == ruleset.v6[-1] == "-A INPUT -j DROP"


def test_interface_addresses_are_dropped_after_the_rules_and_bfd_opens_once_present():
    interfaces = {
        "LOOPBACK_INTERFACE": {"Loopback0": {}, "Loopback0|10.1.0.1/32": {}},
        "VLAN_INTERFACE": {"Vlan10|192.168.10.1/24": {}},
    }
    ruleset = caclmgrd.translate({}, {}, interfaces, bfd_allowed=True)
    assert "-A INPUT -d 10.1.0.1/32 -j DROP" in ruleset.v4
    assert "-A INPUT -d 192.168.10.1/32 -j DROP" in ruleset.v4
    assert ruleset.v4[1] == "-A INPUT -p udp -m multiport --dports 3784,4784 -j ACCEPT"
    # caclmgrd keeps BGP and BFD off the management port; the lab's only port is eth0.
    on_switch = caclmgrd.translate({}, {}, bfd_allowed=True, mgmt_port="eth0")
    assert "-A INPUT -p tcp --dport 179 ! -i eth0 -j ACCEPT" in on_switch.v4


def test_foreign_jumps_are_kept_at_the_head_of_input():
    listing = "\n".join(
        [
            "-P INPUT ACCEPT",
            "-A INPUT -m comment --comment kube -j KUBE-FIREWALL",
            "-A INPUT -p tcp --dport 22 -j ACCEPT",
            "-A INPUT -j DROP",
        ]
    )
    kept = caclmgrd.foreign_jumps(listing)
    assert kept == ["-A INPUT -m comment --comment kube -j KUBE-FIREWALL"]
    text = caclmgrd.restore_text(["-A INPUT -j DROP"], kept)
    assert text.splitlines() == [
        "*filter",
        ":INPUT ACCEPT [0:0]",
        "-F INPUT",
        kept[0],
        "-A INPUT -j DROP",
        "COMMIT",
    ]


def _in_netns(script: str) -> subprocess.CompletedProcess:
    return subprocess.run(["unshare", "-n", "sh", "-c", script], capture_output=True, text=True)


def test_the_rendered_rules_load_with_iptables_restore():
    if not shutil.which("iptables-restore") or _in_netns("true").returncode != 0:
        pytest.skip("needs iptables-restore and a network namespace (root)")
    rules = {
        "T|RULE_1": _external("6443", "10.0.0.0/24"),
        "T|RULE_2": {"PRIORITY": "1", "PACKET_ACTION": "DROP"},
    }
    ruleset = caclmgrd.translate(
        {"T": _table("EXTERNAL_CLIENT"), "SSH_ONLY": _table("SSH")},
        {**rules, "SSH_ONLY|RULE_1": {"PRIORITY": "9999", "PACKET_ACTION": "ACCEPT", "SRC_IP": "0.0.0.0/0"}},
        {"LOOPBACK_INTERFACE": {"Loopback0|10.1.0.1/32": {}}},
        bfd_allowed=True,
    )
    v4 = caclmgrd.restore_text(ruleset.v4).replace("'", "'\\''")
    v6 = caclmgrd.restore_text(ruleset.v6).replace("'", "'\\''")
    proc = _in_netns(
        "iptables -N KUBE-FIREWALL && iptables -A INPUT -j KUBE-FIREWALL && "
        f"printf '%s' '{v4}' | iptables-restore -w --noflush && "
        f"printf '%s' '{v6}' | ip6tables-restore -w --noflush && iptables -S INPUT"
    )
    assert proc.returncode == 0, proc.stderr
    listed = proc.stdout.splitlines()
    assert "-A INPUT -s 10.0.0.0/24 -p tcp -m tcp --dport 6443 -j ACCEPT" in listed
    assert listed[-1] == "-A INPUT -j DROP"
    assert not [
        line for line in listed if "KUBE-FIREWALL" in line
    ]  # restore_text keeps only what it is given
