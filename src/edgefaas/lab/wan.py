"""The lab's `wan` device: a stand-in for the SD-WAN provider edge (PE) the switches peer with.

On a real site the provider edge is the operator's router and none of the blueprint's
deploys touch it. In the lab a Debian device stands in for it, configured entirely here,
when its root filesystem is laid (never by a deploy):

- Debian's FRR (zebra, staticd, bgpd, bfdd) with one BGP instance in WAN_ASN. It accepts
  every switch of the lab subnet as a dynamic eBGP peer (`bgp listen range <lab subnet>
  peer-group SWITCHES`, `remote-as external`), with BFD and the switches' short timers, so
  it needs no list of switches; the switches connect to it (their BGP_NEIGHBOR entries).
  It announces the WAN client subnet and passes on what the switches announce.
- IP forwarding on, inside the device's own network namespace only (a sysctl.d file the
  device's systemd applies there): it is the one lab device that routes by design. The lab
  machine's own ip_forward stays 0.
- A "WAN client": the network namespace WAN_CLIENT_NETNS inside the device, joined to it by
  a veth pair, with its own subnet (WAN_CLIENT_SUBNET) and a default route via the PE.
  Tests run `sudo ip netns exec wanclient curl ...` on the device to call what the
  switches announce, as a client beyond the WAN would.

The switches learn the client subnet from the PE over BGP (their return route).
"""

from __future__ import annotations

import ipaddress
import os
import textwrap
from pathlib import Path
from typing import Any

from edgefaas.lab.frr import daemons_file
from edgefaas.lab.spec import WAN_ASN, WAN_CLIENT_SUBNET, DeviceSpec, LabSpec

PROFILE = "wan"
WAN_CLIENT_NETNS = "wanclient"
# The PE's end of the veth pair (the client's end is eth0 in the client namespace).
WAN_CLIENT_LINK = "wan-client"
# The peer group every switch joins through the listen range, and the cloud servers' own.
PEER_GROUP = "SWITCHES"
CLOUD_PEER_GROUP = "CLOUD"
# The switches' timers (inventories/group_data/sonic.py bgp_keepalive / bgp_holdtime).
KEEPALIVE, HOLDTIME = 3, 9

CLIENT_SCRIPT = "usr/local/sbin/wan-client-lab"
CLIENT_UNIT = "wan-client-lab.service"
SYSCTL_FILE = "etc/sysctl.d/90-wan-pe-lab.conf"


def client_network() -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(WAN_CLIENT_SUBNET)


def pe_client_address() -> ipaddress.IPv4Address:
    """The PE's address on the client subnet: the client's default gateway."""
    return client_network().network_address + 1


def client_address() -> ipaddress.IPv4Address:
    return client_network().network_address + 2


def wan_devices(lab: LabSpec) -> list[DeviceSpec]:
    return [d for d in lab.devices if d.profile == PROFILE]


def sdwan_peers(lab: LabSpec) -> list[dict[str, Any]]:
    """The switches' inventory data `sdwan_peers` for this lab: every wan device."""
    return [{"name": d.name, "address": d.address, "asn": WAN_ASN} for d in wan_devices(lab)]


def cloud_sdwan_peers(lab: LabSpec) -> list[dict[str, Any]]:
    """The cloud servers' `sdwan_peers`: the provider edge, at its address on the cloud segment."""
    wan = lab.wan_device
    if wan is None or not any(d.profile == "cloud" for d in lab.devices):
        return []
    return [{"name": wan.name, "address": lab.cloud_gateway, "asn": WAN_ASN}]


def frr_conf(lab: LabSpec, dev: DeviceSpec) -> str:
    # The cloud segment (a bridge in this device's namespace, edgefaas.lab.network) is announced
    # to the switches as the WAN client's subnet is: their way to the cloud site.
    # The cloud's servers may peer too (their announcer's fallback routes), in a group of their own.
    cloud = cloud_peers = cloud_activate = ""
    if any(d.profile == "cloud" for d in lab.devices):
        cloud = f"\n          network {lab.cloud_network}"
        cloud_peers = (
            f"\n         neighbor {CLOUD_PEER_GROUP} peer-group"
            f"\n         neighbor {CLOUD_PEER_GROUP} remote-as external"
            f"\n         neighbor {CLOUD_PEER_GROUP} description lab cloud servers ({lab.cloud_network})"
            f"\n         neighbor {CLOUD_PEER_GROUP} timers {KEEPALIVE} {HOLDTIME}"
            f"\n         bgp listen range {lab.cloud_network} peer-group {CLOUD_PEER_GROUP}"
        )
        cloud_activate = (
            f"\n          neighbor {CLOUD_PEER_GROUP} activate"
            f"\n          neighbor {CLOUD_PEER_GROUP} soft-reconfiguration inbound"
        )
    return textwrap.dedent(
        f"""\
        ! Lab stand-in for the SD-WAN provider edge (edgefaas.lab.wan): laid by the lab,
        ! not by a deploy. Every switch on {lab.subnet} peers with it dynamically.
        frr defaults traditional
        hostname {dev.name}
        log syslog informational
        service integrated-vtysh-config
        !
        router bgp {WAN_ASN}
         bgp router-id {dev.address}
         bgp log-neighbor-changes
         no bgp default ipv4-unicast
         no bgp ebgp-requires-policy
         neighbor {PEER_GROUP} peer-group
         neighbor {PEER_GROUP} remote-as external
         neighbor {PEER_GROUP} description lab switches (dynamic, {lab.subnet})
         neighbor {PEER_GROUP} timers {KEEPALIVE} {HOLDTIME}
         neighbor {PEER_GROUP} bfd
         bgp listen range {lab.subnet} peer-group {PEER_GROUP}{cloud_peers}
         !
         address-family ipv4 unicast
          network {WAN_CLIENT_SUBNET}{cloud}
          neighbor {PEER_GROUP} activate
          neighbor {PEER_GROUP} soft-reconfiguration inbound{cloud_activate}
         exit-address-family
        exit
        !
        """
    )


