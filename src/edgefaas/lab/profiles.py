"""What makes a lab device look like a SONiC switch or a Jetson board to the deploys.

Only what the deploys must read or respect is laid down; everything here stands in for
hardware or for SONiC's own daemons and is named so in the files themselves.

SONiC: /etc/sonic/sonic_version.yml (asic_type `vs`, SONiC's own virtual-switch
platform), /etc/sonic/config_db.json with DEVICE_METADATA and MGMT_INTERFACE, the
management port as eth0, SONiC's database (Debian's redis-server with SONiC's layout,
CONFIG_DB loaded from config_db.json at boot), Debian's FRR with the daemons of SONiC's
bgp container, and the lab stand-ins for caclmgrd (the control-plane ACL from CONFIG_DB:
inbound traffic dropped unless a CTRLPLANE rule, SSH, ICMP, loopback or an established
flow allows it) and bgpcfgd (FRR's configuration from CONFIG_DB), from edgefaas.lab.sonic.

Jetson: /etc/nv_tegra_release (L4T R32.7.1, the Jetson Nano's last JetPack 4 release),
the `jetson` device label, and /usr/bin/nvidia-container-runtime as a stand-in that logs
each call and hands it to runc unchanged, so K3S finds an nvidia runtime and pods of the
`nvidia` RuntimeClass really go through that handler. There is no GPU.

WAN: a stand-in for the SD-WAN provider edge, laid whole by edgefaas.lab.wan (FRR peering
with every switch, IP forwarding in its own namespace, a WAN client namespace behind it).
"""

from __future__ import annotations

import hashlib
import json
import textwrap
from pathlib import Path

from edgefaas.lab import frr, wan
from edgefaas.lab.spec import DeviceSpec, LabSpec

SONIC_LIB = "/usr/local/lib/edgefaas-lab"
# The stand-ins and the database loader, run by the device's python3 (see edgefaas.lab.sonic).
SONIC_MODULES = ("sonic_db.py", "caclmgrd.py", "bgpcfgd.py")
SONIC_SOURCES = Path(__file__).parent / "sonic"

# SONiC's database container runs Redis with keyspace notifications and no persistence:
# CONFIG_DB comes from /etc/sonic/config_db.json at every boot.
SONIC_REDIS_CONF = """\
# SONiC's database (lab): the layout is /var/run/redis/sonic-db/database_config.json.
bind 127.0.0.1 -::1
port 6379
unixsocket /var/run/redis/redis.sock
unixsocketperm 777
databases 16
notify-keyspace-events AKE
save ""
appendonly no
dir /var/lib/redis
pidfile /run/redis/redis-server.pid
logfile ""
"""

SONIC_REDIS_DROPIN = """\
[Service]
ExecStart=
ExecStart=/usr/bin/redis-server /etc/redis/sonic.conf --supervised systemd --daemonize no
# The layout file lives in the runtime directory, written once per boot.
RuntimeDirectoryPreserve=yes
"""

SONIC_DB_UNIT = f"""\
[Unit]
Description=SONiC database layout and CONFIG_DB from /etc/sonic/config_db.json (lab stand-in for config-setup)
Requires=redis-server.service
After=redis-server.service
PartOf=redis-server.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/bin/python3 {SONIC_LIB}/sonic_db.py boot

[Install]
WantedBy=multi-user.target
"""

# Before the network comes up, the ACL of config_db.json as it was saved; the daemon then
# keeps INPUT in step with CONFIG_DB.
CACLMGRD_BOOT_UNIT = f"""\
[Unit]
Description=Control-plane ACL from /etc/sonic/config_db.json before the network (lab stand-in for caclmgrd)
Before=network-pre.target ssh.service
Wants=network-pre.target
DefaultDependencies=no
After=local-fs.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/bin/python3 {SONIC_LIB}/caclmgrd.py --from-file /etc/sonic/config_db.json

[Install]
WantedBy=multi-user.target
"""

