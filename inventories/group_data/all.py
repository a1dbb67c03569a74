"""Defaults for every device. Override per group (sonic.py, jetson.py...) or per host."""

from edgefaas.lab.paths import artifact_dir as _artifact_dir

# Devices are reached as a sudo-capable admin user, as on SONiC and JetPack; never as root.
_sudo = True

timezone = "Etc/UTC"
# Site NTP servers; empty keeps the distribution's default (lab devices share the lab
# machine's clock, so time sync is skipped there by systemd itself).
ntp_servers: list[str] = []

# Debian packages the task deploys rely on. On the virtual lab they are already in the
# rootfs (its devices have no route out); on a real device apt installs what is missing.
platform_packages = [
    "python3",
    "python3-venv",
    "iptables",
    "conntrack",
    "ipset",
    "socat",
    "curl",
    "jq",
    "ca-certificates",
    "kmod",
    "procps",
    "sqlite3",
    "runc",
    "containernetworking-plugins",
]

# Kernel settings K3S needs (kubelet, kube-proxy, flannel).
platform_sysctls = {
    "net.ipv4.ip_forward": 1,
    "net.ipv4.conf.all.forwarding": 1,
    "net.ipv6.conf.all.forwarding": 1,
    "net.bridge.bridge-nf-call-iptables": 1,
    "net.bridge.bridge-nf-call-ip6tables": 1,
    "fs.inotify.max_user_instances": 1024,
    "fs.inotify.max_user_watches": 524288,
}
platform_modules = ["overlay", "br_netfilter", "vxlan"]

# The system account EdgeFaaS services run as, and the group allowed to use them.
edgefaas_user = "edgefaas"

# Upstream artifacts (parsec, k3s, ...) and the EdgeFaaS wheelhouse come from this directory
# on the machine running pyinfra (`edgefaas lab build` fills it and writes manifest.json);
# EDGEFAAS_ARTIFACTS moves it. Devices never need to reach a package index. A single
# artifact can come from a URL the devices reach instead:
#   artifacts = {"parsec-service": {"url": "http://mirror.lab/parsec", "sha256": "..."}}
artifact_dir = str(_artifact_dir())
artifacts: dict[str, dict[str, str]] = {}

# Where the EdgeFaaS Python package (client tools, services) is installed on devices.
edgefaas_venv = "/opt/edgefaas/venv"
