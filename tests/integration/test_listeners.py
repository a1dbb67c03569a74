"""Least privilege, checked (issue 18): every listening socket on every device is declared.

    pytest -m lab tests/integration/test_listeners.py [--inventory inventories/mylab.py]

Each device's listening TCP and UDP sockets, with the unit and user that own them, are held
against the table in edgefaas.deploy.ports: an undeclared listener, another owner or user,
or a loopback-only port bound to a wider address fails. On SONiC switches the control-plane
ACL (the INPUT rules caclmgrd writes from the deploys' CONFIG_DB tables) must admit the
declared peers to each listening port and nobody else. Run after every task has deployed
(scripts/task's `console` task, the last), so that every service the blueprint starts is
there to be checked.
"""

from __future__ import annotations

import uuid

import pytest

from edgefaas.deploy.ports import (
    LISTING_COMMAND,
    acl_peers,
    check_acl,
    check_listeners,
    device_roles,
    parse_input_rules,
    parse_listing,
)
from tests.integration.support import wait_for

pytestmark = pytest.mark.devices("all")


def listeners(device):
    """The device's listening sockets; read again once if a process went between ss and ps."""
    for _ in range(2):
        sockets = parse_listing(device.host.check_output(LISTING_COMMAND))
        if all(owner.unit != "?" for socket in sockets for owner in socket.owners):
            break
    return sockets


def test_every_listener_is_declared_with_its_owner_user_and_reach(device, inventory):
    roles = device_roles(inventory.get_host(device.name), inventory)
    problems = check_listeners(listeners(device), roles)
    assert not problems, f"{device.name} (roles {sorted(roles)}):\n" + "\n".join(problems)


def test_the_control_plane_acl_admits_the_declared_peers_alone(device, inventory):
    """Both families; SONiC's own TTL<2 traceroute rule is outside it (edgefaas.deploy.ports)."""
    if "sonic" not in device.groups:
        pytest.skip("no control-plane ACL off SONiC: the services themselves choose whom they answer")
    host = inventory.get_host(device.name)
    roles = device_roles(host, inventory)
    peers = acl_peers(host, inventory)
    listening = {(socket.protocol, socket.port) for socket in listeners(device)}
    v4 = parse_input_rules(device.host.check_output("iptables -S INPUT"))
    problems = check_acl(v4, roles, peers, listening)
    # The deploys open IPv4 sources only: IPv6 must not admit anyone to a peers-only port.
    v6 = parse_input_rules(device.host.check_output("ip6tables -S INPUT"), any_source="::/0")
    problems += [f"IPv6: {problem}" for problem in check_acl(v6, roles, peers, ())]
    assert not problems, f"{device.name}:\n" + "\n".join(problems)


@pytest.mark.devices("k3s_server")
def test_a_new_port_nobody_declared_fails_the_check(device, inventory):
    """The check can fail: a listener started here for the test is reported with its unit and user."""
    unit = f"edgefaas-test-listener-{uuid.uuid4().hex[:8]}"
    port = 47999
    python = f"{device.data.get('edgefaas_venv') or '/opt/edgefaas/venv'}/bin/python"
    script = f"import socket,time; s=socket.socket(); s.bind(('0.0.0.0',{port})); s.listen(); time.sleep(300)"
    device.host.check_output(f'systemd-run --unit={unit} -p User=nobody {python} -c "{script}"')
    try:
        roles = device_roles(inventory.get_host(device.name), inventory)

        def flagged():
            found = [p for p in check_listeners(listeners(device), roles) if f":{port} " in p]
            return found or None

        (problem,) = wait_for(flagged, 30, f"the probe listener on port {port} to be listed")
        assert problem.startswith(f"undeclared listener: tcp 0.0.0.0:{port}")
        assert f"{unit}.service as nobody" in problem
    finally:
        device.host.run(f"systemctl stop {unit}.service; systemctl reset-failed {unit}.service 2>/dev/null")
    assert device.host.run(f"systemctl is-active {unit}.service").stdout.strip() in (
        "inactive",
        "unknown",
        "",
    )