CACLMGRD_UNIT = f"""\
[Unit]
Description=Control-plane ACL from CONFIG_DB (lab stand-in for SONiC caclmgrd)
Wants=sonic-db-lab.service
After=sonic-db-lab.service caclmgrd-lab-boot.service

[Service]
ExecStart=/usr/bin/python3 {SONIC_LIB}/caclmgrd.py
Restart=always
RestartSec=1

[Install]
WantedBy=multi-user.target
"""

BGPCFGD_UNIT = f"""\
[Unit]
Description=FRR configuration from CONFIG_DB (lab stand-in for SONiC bgpcfgd)
Wants=sonic-db-lab.service frr.service
After=sonic-db-lab.service frr.service

[Service]
ExecStart=/usr/bin/python3 {SONIC_LIB}/bgpcfgd.py
Restart=always
RestartSec=1

[Install]
WantedBy=multi-user.target
"""

# Debian's units the SONiC profile enables (the rootfs leaves them disabled), and its own.
SONIC_DEBIAN_UNITS = ("redis-server.service", "frr.service")
SONIC_LAB_UNITS = {
    "sonic-db-lab.service": SONIC_DB_UNIT,
    "caclmgrd-lab-boot.service": CACLMGRD_BOOT_UNIT,
    "caclmgrd-lab.service": CACLMGRD_UNIT,
    "bgpcfgd-lab.service": BGPCFGD_UNIT,
}


def _mac(lab: str, device: str) -> str:
    digest = hashlib.sha1(f"{lab}/{device}".encode()).digest()
    # Locally administered, unicast.
    return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))


# Each switch of a fabric has its own AS number; the lab numbers its switches from this base in
# spec order, as inventories/group_data/sonic.py derives them (bgp_asn_base + position).
LAB_ASN_BASE = 65100


def sonic_config_db(lab: LabSpec, dev: DeviceSpec) -> dict:
    prefix = lab.network.prefixlen
    switches = [d.name for d in lab.devices if d.profile == "sonic"]
    return {
        "DEVICE_METADATA": {
            "localhost": {
                "hostname": dev.name,
                "hwsku": "Force10-S6000",
                "platform": "x86_64-kvm_x86_64-r0",
                "mac": _mac(lab.name, dev.name),
                "type": "LeafRouter",
                "bgp_asn": str(LAB_ASN_BASE + switches.index(dev.name) + 1),
                "docker_routing_config_mode": "separated",
            }
        },
        "MGMT_INTERFACE": {f"eth0|{dev.address}/{prefix}": {"gwaddr": lab.gateway}},
        "MGMT_PORT": {"eth0": {"admin_status": "up", "alias": "eth0"}},
        "MGMT_VRF_CONFIG": {"vrf_global": {"mgmtVrfEnabled": "false"}},
        "ACL_TABLE": {
            "SSH_ONLY": {
                "type": "CTRLPLANE",
                "stage": "ingress",
                "services": ["SSH"],
                "policy_desc": "SSH_ONLY",
            }
        },
        # caclmgrd drops by default only once some rule exists, and a table without rules
        # opens nothing: this rule is what makes SSH the one port open from anywhere.
        "ACL_RULE": {
            "SSH_ONLY|RULE_1": {"PRIORITY": "9999", "PACKET_ACTION": "ACCEPT", "SRC_IP": "0.0.0.0/0"}
        },
    }


def sonic_version(lab: LabSpec) -> str:
    return textwrap.dedent(
        f"""\
        # Lab stand-in: a SONiC virtual switch (asic_type vs) on Debian bookworm.
        build_version: 'edgefaas-lab.202405'
        debian_version: '12'
        kernel_version: 'lab'
        asic_type: vs
        asic_subtype: 'vs'
        commit_id: 'lab-{lab.name}'
        branch: '202405'
        release: '202405'
        build_date: 'lab'
        build_number: 0
        built_by: edgefaas-lab
        sonic_os_version: 12
        """
    )


