"""Inventory for a real lab: two SONiC switches and two Jetson Nanos.

Copy this file (e.g. to inventories/mylab.py), fill in the FILL-IN values, then:

    pyinfra -y inventories/mylab.py deploys/site.py
    pytest -m lab tests/integration --inventory inventories/mylab.py

Every value here is what the deploys and tests need to reach a device; everything else
(versions, ports, which tasks run where) lives in group_data/ and has lab-tested defaults.

Credentials from the environment: where EDGEFAAS_SSH_KEY is set (a private key file), every
device is reached with that key, and where EDGEFAAS_SSH_USER is set, as that user (one sudo-
capable account on every device). The Jenkinsfile sets both from the Jenkins credential named
by its LAB_CREDENTIALS parameter (withCredentials + sshUserPrivateKey), so no key or user has
to be written here for CI; by hand:

    EDGEFAAS_SSH_KEY=~/.ssh/lab_ci EDGEFAAS_SSH_USER=ci scripts/task k3s --inventory inventories/mylab.py
"""

import os

from edgefaas.deploy.inventory import check_groups

# From the environment (Jenkins credentials) where set, else the values below.
_env_key = os.environ.get("EDGEFAAS_SSH_KEY") or None
_env_user = os.environ.get("EDGEFAAS_SSH_USER") or None

# SSH as the switch's admin user (SONiC's default is `admin`); deploys use sudo.
_sonic_login = {
    "ssh_user": _env_user or "admin",
    "ssh_key": _env_key or "~/.ssh/id_ed25519",  # FILL IN: the key authorised on the switches
    # SONiC's management interface; K3S binds to it (node-ip / flannel-iface).
    "mgmt_interface": "eth0",
}
_jetson_login = {
    "ssh_user": _env_user or "nvidia",  # FILL IN: the user made at JetPack's first boot (needs sudo)
    "ssh_key": _env_key or "~/.ssh/id_ed25519",  # FILL IN
    "mgmt_interface": "eth0",
}

# The switches' routing (deploys/sonic.py): each switch's AS number, its loopback (the router
# id; one per switch) and its BGP neighbours on a subnet of its own interfaces. Left out, the
# defaults of group_data/sonic.py apply (65101, 65102...; 10.1.0.1, 10.1.0.2...; the other
# switches at their ssh addresses), which suits switches that meet on one management subnet.
_sonic_1_routing = {
    "bgp_asn": 65101,  # FILL IN
    "loopback_address": "10.1.0.1",  # FILL IN
    # FILL IN: address (on a subnet of the switch), AS number and name of each peer.
    "bgp_neighbors": [{"address": "192.0.2.12", "asn": 65102, "name": "sonic-2"}],
}
_sonic_2_routing = {
    "bgp_asn": 65102,  # FILL IN
    "loopback_address": "10.1.0.2",  # FILL IN
    "bgp_neighbors": [{"address": "192.0.2.11", "asn": 65101, "name": "sonic-1"}],
}

# The SD-WAN provider edge(s) every switch peers with over eBGP with BFD (deploys/sonic.py);
# the PE is the operator's router, configured by them to accept the switches (e.g. a listen
# range over their subnet) and to announce the WAN's client subnets. Empty: no WAN peering.
_sdwan_peers = [
    {"name": "pe-1", "address": "192.0.2.1", "asn": 65000},  # FILL IN: the PE's name, address, AS
]
for _routing in (_sonic_1_routing, _sonic_2_routing):
    _routing["sdwan_peers"] = _sdwan_peers

sonic = [
    # FILL IN: switch hostnames and their management addresses.
    ("sonic-1", {**_sonic_login, "ssh_hostname": "192.0.2.11", **_sonic_1_routing}),
    ("sonic-2", {**_sonic_login, "ssh_hostname": "192.0.2.12", **_sonic_2_routing}),
]
jetson = [
    # FILL IN: board hostnames and addresses (the boards must reach sonic-1 on 6443/tcp).
    ("jetson-1", {**_jetson_login, "ssh_hostname": "192.0.2.21"}),
    ("jetson-2", {**_jetson_login, "ssh_hostname": "192.0.2.22"}),
]
# The cloud site (Scenario 3.3; docs/edgefaas.md, Cloud and edge sites): a Debian or Ubuntu x86
# server, the K3S server of a cluster of its own, which publishes signed functions to this edge and
# serves the calls it sends on. Its `sdwan_peers` (its own PE, and the AS it is in: bgp_asn) let
# it announce the edge's WAN addresses as their fallback; leave them out where it does not peer.
# Empty: one site, no cloud.
cloud = [
    # FILL IN, or leave empty: the cloud server's hostname, address and login.
    # ("cloud-1", {"ssh_hostname": "198.51.100.10", "ssh_user": "ubuntu", "_sudo": True, "bgp_asn": 65200,
    #              "sdwan_peers": [{"name": "pe-9", "address": "198.51.100.1", "asn": 65000}]}),
]
# One K3S server per site (the SONiC gateway of the slides at the edge), every other device an agent.
k3s_server = [sonic[0], *cloud]
k3s_agent = [sonic[1], *jetson]

check_groups(
    {"sonic": sonic, "jetson": jetson, "cloud": cloud, "k3s_server": k3s_server, "k3s_agent": k3s_agent},
    source="inventories/real_lab_example.py",
)
