"""The declared listener table and its checks (edgefaas.deploy.ports): what a device's sockets
and its control-plane ACL may be, and what they fail on."""

from __future__ import annotations

import pytest

from edgefaas.deploy.ports import (
    LISTENERS,
    AclRule,
    Listener,
    Owner,
    Socket,
    check_acl,
    check_listeners,
    is_loopback,
    parse_input_rules,
    parse_listing,
    table_problems,
    unit_of_cgroups,
)

pytestmark = pytest.mark.unit

# Lines as `ss -Hltnup` and the owner loop print them on a lab switch.
LISTING = """\
udp UNCONN 0      0      10.77.0.11%eth0:49154 0.0.0.0:* users:(("bfdd",pid=100,fd=22))
udp UNCONN 0      0              0.0.0.0:3784  0.0.0.0:* users:(("bfdd",pid=100,fd=11))
tcp LISTEN 0      511          127.0.0.1:6379  0.0.0.0:* users:(("redis-server",pid=103,fd=6))
tcp LISTEN 0      5              0.0.0.0:8472  0.0.0.0:* users:(("ld-linux-x86-64",pid=2928,fd=3))
tcp LISTEN 0      4096                 *:10250       *:* users:(("k3s",pid=7180,fd=233))
tcp LISTEN 0      128               [::]:22       [::]:* users:(("sshd",pid=107,fd=4))
tcp LISTEN 0      511              [::1]:6379     [::]:* users:(("redis-server",pid=103,fd=7))
tcp LISTEN 0      4096                 *:8001        *:* users:(("tritonserver",pid=5185,fd=7))
--owners--
100|frr|13:name=systemd:/system.slice/frr.service 0::/system.slice/frr.service
103|redis|0::/system.slice/redis-server.service
107|root|0::/system.slice/ssh.service
2928|edgefaas-nodeauth|0::/system.slice/edgefaas-nodeauth-server.service
5185|10001|4:memory:/kubepods/burstable/pod7a/cri 0::/system.slice/k3s-agent.service
7180|root|0::/system.slice/k3s.service
"""
SERVER_ROLES = {"all", "sonic", "k3s_server", "gateway", "database"}


def sockets() -> list[Socket]:
    return parse_listing(LISTING)


def one(protocol: str, address: str, port: int, unit: str, user: str, process: str = "p") -> Socket:
    return Socket(protocol, address, port, (Owner(process, 1, user, unit),))


def test_the_listing_gives_each_socket_its_address_port_process_unit_and_user():
    found = {(s.protocol, s.address, s.port): s.owners for s in sockets()}
    assert found[("udp", "10.77.0.11", 49154)] == (Owner("bfdd", 100, "frr", "frr.service"),)
    assert found[("tcp", "::", 22)] == (Owner("sshd", 107, "root", "ssh.service"),)
    assert found[("tcp", "::1", 6379)][0].unit == "redis-server.service"
    assert found[("tcp", "*", 8001)] == (Owner("tritonserver", 5185, "10001", "kubepods"),)
    assert len(found) == 8


def test_a_line_ss_did_not_print_like_that_is_an_error_not_a_skipped_socket():
    with pytest.raises(ValueError, match="unexpected ss line"):
        parse_listing("tcp LISTEN oops\n--owners--\n")


def test_units_come_from_the_unified_or_the_systemd_hierarchy_and_pods_are_kubepods():
    assert unit_of_cgroups("0::/system.slice/system-postgresql.slice/postgresql@15-main.service") == (
        "postgresql@15-main.service"
    )
    assert unit_of_cgroups("1:name=systemd:/system.slice/ssh.service 0::/") == "ssh.service"
    assert unit_of_cgroups("0::/kubepods.slice/kubepods-burstable.slice/x.scope") == "kubepods"
    assert unit_of_cgroups("") == "?"


def test_the_lab_switchs_listing_passes_the_table():
    assert check_listeners(sockets(), SERVER_ROLES) == []


