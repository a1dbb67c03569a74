"""Deploys' port lines -> the owner's CTRLPLANE ACL table and rules in CONFIG_DB."""

import pytest

from edgefaas.deploy.control_plane_acl import (
    RETIRED_CHAIN,
    RetiredOpener,
    acl_entries,
    retired_opener_removal,
    table_name,
)
from edgefaas.sonic.config_db import parse_wanted

pytestmark = pytest.mark.unit


def test_one_table_per_owner_with_one_rule_per_line_in_priority_order():
    entries = acl_entries("k3s", ["6443/tcp K3S API server", "10250/tcp kubelet", "8472/udp flannel VXLAN"])
    table = entries["ACL_TABLE|EDGEFAAS_K3S"]
    assert table["type"] == "CTRLPLANE" and table["stage"] == "ingress"
    assert table["services"] == ["EXTERNAL_CLIENT"]
    assert "6443/tcp K3S API server" in table["policy_desc"]
    rules = {key: value for key, value in entries.items() if key.startswith("ACL_RULE|")}
    assert list(rules) == [f"ACL_RULE|EDGEFAAS_K3S|RULE_{n}" for n in (1, 2, 3)]
    assert [rule["PRIORITY"] for rule in rules.values()] == ["9999", "9998", "9997"]
    assert all(rule["PACKET_ACTION"] == "ACCEPT" for rule in rules.values())
    assert [rule["L4_DST_PORT"] for rule in rules.values()] == ["6443", "10250", "8472"]
    assert all(rule["SRC_IP"] == "0.0.0.0/0" for rule in rules.values())
    # TCP is EXTERNAL_CLIENT's own protocol; UDP says so in IP_PROTOCOL.
    assert "IP_PROTOCOL" not in rules["ACL_RULE|EDGEFAAS_K3S|RULE_1"]
    assert rules["ACL_RULE|EDGEFAAS_K3S|RULE_3"]["IP_PROTOCOL"] == "17"


def test_a_source_prefix_limits_the_rule():
    entries = acl_entries("nodeauth", ["7443/tcp from=10.77.0.11/32 node authentication agent"])
    rule = entries["ACL_RULE|EDGEFAAS_NODEAUTH|RULE_1"]
    assert rule["SRC_IP"] == "10.77.0.11/32" and rule["L4_DST_PORT"] == "7443"
    assert "node authentication agent" in entries["ACL_TABLE|EDGEFAAS_NODEAUTH"]["policy_desc"]


def test_entries_are_a_valid_wanted_document_in_redis_form():
    wanted = parse_wanted({"owned": acl_entries("triton", ["8000/tcp Triton http"])})
    assert wanted.owned["ACL_TABLE|EDGEFAAS_TRITON"]["services@"] == "EXTERNAL_CLIENT"


def test_no_lines_leave_an_empty_table():
    assert list(acl_entries("parsec", [])) == ["ACL_TABLE|EDGEFAAS_PARSEC"]


@pytest.mark.parametrize(
    "line",
    [
        "6443 K3S",
        "6443/sctp x",
        "70000/tcp x",
        "0/tcp x",
        "22/tcp from=10.0.0.1/33 x",
        "22/tcp from=10.0.0.1/24 x",
    ],
)
def test_bad_lines_are_refused_naming_them(line):
    with pytest.raises(ValueError, match="port line"):
        acl_entries("k3s", [line])


def test_owner_names_become_sonic_table_names():
    assert table_name("node-auth") == "EDGEFAAS_NODE_AUTH"
    with pytest.raises(ValueError, match="owner"):
        table_name("K3S API")


def test_retired_opener_is_found_and_removed_by_repeatable_commands():
    assert RetiredOpener().process(["/usr/local/sbin/edgefaas-cacl"]) is True
    assert RetiredOpener().process(["chain"]) is True
    assert RetiredOpener().process([]) is False
    commands = "\n".join(retired_opener_removal())
    assert "systemctl disable --now edgefaas-cacl.timer" in commands
    assert f"iptables -w -D INPUT -j {RETIRED_CHAIN}" in commands
    assert f"iptables -w -X {RETIRED_CHAIN}" in commands
    assert "rm -rf" in commands and "/etc/edgefaas/cacl.d" in commands