# Applied by the device's systemd-sysctl inside its own network namespace (the lab's compat
# unit makes /proc/sys/net writable there first); the lab machine's settings are untouched.
SYSCTLS = """\
# Lab SD-WAN provider edge stand-in: it routes between the WAN client and the lab subnet.
net.ipv4.ip_forward = 1
"""


def client_script() -> str:
    net = client_network()
    return textwrap.dedent(
        f"""\
        #!/bin/sh
        # Lab stand-in (edgefaas.lab.wan): the WAN client, a network namespace behind this PE.
        set -e
        case "$1" in
        up)
            ip netns list | grep -qw {WAN_CLIENT_NETNS} || ip netns add {WAN_CLIENT_NETNS}
            if ! ip link show {WAN_CLIENT_LINK} >/dev/null 2>&1; then
                ip link add {WAN_CLIENT_LINK} type veth peer name eth0 netns {WAN_CLIENT_NETNS}
            fi
            ip addr replace {pe_client_address()}/{net.prefixlen} dev {WAN_CLIENT_LINK}
            ip link set {WAN_CLIENT_LINK} up
            ip -n {WAN_CLIENT_NETNS} link set lo up
            ip -n {WAN_CLIENT_NETNS} addr replace {client_address()}/{net.prefixlen} dev eth0
            ip -n {WAN_CLIENT_NETNS} link set eth0 up
            ip -n {WAN_CLIENT_NETNS} route replace default via {pe_client_address()}
            ;;
        down)
            ip link del {WAN_CLIENT_LINK} 2>/dev/null || true
            ip netns del {WAN_CLIENT_NETNS} 2>/dev/null || true
            ;;
        *)
            echo "usage: $0 up|down" >&2
            exit 2
            ;;
        esac
        """
    )


CLIENT_UNIT_TEXT = f"""\
[Unit]
Description=The WAN client network namespace {WAN_CLIENT_NETNS} behind the PE (lab stand-in)
After=systemd-networkd.service
Before=frr.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/{CLIENT_SCRIPT} up
ExecStop=/{CLIENT_SCRIPT} down

[Install]
WantedBy=multi-user.target
"""


def _user_ids(root: Path, user: str) -> tuple[int, int] | None:
    for line in (root / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user:
            return int(fields[2]), int(fields[3])
    return None


def _enable(root: Path, unit: str, path: str) -> None:
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / unit
    if not link.is_symlink():
        link.symlink_to(path)


def apply(root: Path, lab: LabSpec, dev: DeviceSpec) -> None:
    """Lay the PE's FRR, forwarding and WAN client into the device's root (before first boot)."""
    frr = root / "etc/frr"
    frr.mkdir(parents=True, exist_ok=True)
    (frr / "daemons").write_text(daemons_file("Lab SD-WAN provider edge stand-in (edgefaas.lab.wan)."))
    conf = frr / "frr.conf"
    conf.write_text(frr_conf(lab, dev))
    # FRR's own files belong to its user, as Debian's package leaves them.
    frr_ids = _user_ids(root, "frr")
    if frr_ids:
        os.chown(conf, *frr_ids)
    conf.chmod(0o640)
    sysctl = root / SYSCTL_FILE
    sysctl.parent.mkdir(parents=True, exist_ok=True)
    sysctl.write_text(SYSCTLS)
    script = root / CLIENT_SCRIPT
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(client_script())
    script.chmod(0o755)
    units = root / "etc/systemd/system"
    units.mkdir(parents=True, exist_ok=True)
    (units / CLIENT_UNIT).write_text(CLIENT_UNIT_TEXT)
    _enable(root, CLIENT_UNIT, f"/etc/systemd/system/{CLIENT_UNIT}")
    _enable(root, "frr.service", "/lib/systemd/system/frr.service")