NV_TEGRA_RELEASE = (
    "# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t210ref, EABI: aarch64, "
    "DATE: Sat Feb 19 17:05:08 UTC 2022\n"
    "# Lab stand-in: no Tegra SoC, no GPU; the profile only tells deploys this is a Jetson.\n"
)


NVIDIA_RUNTIME = "usr/bin/nvidia-container-runtime"
# Each call to the stand-in, one line: the proof a pod went through the nvidia handler.
NVIDIA_RUNTIME_LOG = "/var/log/nvidia-container-runtime-lab.log"
NVIDIA_RUNTIME_SCRIPT = f"""\
#!/bin/sh
# Lab stand-in for nvidia-container-runtime (JetPack's NVIDIA Container Toolkit). There is
# no GPU here, so it adds no devices or libraries: it logs the call and runs runc with the
# very same arguments. K3S finds it as it finds the real one and gives containerd the
# `nvidia` handler; containers of RuntimeClass nvidia are created through this file.
echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) $*" >>{NVIDIA_RUNTIME_LOG} 2>/dev/null || true
exec /usr/sbin/runc "$@"
"""


def _enable(root: Path, unit: str, path: str) -> None:
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / unit
    if not link.is_symlink():
        link.symlink_to(path)


def _lay_sonic_services(root: Path) -> None:
    """SONiC's database, FRR and the lab stand-ins for config-setup, caclmgrd, bgpcfgd."""
    lib = root / SONIC_LIB.lstrip("/")
    lib.mkdir(parents=True, exist_ok=True)
    for name in SONIC_MODULES:
        (lib / name).write_text((SONIC_SOURCES / name).read_text())
    (root / "etc/redis").mkdir(parents=True, exist_ok=True)
    (root / "etc/redis/sonic.conf").write_text(SONIC_REDIS_CONF)
    dropin = root / "etc/systemd/system/redis-server.service.d"
    dropin.mkdir(parents=True, exist_ok=True)
    (dropin / "sonic.conf").write_text(SONIC_REDIS_DROPIN)
    (root / "etc/frr").mkdir(parents=True, exist_ok=True)
    (root / "etc/frr/daemons").write_text(
        frr.daemons_file(
            "Lab SONiC device: the daemons of SONiC's bgp container (zebra and staticd always run)."
        )
    )
    old_script = root / "usr/local/sbin/caclmgrd-lab"
    if old_script.exists():
        old_script.unlink()
    for unit in SONIC_DEBIAN_UNITS:
        _enable(root, unit, f"/lib/systemd/system/{unit}")
    for unit, text in SONIC_LAB_UNITS.items():
        (root / "etc/systemd/system" / unit).write_text(text)
        _enable(root, unit, f"/etc/systemd/system/{unit}")


def apply(root: Path, lab: LabSpec, dev: DeviceSpec) -> None:
    """Lay the device's profile into its root filesystem (before first boot)."""
    edgefaas = root / "etc/edgefaas"
    edgefaas.mkdir(parents=True, exist_ok=True)
    (edgefaas / "device-label").write_text(dev.profile + "\n")
    (edgefaas / "lab-device.json").write_text(
        json.dumps({"lab": lab.name, "device": dev.name, "profile": dev.profile, "roles": list(dev.roles)})
        + "\n"
    )
    if dev.profile == "sonic":
        sonic = root / "etc/sonic"
        sonic.mkdir(parents=True, exist_ok=True)
        (sonic / "sonic_version.yml").write_text(sonic_version(lab))
        (sonic / "config_db.json").write_text(json.dumps(sonic_config_db(lab, dev), indent=4) + "\n")
        _lay_sonic_services(root)
    elif dev.profile == "jetson":
        (root / "etc/nv_tegra_release").write_text(NV_TEGRA_RELEASE)
        runtime = root / NVIDIA_RUNTIME
        runtime.parent.mkdir(parents=True, exist_ok=True)
        runtime.write_text(NVIDIA_RUNTIME_SCRIPT)
        runtime.chmod(0o755)
    elif dev.profile == wan.PROFILE:
        wan.apply(root, lab, dev)