def test_a_new_port_that_is_not_declared_fails():
    (problem,) = check_listeners([one("tcp", "0.0.0.0", 9999, "probe.service", "nobody")], SERVER_ROLES)
    assert (
        problem.startswith("undeclared listener: tcp 0.0.0.0:9999") and "probe.service as nobody" in problem
    )


def test_a_port_declared_for_another_role_is_undeclared_here():
    # The authentication agent's port belongs to K3S agents, not to the server.
    agent = one("tcp", "0.0.0.0", 8471, "edgefaas-nodeauth-agent.service", "edgefaas-nodeauth")
    assert check_listeners([agent], {"all", "k3s_agent"}) == []
    assert check_listeners([agent], SERVER_ROLES)[0].startswith("undeclared listener")


@pytest.mark.parametrize(
    ("unit", "user"),
    [("edgefaas-nodeauth-server.service", "root"), ("evil.service", "edgefaas-nodeauth")],
)
def test_a_declared_port_held_by_another_unit_or_user_fails(unit, user):
    (problem,) = check_listeners([one("tcp", "0.0.0.0", 8472, unit, user)], SERVER_ROLES)
    assert (
        problem.startswith("owner differs")
        and "edgefaas-nodeauth-server.service as edgefaas-nodeauth" in problem
    )


@pytest.mark.parametrize("address", ["0.0.0.0", "*", "::", "10.77.0.11"])
def test_a_loopback_only_port_bound_anywhere_else_fails(address):
    (problem,) = check_listeners([one("tcp", address, 6379, "redis-server.service", "redis")], SERVER_ROLES)
    assert problem.startswith(f"declared loopback-only, bound to {address}")
    assert (
        check_listeners([one("tcp", "127.0.0.1", 6379, "redis-server.service", "redis")], SERVER_ROLES) == []
    )


def test_a_socket_shared_by_processes_must_be_the_declared_owners_in_all_of_them():
    shared = Socket(
        "tcp",
        "0.0.0.0",
        8080,
        (Owner("python", 1, "edgefaas", "edgefaas-gateway.service"), Owner("sh", 2, "root", "other.service")),
    )
    assert check_listeners([shared], SERVER_ROLES)[0].startswith("owner differs")


def test_a_socket_whose_process_is_hidden_cannot_pass():
    hidden = Socket("tcp", "0.0.0.0", 8472, ())
    assert "no process" in check_listeners([hidden], SERVER_ROLES)[0]


def test_loopback_addresses():
    assert is_loopback("127.0.0.1") and is_loopback("127.0.0.53") and is_loopback("::1")
    assert not any(is_loopback(a) for a in ("0.0.0.0", "*", "::", "10.77.0.11"))


IPTABLES = """\
-P INPUT ACCEPT
-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes firewall" -j KUBE-PROXY-FIREWALL
-A INPUT -s 127.0.0.1/32 -i lo -j ACCEPT
-A INPUT -p udp -m multiport --dports 3784,4784 -j ACCEPT
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A INPUT -p icmp -m icmp --icmp-type 8 -j ACCEPT
-A INPUT -p udp -m udp --dport 67:68 -j ACCEPT
-A INPUT -p tcp -m tcp --dport 179 -j ACCEPT
-A INPUT -s 10.77.0.11/32 -p tcp -m tcp --dport 8471 -j ACCEPT
-A INPUT -p tcp -m tcp --dport 10250 -j ACCEPT
-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT
-A INPUT -d 10.1.0.2/32 -j DROP
-A INPUT -p tcp -m ttl --ttl-lt 2 -m tcp --dport 1025:65535 -j ACCEPT
-A INPUT -j DROP
"""
AGENT_ROLES = {"all", "sonic", "k3s_agent"}
PEERS = {
    "k3s_server": ["10.77.0.11"],
    "gateways": ["10.77.0.11", "10.77.0.12"],
    "other_gateways": ["10.77.0.11"],
}
LISTENING = {("tcp", 22), ("tcp", 179), ("tcp", 8471), ("tcp", 10250), ("udp", 3784), ("udp", 4784)}


