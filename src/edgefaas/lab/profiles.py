"""What makes a lab device look like a SONiC switch or a Jetson board to the deploys.

Only what the deploys must read or respect is laid down; everything here stands in for
hardware or for SONiC's own daemons and is named so in the files themselves.

SONiC: /etc/sonic/sonic_version.yml (asic_type `vs`, SONiC's own virtual-switch
platform), /etc/sonic/config_db.json with DEVICE_METADATA and MGMT_INTERFACE, the
management port as eth0, and a control-plane ACL applied at boot the way caclmgrd does:
inbound traffic to any port not explicitly opened is dropped.

Jetson: /etc/nv_tegra_release (L4T R32.7.1, the Jetson Nano's last JetPack 4 release),
the `jetson` device label, and /usr/bin/nvidia-container-runtime as a stand-in that logs
each call and hands it to runc unchanged, so K3S finds an nvidia runtime and pods of the
`nvidia` RuntimeClass really go through that handler. There is no GPU.
"""

from __future__ import annotations

import hashlib
import json
import textwrap
from pathlib import Path

from edgefaas.lab.spec import DeviceSpec, LabSpec

# The ports SONiC's default control-plane ACL leaves open (SSH; ICMP is always allowed).
SONIC_DEFAULT_OPEN_TCP = (22,)

CACLMGRD_SCRIPT = """\
#!/bin/sh
# Lab stand-in for SONiC's caclmgrd: rebuilds the control-plane ACL at boot.
# Inbound traffic is dropped unless it is loopback, part of an established flow, ICMP,
# or aimed at a port SONiC opens by default. Deploys open their own ports in a chain
# of their own that is evaluated first (see deploys/platform.py).
set -e
iptables -w -N SONIC-CACL 2>/dev/null || iptables -w -F SONIC-CACL
iptables -w -A SONIC-CACL -i lo -j ACCEPT
iptables -w -A SONIC-CACL -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
iptables -w -A SONIC-CACL -p icmp -j ACCEPT
{open_rules}
iptables -w -A SONIC-CACL -j DROP
iptables -w -C INPUT -j SONIC-CACL 2>/dev/null || iptables -w -A INPUT -j SONIC-CACL
"""

CACLMGRD_UNIT = """\
[Unit]
Description=Control-plane ACL (lab stand-in for SONiC caclmgrd)
Before=network-pre.target ssh.service
Wants=network-pre.target
DefaultDependencies=no
After=local-fs.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/caclmgrd-lab

[Install]
WantedBy=multi-user.target
"""


def _mac(lab: str, device: str) -> str:
    digest = hashlib.sha1(f"{lab}/{device}".encode()).digest()
    # Locally administered, unicast.
    return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))


def sonic_config_db(lab: LabSpec, dev: DeviceSpec) -> dict:
    prefix = lab.network.prefixlen
    return {
        "DEVICE_METADATA": {
            "localhost": {
                "hostname": dev.name,
                "hwsku": "Force10-S6000",
                "platform": "x86_64-kvm_x86_64-r0",
                "mac": _mac(lab.name, dev.name),
                "type": "LeafRouter",
                "bgp_asn": "65100",
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
        open_rules = "\n".join(
            f"iptables -w -A SONIC-CACL -p tcp --dport {port} -j ACCEPT" for port in SONIC_DEFAULT_OPEN_TCP
        )
        script = root / "usr/local/sbin/caclmgrd-lab"
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_text(CACLMGRD_SCRIPT.format(open_rules=open_rules))
        script.chmod(0o755)
        unit = root / "etc/systemd/system/caclmgrd-lab.service"
        unit.write_text(CACLMGRD_UNIT)
        wants = root / "etc/systemd/system/multi-user.target.wants"
        wants.mkdir(parents=True, exist_ok=True)
        link = wants / "caclmgrd-lab.service"
        if not link.is_symlink():
            link.symlink_to("/etc/systemd/system/caclmgrd-lab.service")
    elif dev.profile == "jetson":
        (root / "etc/nv_tegra_release").write_text(NV_TEGRA_RELEASE)
        runtime = root / NVIDIA_RUNTIME
        runtime.parent.mkdir(parents=True, exist_ok=True)
        runtime.write_text(NVIDIA_RUNTIME_SCRIPT)
        runtime.chmod(0o755)
