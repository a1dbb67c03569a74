"""Remove K3S from every host of the inventory: everything deploys/k3s.py added.

    pyinfra -y inventories/lab.py deploys/k3s_uninstall.py

Stops the services and every container they started, unmounts what K3S mounted, removes
its network interfaces and iptables rules (SONiC's control-plane ACL and EdgeFaaS's
openings are kept), its files, units and data. The cluster token file on the machine
running pyinfra is kept, so a later deploy rejoins with the same token.
"""

from pyinfra import host
from pyinfra.facts.files import File
from pyinfra.operations import files, server, systemd

from edgefaas.deploy.control_plane_acl import close_ports

DATA = "/var/lib/rancher/k3s"

for unit in ("k3s", "k3s-agent"):
    if host.get_fact(File, path=f"/etc/systemd/system/{unit}.service"):
        systemd.service(
            name=f"Stop and disable {unit}", service=f"{unit}.service", running=False, enabled=False
        )

if host.get_fact(File, path="/usr/local/bin/k3s") or host.get_fact(
    File, path=f"{DATA}/agent/etc/containerd/config.toml.tmpl"
):
    server.shell(
        name="Stop K3S's containerd and every pod it ran",
        commands=[
            # containerd here is a separate instance: match it by K3S's socket, never SONiC's Docker.
            # The [c] keeps pkill from matching the shell that runs it.
            "pkill -f '[c]ontainerd .*-a /run/k3s/containerd/containerd.sock' || true",
            "pkill -9 -f '[c]ontainerd-shim-runc-v2 -namespace k8s.io' || true",
            "sleep 1",
        ],
    )
    server.shell(
        name="Unmount what K3S and its pods mounted",
        commands=[
            "awk '$2 ~ \"^(/run/k3s|/var/lib/kubelet|/run/netns/cni-|"
            + DATA
            + ")\" {print $2}' /proc/self/mounts"
            " | sort -r | xargs -r -n1 umount -l"
        ],
    )
    server.shell(
        name="Remove K3S's network interfaces and iptables rules (the control-plane ACL stays)",
        commands=[
            "for link in cni0 flannel.1 flannel-v6.1; do ip link del $link 2>/dev/null || true; done",
            "ip -o link show type veth | awk -F'[ @:]+' '$2 ~ /^veth/ {print $2}' | xargs -r -n1 ip link del",
            "iptables-save | grep -viE 'KUBE-|CNI-|FLANNEL' | iptables-restore",
        ],
    )

for path in (
    "/usr/local/bin/k3s",
    "/etc/systemd/system/k3s.service",
    "/etc/systemd/system/k3s.service.env",
    "/etc/systemd/system/k3s-agent.service",
    "/etc/systemd/system/k3s-agent.service.env",
    "/usr/local/sbin/edgefaas-k3s-wait",
):
    files.file(name=f"Remove {path}", path=path, present=False)
for path in ("/usr/local/bin/kubectl", "/usr/local/bin/crictl"):
    files.link(name=f"Remove the {path} link", path=path, present=False)
for path in ("/etc/rancher/k3s", DATA, "/var/lib/kubelet", "/var/lib/cni", "/run/flannel", "/run/k3s"):
    files.directory(name=f"Remove {path}", path=path, present=False)
close_ports("k3s", "K3S's ports")
systemd.daemon_reload(name="Reload systemd")
