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
# No Python among them: EdgeFaaS brings its own (deploys/platform.py, the Python bundle).
platform_packages = [
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

# K3S (SoW Task 1). The k3s binary, flannel's CNI plugin and the images pods need come
# from the artifact directory (air-gapped); nothing is pulled from a registry.
k3s_api_port = 6443
# The cluster token: given here (e.g. from a vault lookup), or read from this file on the
# machine running pyinfra, which the first deploy creates (random, 0600) if it is missing.
k3s_token = None
k3s_token_file = "~/.config/edgefaas/k3s-token"
# Add-ons this blueprint does not use at the edge (functions are reached through the
# EdgeFaaS gateway by node address, so CoreDNS is not needed either).
# K3S's packaged metrics-server is replaced by the blueprint's (k3s_metrics_server below):
# its image cannot be pulled here.
k3s_disable = ["traefik", "servicelb", "metrics-server", "local-storage", "coredns"]
# metrics-server on the K3S server, from the image built from its Go module: `kubectl top`
# and the resource metrics API an autoscaler reads. Samples every k3s_metrics_resolution.
k3s_metrics_server = True
k3s_metrics_resolution = "15s"
k3s_disable_network_policy = True
# Pod traffic between nodes: host-gw routes it over the management network, which the nodes
# share as one L2 segment, and needs no port into a node. vxlan needs UDP 8472 into every node,
# which SONiC's control-plane ACL cannot open (caclmgrd opens TCP only), so it suits clusters
# without switches, or nodes on different subnets whose switches' ACLs allow it by other means.
k3s_flannel_backend = "host-gw"
k3s_pause_image = "docker.io/edgefaas/pause:3.6"
# Image tarballs (artifact names) every node imports at start.
k3s_airgap_images = ["pause-image", "runtime-image"]
k3s_kubelet_args: list[str] = []
# How fast the cluster gives up on a node that stops answering (a board losing power, a cut
# link), and so how soon its pods run elsewhere. The node controller marks a node NotReady
# (and its pods not ready, so the gateway answers 503 at once instead of waiting on a dead
# pod) when it has heard nothing for the grace period; pods then leave it after the
# toleration, and run elsewhere within 30 s of the node's power loss. Kubernetes' defaults
# (40 s, then 300 s) moved pods only after about 6 minutes. 20 s spans two of the kubelet's
# 10 s lease renewals, so one late renewal on a loaded device does not mark it NotReady.
# A short partition therefore does move pods (they come back as placement allows); it never
# removes the node itself. Pods made before a change keep the toleration they were made with.
k3s_node_monitor_grace_seconds = 20
k3s_node_loss_toleration_seconds = 2
k3s_kube_proxy_args: list[str] = []
# Only for hosts that cannot lower OOM scores (containers without CAP_SYS_RESOURCE).
k3s_restrict_oom_score_adj = False
k3s_ready_timeout = 180
# SoW Task 1.3: two pods (one serving, one calling it) on one SONiC device, by default
# the K3S server; name another SONiC device here to move them.
k3s_two_pods = True
k3s_two_pods_node = None

# EdgeFaaS (SoW Task 3): the gateway on the K3S server and the functions it keeps deployed.
edgefaas_gateway_port = 8080
edgefaas_namespace = "edgefaas-fn"
edgefaas_admin_password = None  # None: the gateway makes one, root-only, in <data dir>/admin-password
edgefaas_gateway_url = None  # None: http://<K3S server node address>:<port>
# FuncA and FuncB on different kinds of device, so Task 3.3's chain crosses devices.
edgefaas_functions = {
    "FuncA": {"constraints": ["edgefaas.io/profile=sonic"], "limits": {"memory": "128Mi"}},
    "FuncB": {"constraints": ["edgefaas.io/profile=jetson"], "limits": {"memory": "128Mi"}},
    "FuncC": {"limits": {"memory": "128Mi"}},
    "system_info": {"limits": {"memory": "128Mi"}},
    # Demo 4: a Jetson carries the camera. Demo 3: inference on the Triton servers of
    # deploys/triton.py; TRITON_URLS (envVars) is filled in from the inventory when not given.
    "camera": {"constraints": ["edgefaas.io/profile=jetson"], "limits": {"memory": "256Mi"}},
    "face-expression": {"file": "face_expression.py", "limits": {"memory": "384Mi"}},
}
# Functions anyone may call without a license (the demos' browser calls these).
edgefaas_public_functions = ["system_info", "camera", "face-expression"]
# Extras of the EdgeFaaS package a device needs besides the client tools.
# "vision": OpenCV, TFLite and the Triton client, which the Triton models and the
# face-expression function use (deploys/triton.py); "nodeauth": certificate checks.
edgefaas_extras: list[str] = ["vision", "nodeauth"]

# Triton Inference Server (SoW Task 4, deploys/triton.py): on every SONiC and Jetson device.
triton_server = True
triton_http_port = 8000
triton_grpc_port = 8001
triton_metrics_port = 8002
# Models of templates/triton/models to serve, with their settings: instances per device, and
# face detection. scale_factor 1.2 / min_neighbors 3 cost about 0.55-0.6x of fer's 1.1 / 5 per
# 640x480 frame (`python -m edgefaas.perf.face_detection` prints the ratio and the faces each finds),
# and find small (60-80 px) faces less often: a camera watching people near it, not a crowd.
triton_models = {
    "face_expression": {"instances": 1, "detection": {"scale_factor": 1.2, "min_neighbors": 3}},
    "add_sub": {"instances": 1},
}
# None: GPU instance groups where the device has an NVIDIA GPU (/dev/nvidia0), else CPU.
triton_gpu = None
# True (per host): the same server runs as a K3S workload (a Deployment with host networking,
# pinned to the device) instead of a systemd service. The device must be a K3S node.
triton_as_k3s_workload = False
# Task 4.3: the two Triton test cases, K3S Jobs on two devices, each calling another's server.
triton_testcases = True

# Parsec (deploys/parsec.py) where host data says parsec_service (sonic.py, jetson.py).
parsec_service = False
parsec_authenticator = "UnixPeerCredentials"  # or "Direct" (clients then send an app name)
parsec_admins: list[str] = []  # uids (UnixPeerCredentials) or app names (Direct) allowed admin ops
parsec_log_level = "info"
parsec_thread_pool_size = 8
parsec_idle_listener_sleep_ms = 10
parsec_listener_timeout_ms = 200
# Tenant namespaces (deploys/parsec.py, on the K3S server): namespace -> the Parsec uid its pods
# must run as (the admission webhook of deploys/nodeauth.py refuses any other, and root).
# Unique uids, none 0. A namespace dropped from here is not deleted (its pods may hold data).
parsec_tenants: dict[str, int] = {"edgefaas-tenant-a": 20001, "edgefaas-tenant-b": 20002}
