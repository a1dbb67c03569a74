"""K3S (SoW Task 1): a real cluster across devices: the server on `k3s_server`, agents on `k3s_agent`.

    pyinfra -y inventories/lab.py deploys/k3s.py

Air-gapped by default: the k3s binary, flannel's CNI plugin and the image tarballs pods
need come from the artifact directory (or URLs, by host data), checksums verified.
The token comes from host data or a file, is written 0600 on the devices and is never on
a command line or in the output. K3S binds to the management interface and, on SONiC,
opens its ports in the control-plane ACL and leaves SONiC's own Docker alone (it runs its
own containerd). A changed binary or configuration restarts servers first, then agents,
one host at a time, each waiting until its node works again.
"""

import shlex
from io import StringIO
from pathlib import Path

from pyinfra import host, inventory, logger
from pyinfra.api.exceptions import DeployError
from pyinfra.facts.files import File
from pyinfra.operations import files, server, systemd
from pyinfra.operations.util import any_changed

from edgefaas.backends.image_reference import registry_host
from edgefaas.deploy import hosts, nvidia, registry
from edgefaas.deploy.artifacts import artifact, install
from edgefaas.deploy.control_plane_acl import open_ports
from edgefaas.deploy.facts import (
    K3S_DATASTORE,
    PLAINTEXT_SECRETS_SQL,
    NvidiaContainerRuntime,
    PlaintextSecrets,
)
from edgefaas.deploy.secrets import cluster_token, gateway_secret
from edgefaas.deploy.sites import site_inventory
from edgefaas.nodeauth.tls import CA_PEM

TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "k3s"
BINARY = "/usr/local/bin/k3s"
DATA_DIR = "/var/lib/rancher/k3s"
# Where K3S looks for containerd, runc, the shim and CNI plugins (first on its PATH).
BIN_DIR = f"{DATA_DIR}/data/edgefaas/bin"
IMAGES_DIR = f"{DATA_DIR}/agent/images"
TOKEN_FILE = "/etc/rancher/k3s/token"
# Imported by servers only: the manifest below keeps its pod on a server.
METRICS_SERVER_IMAGE = "metrics-server-image"
# This k3s build has no embedded containerd: it runs the host's containerd (>= 1.6; Debian's
# package, or the one SONiC's Docker brings) as a separate instance with its own socket.
MULTICALL = ("crictl", "kubectl")
HOST_TOOLS = {
    "containerd": "/usr/bin/containerd",
    "ctr": "/usr/bin/ctr",
    "runc": "/usr/sbin/runc",
    "containerd-shim-runc-v2": "/usr/bin/containerd-shim-runc-v2",
    **{
        plugin: f"/usr/lib/cni/{plugin}"
        for plugin in ("host-local", "loopback", "bridge", "portmap", "bandwidth")
    },
}
# flannel's host-gw backend routes pod traffic over the management network and needs no
# port into the node: a SONiC switch's control-plane ACL opens TCP ports only.
ACL_PORTS = {
    "server": ["6443/tcp K3S API server", "10250/tcp kubelet"],
    "agent": ["10250/tcp kubelet"],
}


# This host's site is its cluster: its server is the site's (edgefaas.deploy.sites).
servers = site_inventory(host, inventory).get_group("k3s_server")
role = hosts.k3s_role(host)
if role is None:
    logger.info(f"{host.name}: in neither k3s_server nor k3s_agent: no K3S here")
