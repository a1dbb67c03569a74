"""Deploys' port lines -> the owner's CTRLPLANE ACL table and rules in CONFIG_DB."""

import pytest

from edgefaas.deploy.control_plane_acl import (
    RETIRED_CHAIN,
    RetiredOpener,
    acl_entries,
    retired_opener_removal,
    table_name,
    table_prefix,
)
from edgefaas.sonic.config_db import parse_wanted

pytestmark = pytest.mark.unit


def test_one_table_per_port_with_one_rule_per_line_in_priority_order():
    entries = acl_entries("k3s", ["6443/tcp K3S API server", "10250/tcp kubelet", "8472/tcp node enrollment"])
    tables = {key: value for key, value in entries.items() if key.startswith("ACL_TABLE|")}
    # caclmgrd applies one destination port to all of a table's rules: a table per port.
    assert sorted(tables) == [
        "ACL_TABLE|EDGEFAAS_K3S_10250",
        "ACL_TABLE|EDGEFAAS_K3S_6443",
        "ACL_TABLE|EDGEFAAS_K3S_8472",
    ]
    for table in tables.values():
        assert table["type"] == "CTRLPLANE" and table["stage"] == "ingress"
        assert table["services"] == ["EXTERNAL_CLIENT"]
    assert tables["ACL_TABLE|EDGEFAAS_K3S_6443"]["policy_desc"] == "EdgeFaaS k3s: 6443/tcp K3S API server"
    rules = {key: value for key, value in entries.items() if key.startswith("ACL_RULE|")}
    first, second, third = (
        "ACL_RULE|EDGEFAAS_K3S_6443|RULE_1",
        "ACL_RULE|EDGEFAAS_K3S_10250|RULE_2",
        "ACL_RULE|EDGEFAAS_K3S_8472|RULE_3",
    )
    assert sorted(rules) == sorted([first, second, third])
    assert [rules[key]["PRIORITY"] for key in (first, second, third)] == ["9999", "9998", "9997"]
    assert [rules[key]["L4_DST_PORT"] for key in (first, second, third)] == ["6443", "10250", "8472"]
    assert all(rule["PACKET_ACTION"] == "ACCEPT" for rule in rules.values())
    assert all(rule["SRC_IP"] == "0.0.0.0/0" for rule in rules.values())
    # TCP is EXTERNAL_CLIENT's only protocol: no rule names one.
    assert not any("IP_PROTOCOL" in rule for rule in rules.values())


def test_a_udp_port_is_refused_because_caclmgrd_opens_tcp_only():
    with pytest.raises(ValueError, match="opens TCP ports only"):
        acl_entries("k3s", ["6443/tcp K3S API server", "8472/udp flannel VXLAN"])


def test_lines_naming_one_port_share_its_table():
    entries = acl_entries("edgefaas", ["9000/tcp from=10.0.0.5/32 agent", "9000/tcp from=10.0.0.6/32 agent"])
    assert sorted(entries) == [
        "ACL_RULE|EDGEFAAS_EDGEFAAS_9000|RULE_1",
        "ACL_RULE|EDGEFAAS_EDGEFAAS_9000|RULE_2",
        "ACL_TABLE|EDGEFAAS_EDGEFAAS_9000",
    ]
    assert entries["ACL_RULE|EDGEFAAS_EDGEFAAS_9000|RULE_2"]["SRC_IP"] == "10.0.0.6/32"


def test_a_source_prefix_limits_the_rule():
    entries = acl_entries("nodeauth", ["7443/tcp from=10.77.0.11/32 node authentication agent"])
    rule = entries["ACL_RULE|EDGEFAAS_NODEAUTH_7443|RULE_1"]
    assert rule["SRC_IP"] == "10.77.0.11/32" and rule["L4_DST_PORT"] == "7443"
    assert "node authentication agent" in entries["ACL_TABLE|EDGEFAAS_NODEAUTH_7443"]["policy_desc"]


def test_entries_are_a_valid_wanted_document_in_redis_form():
    wanted = parse_wanted({"owned": acl_entries("triton", ["8000/tcp Triton http"])})
    assert wanted.owned["ACL_TABLE|EDGEFAAS_TRITON_8000"]["services@"] == "EXTERNAL_CLIENT"


def test_no_lines_are_no_entries():
    assert acl_entries("parsec", []) == {}


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
    assert table_prefix("node-auth") == "EDGEFAAS_NODE_AUTH"
    assert table_name("node-auth", 8471) == "EDGEFAAS_NODE_AUTH_8471"
    with pytest.raises(ValueError, match="owner"):
        table_prefix("K3S API")


def test_retired_opener_is_found_and_removed_by_repeatable_commands():
    assert RetiredOpener().process(["/usr/local/sbin/edgefaas-cacl"]) is True
    assert RetiredOpener().process(["chain"]) is True
    assert RetiredOpener().process([]) is False
    commands = "\n".join(retired_opener_removal())
    assert "systemctl disable --now edgefaas-cacl.timer" in commands
    assert f"iptables -w -D INPUT -j {RETIRED_CHAIN}" in commands
    assert f"iptables -w -X {RETIRED_CHAIN}" in commands
    assert "rm -rf" in commands and "/etc/edgefaas/cacl.d" in commands