def test_only_plain_port_accepts_are_read_from_the_input_chain():
    assert parse_input_rules(IPTABLES) == [
        AclRule("udp", (3784, 4784), "0.0.0.0/0"),
        AclRule("tcp", (179,), "0.0.0.0/0"),
        AclRule("tcp", (8471,), "10.77.0.11/32"),
        AclRule("tcp", (10250,), "0.0.0.0/0"),
        AclRule("tcp", (22,), "0.0.0.0/0"),
    ]


def test_an_acl_as_deployed_passes():
    assert check_acl(parse_input_rules(IPTABLES), AGENT_ROLES, PEERS, LISTENING) == []


def test_an_acl_that_admits_more_than_the_declared_peers_fails():
    rules = [*parse_input_rules(IPTABLES), AclRule("tcp", (8471,), "0.0.0.0/0")]
    (problem,) = check_acl(rules, AGENT_ROLES, PEERS, LISTENING)
    assert problem.startswith("ACL admits 0.0.0.0/0 to 8471/tcp, declared k3s_server only")
    rules = [*parse_input_rules(IPTABLES), AclRule("tcp", (8471,), "10.77.0.99/32")]
    assert check_acl(rules, AGENT_ROLES, PEERS, LISTENING)[0].startswith("ACL admits 10.77.0.99/32")


def test_an_acl_that_shuts_out_a_declared_peer_fails():
    rules = [r for r in parse_input_rules(IPTABLES) if r.ports != (8471,)]
    (problem,) = check_acl(rules, AGENT_ROLES, PEERS, LISTENING)
    assert problem.startswith("ACL does not admit 10.77.0.11/32 to 8471/tcp")
    # ... but a declared service that is not deployed on this device needs no opening.
    assert check_acl(rules, AGENT_ROLES, PEERS, LISTENING - {("tcp", 8471)}) == []


def test_an_acl_opening_an_undeclared_or_loopback_only_port_fails():
    rules = [
        *parse_input_rules(IPTABLES),
        AclRule("tcp", (6379,), "0.0.0.0/0"),
        AclRule("tcp", (9999,), "0.0.0.0/0"),
    ]
    problems = check_acl(rules, AGENT_ROLES, PEERS, LISTENING)
    assert "ACL opens 6379/tcp to 0.0.0.0/0: declared loopback-only" in problems
    assert "ACL opens 9999/tcp to 0.0.0.0/0: no listener is declared there" in problems


def test_the_table_itself_is_well_formed_and_says_why_for_every_row():
    assert table_problems() == []
    assert all(row.why and row.why != "placeholder" for row in LISTENERS)
    bad = Listener(("all",), "sctp", (5, 1), "x.service", "x", "loopback", ("any",), "")
    assert len(table_problems([bad])) == 3


def test_every_loopback_row_is_closed_in_the_acl_and_no_row_is_declared_twice():
    seen = set()
    for row in LISTENERS:
        for role in row.roles:
            key = (role, row.protocol, row.ports, row.owner)
            assert key not in seen, f"declared twice: {row}"
            seen.add(key)
        if row.reach == "loopback":
            assert row.acl is None, row


def test_ipv6_rules_admitting_a_peer_only_port_to_anyone_fail():
    v6 = parse_input_rules("-A INPUT -p tcp -m tcp --dport 8471 -j ACCEPT\n", any_source="::/0")
    assert v6 == [AclRule("tcp", (8471,), "::/0")]
    (problem,) = check_acl(v6, AGENT_ROLES, PEERS, ())
    assert problem.startswith("ACL admits ::/0 to 8471/tcp, declared k3s_server only")
    # An IPv6 rule for a port open to anyone is fine, and no IPv6 opening is required.
    assert (
        check_acl(
            parse_input_rules("-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT", "::/0"), AGENT_ROLES, PEERS, ()
        )
        == []
    )