else:
    server_host = servers[0]
    server_address = hosts.address(server_host)
    my_ip = hosts.own_address(host, "for K3S to bind to")
    backend = server_host.data.k3s_flannel_backend
    if backend not in ("host-gw", "vxlan"):
        raise DeployError(f"{host.name}: k3s_flannel_backend {backend!r}: choose 'host-gw' or 'vxlan'")
    if backend == "vxlan" and host.data.get("sonic_config_db"):
        raise DeployError(
            f"{host.name}: flannel's vxlan backend needs UDP 8472 into this switch, which SONiC's "
            "control-plane ACL cannot open (caclmgrd opens TCP ports only); use "
            "k3s_flannel_backend = 'host-gw'; nothing was changed on it"
        )

    files.directory(name="Create /etc/rancher/k3s", path="/etc/rancher/k3s", mode="755")
    token = files.put(
        name="Install the cluster token (0600)",
        src=StringIO(cluster_token(host) + "\n"),
        dest=TOKEN_FILE,
        mode="600",
    )
    binary = install(artifact("k3s"), BINARY, "k3s")
    files.directory(name="Create the K3S bin directory", path=BIN_DIR, mode="755")
    flannel = install(artifact("flannel-cni"), f"{BIN_DIR}/flannel", "flannel's CNI plugin")
    for name in MULTICALL:
        files.link(name=f"Link {name} to k3s", path=f"{BIN_DIR}/{name}", target=BINARY)
    # Not checked here: in a site.py run deploys/platform.py installs these after this file
    # is read; the readiness wait names what is missing if K3S cannot start.
    for name, target in HOST_TOOLS.items():
        files.link(name=f"Link {name}", path=f"{BIN_DIR}/{name}", target=target)
    for name in MULTICALL:
        files.link(name=f"Put {name} on PATH", path=f"/usr/local/bin/{name}", target=BINARY)

    files.directory(name="Create the air-gap images directory", path=IMAGES_DIR, mode="755")
    metrics_server = role == "server" and host.data.k3s_metrics_server
    server_images = [METRICS_SERVER_IMAGE] if metrics_server else []
    images = [
        install(artifact(name), f"{IMAGES_DIR}/{name}.tar", f"image {name}", mode="644")
        for name in [*host.data.k3s_airgap_images, *server_images]
    ]

    flannel_conf = files.template(
        name="Write the flannel CNI configuration",
        src=str(TEMPLATES / "flannel.conflist.j2"),
        dest="/etc/rancher/k3s/flannel.conflist",
        mode="644",
    )
    # K3S itself finds the runtime at start and gives containerd the `nvidia` handler. The
    # label carries the same fact to the scheduler (the RuntimeClass below selects on it), and
    # it being in config.yaml restarts K3S when the runtime comes or goes, so the handler
    # follows: K3S looks for the runtime only when it starts.
    nvidia_runtime = host.get_fact(NvidiaContainerRuntime)
    if "jetson" in host.groups and not nvidia_runtime:
        logger.info(f"{host.name}: no nvidia-container-runtime: pods of RuntimeClass nvidia stay off it")
    labels = [
        f"edgefaas.io/profile={host.data.device_profile}",
        f"edgefaas.io/device={host.name}",
        nvidia.node_label(nvidia_runtime),
    ]
    config = files.template(
        name="Write /etc/rancher/k3s/config.yaml",
        src=str(TEMPLATES / "config.yaml.j2"),
        dest="/etc/rancher/k3s/config.yaml",
        mode="600",
        role=role,
        token_file=TOKEN_FILE,
        server_address=server_address,
        api_port=host.data.k3s_api_port,
        node_ip=my_ip,
        interface=host.data.mgmt_interface,
        flannel_backend=backend,
        flannel_conf="/etc/rancher/k3s/flannel.conflist",
        node_labels=labels,
        pause_image=host.data.k3s_pause_image,
        tls_san=sorted({my_ip, host.name, str(server_address)}),
        disable=host.data.k3s_disable,
        disable_network_policy=host.data.k3s_disable_network_policy,
        kubelet_args=host.data.k3s_kubelet_args,
        node_monitor_grace_seconds=host.data.k3s_node_monitor_grace_seconds,
        node_loss_toleration_seconds=host.data.k3s_node_loss_toleration_seconds,
        kube_proxy_args=host.data.k3s_kube_proxy_args,
    )
    # Image functions: the node pulls from the site's registry with its account (deploys/registry.py).
    registries = files.template(
        name="Write /etc/rancher/k3s/registries.yaml (the site's registry, its CA and account; 0600)",
        src=str(TEMPLATES / "registries.yaml.j2"),
        dest="/etc/rancher/k3s/registries.yaml",
        mode="600",
        registry=registry_host(str(server_address), registry.PORT),
        account=registry.USER,  # not `user`: files.template takes that as the file's owner
        password=gateway_secret(host, registry.PASSWORD_SECRET, "registry password"),
        ca_file=str(CA_PEM),
    )
    containerd = files.template(
        name="Write K3S's containerd configuration template",
        src=str(TEMPLATES / "config.toml.tmpl.j2"),
        dest=f"{DATA_DIR}/agent/etc/containerd/config.toml.tmpl",
        create_remote_dir=True,
        restrict_oom_score_adj=host.data.k3s_restrict_oom_score_adj,
    )

    open_ports("k3s", ACL_PORTS[role], "K3S's ports")

    unit_name = "k3s" if role == "server" else "k3s-agent"
    unit = files.template(
        name=f"Install the {unit_name} unit",
        src=str(TEMPLATES / "k3s.service.j2"),
        dest=f"/etc/systemd/system/{unit_name}.service",
        role=role,
    )
    env = files.template(
        name=f"Install the {unit_name} environment",
        src=str(TEMPLATES / "k3s.service.env.j2"),
        dest=f"/etc/systemd/system/{unit_name}.service.env",
        mode="600",
        bin_dir=BIN_DIR,
    )
    wait = files.template(
        name="Install the readiness check",
        src=str(TEMPLATES / "edgefaas-k3s-wait.j2"),
        dest="/usr/local/sbin/edgefaas-k3s-wait",
        mode="755",
    )
    changed = any_changed(
        token, binary, flannel, flannel_conf, config, registries, containerd, unit, env, *images
    )
    rollout = [
        "systemctl daemon-reload",
        f"systemctl enable {unit_name}.service",
        # Type=notify with no start timeout: a node that cannot join would block a plain
        # restart for ever. The wait decides, and shows the unit's errors; it is given the run
        # before the restart, so that nothing the old process says or showed counts.
        f"before=$(systemctl show -p InvocationID --value {unit_name}.service) && "
        f"systemctl restart --no-block {unit_name}.service && "
        f'/usr/local/sbin/edgefaas-k3s-wait {role} {host.data.k3s_ready_timeout} "$before"',
    ]
    # Two operations at two places in this file: pyinfra runs the first on every server
    # before the second runs on any agent, and _serial takes their hosts one at a time,
    # each waiting until its node is Ready before the next restarts.
    if role == "server":
        server.shell(
            name="(Re)start the K3S server and wait until its node is Ready",
            commands=rollout,
            _serial=True,
            _if=changed,
        )
    if role == "agent":
        server.shell(
            name="(Re)start the K3S agent and wait until its node is Ready",
            commands=rollout,
            _serial=True,
            _if=changed,
        )
    # secrets-encryption encrypts what is written from then on: a cluster made before it keeps
    # its Secrets in clear until each is written again, which a replace of the same object does.
    # The command checks the datastore itself, so a re-deploy rewrites nothing. Turning it on
    # for a running cluster this way holds for one server on its SQLite datastore (K3S keeps
    # the generated key beside it); servers in HA must start with it from their first start.
    if role == "server":
        plaintext = host.get_fact(PlaintextSecrets)
        sql = shlex.quote(PLAINTEXT_SECRETS_SQL)
        server.shell(
            name="Encrypt the Secrets stored before secrets-encryption was on (rewrite each)",
            commands=[
                # A Secret updated meanwhile makes replace fail on its version: a pass rewrites the rest.
                f"for attempt in 1 2 3 4 5; do left=$(sqlite3 -readonly {K3S_DATASTORE} {sql}); "
                '[ -z "$left" ] && exit 0; '
                "kubectl get secrets --all-namespaces -o json | kubectl replace -f - >/dev/null; "
                "sleep 1; done; "
                'echo "Secrets still stored in clear: $left" >&2; exit 1'
            ],
            _if=lambda: bool(plaintext) or config.did_change(),
        )
    systemd.service(
        name=f"Keep {unit_name} enabled and running",
        service=f"{unit_name}.service",
        running=True,
        enabled=True,
    )

    # The RuntimeClass is applied whatever the nodes have, as later K3S releases do for the
    # runtimes they detect: a cluster-wide object is harmless where no node has the handler.
    # Deciding from the other hosts' facts instead would make the server's deploy reach every
    # node, fail when one is down, and need rerunning when a Jetson joins. Each node says for
    # itself through its label, and the class's node selector keeps its pods on nodes that
    # have the handler: elsewhere a pod stays Pending with a reason instead of failing at
    # sandbox creation.
    if role == "server":
        files.template(
            name="Define the nvidia RuntimeClass (nodes with nvidia-container-runtime)",
            src=str(TEMPLATES / "nvidia-runtimeclass.yaml.j2"),
            dest=f"{DATA_DIR}/server/manifests/edgefaas-nvidia-runtimeclass.yaml",
            create_remote_dir=True,
            mode="600",
            runtime_class=nvidia.RUNTIME_CLASS,
            label=nvidia.NODE_LABEL,
        )

    # K3S's deploy controller applies what is in its manifests directory, and leaves what a
    # removed file made: taking metrics-server away deletes its objects first, or the metrics
    # API would stay registered with nothing answering it.
    metrics_manifest = f"{DATA_DIR}/server/manifests/edgefaas-metrics-server.yaml"
    if metrics_server:
        files.template(
            name="Run metrics-server (kubectl top, the resource metrics API) on the K3S server",
            src=str(TEMPLATES / "metrics-server.yaml.j2"),
            dest=metrics_manifest,
            mode="600",
            image=f"docker.io/edgefaas/metrics-server:{artifact(METRICS_SERVER_IMAGE).version}",
            resolution=host.data.k3s_metrics_resolution,
        )
    elif role == "server" and host.get_fact(File, path=metrics_manifest):
        server.shell(
            name="Remove metrics-server and its metrics API",
            commands=[
                f"kubectl delete -f {metrics_manifest} --ignore-not-found",
                f"rm -f {metrics_manifest}",
            ],
        )

    # SoW Task 1.3: K3S's deploy controller applies what is in its manifests directory.
    two_pods = f"{DATA_DIR}/server/manifests/edgefaas-task13.yaml"
    if role == "server" and host.data.k3s_two_pods:
        runtime = artifact("runtime-image")
        files.template(
            name="Deploy Task 1.3's two pods on one SONiC device",
            src=str(TEMPLATES / "two-pods.yaml.j2"),
            dest=two_pods,
            mode="600",
            namespace="edgefaas-task13",
            node=host.data.get("k3s_two_pods_node") or host.name,
            image=f"docker.io/edgefaas/runtime:{runtime.version}",
        )
    elif role == "server" and host.get_fact(File, path=two_pods):
        server.shell(
            name="Remove Task 1.3's two pods",
            commands=[f"kubectl delete -f {two_pods} --ignore-not-found", f"rm -f {two_pods}"],
        )
