"""EdgeFaaS (SoW Task 3): gateways on the switches, the runtime image on every node, the functions.

    pyinfra -y inventories/lab.py deploys/edgefaas.py

Every K3S node gets the function runtime image (imported into K3S's containerd at once,
no K3S restart). Every gateway host (edgefaas.deploy.gateways: the group edgefaas_gateway,
else every SONiC switch) gets a gateway, active-active: any of them serves any call, deploy,
update or billing query with the same answer, because what they hold in common lives
outside them (edgefaas.deploy.shared_state): licenses and the ledger in PostgreSQL on the
database host (the K3S server unless edgefaas_database_host or edgefaas_database_url says
otherwise; one gateway alone keeps SQLite), queued calls in a NATS JetStream cluster of one
server per gateway host. A changed gateway restarts one switch at a time, its WAN
announcements withdrawn first. The functions from functions/ are deployed through the first
gateway's own API, only those whose code, placement, limits, environment or public flag
changed; FuncA and FuncB are placed on different kinds of device, so the chain
FuncA -> FuncB -> FuncC crosses devices (Task 3.3).

Why the gateway is a systemd service on the switch, not a K3S workload: it is the door
callers pay through, so it must keep answering and billing while K3S restarts (a K3S
upgrade, a node rejoining after its Parsec check); pods already running keep serving it
calls through the kube-proxy rules meanwhile. It lives next to Parsec and the
authentication service on the SONiC host. OpenFaaS's faasd runs its gateway outside
Kubernetes for the same reasons.

HTTPS only (edgefaas_gateway_tls, default True): each gateway's certificate comes from the
blueprint's CA (deploys/nodeauth.py runs it on the K3S server, its key in Parsec), for every name
a client reaches it at (its addresses, 127.0.0.1, its WAN addresses), issued by a oneshot unit
the deploy starts and a timer renews; every client in the project verifies it by that CA.

Cloud and edge sites (Scenario 3.3; edgefaas.deploy.collaboration): where the inventory holds a
cloud site (hosts of group `cloud`), every gateway is a site of the collaboration, the cloud's
publishing signed functions and serving offloaded calls, each edge's following it and sending
calls on; the cloud's catalogue key and CA reach the edges through this deploy, never the network.
A cloud with `sdwan_peers` also announces the edge's WAN addresses, behind the switches.

How it reaches Kubernetes: not with K3S's admin kubeconfig (root-only, cluster-admin)
but as its own ServiceAccount, allowed to manage Deployments, Services and ConfigMaps in
one namespace, to read nodes, and to read the Events that say why the node authentication
server removed a node (edgefaas.deploy.kube_account); gateways on other switches get a copy
of that account's kubeconfig aimed at the server's API. The gateway runs as the
unprivileged `edgefaas` user, with systemd hardening.

Settings (host data): edgefaas_functions and edgefaas_public_functions (in
inventories/group_data/all.py), and with defaults (edgefaas.deploy.settings) edgefaas_gateway_port,
edgefaas_namespace, edgefaas_admin_password (else one for the site, kept in
edgefaas_secrets_dir on the machine running pyinfra), edgefaas_gateway_url (what pods call a
gateway at), edgefaas_gateway_tls and edgefaas_gateway_tls_names, edgefaas_database*,
edgefaas_nats_*, edgefaas_idempotency_window, edgefaas_gateway_metrics_auth (/metrics for the admin only;
Prometheus then scrapes with the admin's password), edgefaas_site_objectives, edgefaas_site_poll
and edgefaas_wan_cloud_prepend (cloud and edge sites).
"""

import dataclasses
from io import StringIO
from pathlib import Path

from pyinfra import host, inventory, logger
from pyinfra.api.exceptions import DeployError
from pyinfra.operations import files, server, systemd
from pyinfra.operations.util import any_changed

from edgefaas.deploy import hosts
from edgefaas.deploy.artifacts import artifact
from edgefaas.deploy.collaboration import (
    SitePaths,
    cloud_bgp,
    cloud_side,
    cloud_wan,
    edge_side,
    site_environment,
)
from edgefaas.deploy.control_plane_acl import open_ports
from edgefaas.deploy.facts import InterfaceAddresses, K3sImage, OutOfDateFunctions
from edgefaas.deploy.functions import check_manifest, manifest, out_of_date, wanted_functions
from edgefaas.deploy.gateways import (
    database_plan,
    first_gateway,
    gateway_hosts,
    gateway_tls,
    gateway_url,
    is_gateway,
    k3s_server,
    queue_plan,
)
from edgefaas.deploy.kube_account import copy_from_server, service_account
from edgefaas.deploy.monitoring import monitoring_url
from edgefaas.deploy.secrets import gateway_secret
from edgefaas.deploy.server_certificate import CertifiedService, certificate_from_ca
from edgefaas.deploy.services import keep_running
from edgefaas.deploy.settings import setting
from edgefaas.deploy.shared_state import nats, postgresql
from edgefaas.deploy.sites import collaboration, site_inventory
from edgefaas.deploy.wan import PLAN_PATH, WanError, plan_wan
from edgefaas.deploy.wan import check_interfaces as check_wan_interfaces
from edgefaas.nodeauth.tls import CA_PEM

TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "edgefaas"
K3S_DATA_DIR = "/var/lib/rancher/k3s"
K3S_IMAGES_DIR = f"{K3S_DATA_DIR}/agent/images"
CONTAINERD_SOCKET = "/run/k3s/containerd/containerd.sock"
CTR = f"{K3S_DATA_DIR}/data/edgefaas/bin/ctr"  # linked by deploys/k3s.py
DATA_DIR = "/var/lib/edgefaas/gateway"
CONFIG_DIR = "/etc/edgefaas/gateway"
KUBECONFIG = f"{CONFIG_DIR}/kubeconfig"
ENVIRONMENT = f"{CONFIG_DIR}/environment"
RESTARTER = "/usr/local/sbin/edgefaas-gateway-restart"
WAN_PLAN = PLAN_PATH
# While it exists the announcer withdraws this switch's addresses (a rolling restart).
DRAIN_FILE = "/run/edgefaas/wan-drain"
RBAC = f"{CONFIG_DIR}/account.yaml"
FUNCTIONS_DIR = "/etc/edgefaas/functions"
MANIFEST = f"{FUNCTIONS_DIR}/functions.json"
ACCOUNT = "edgefaas-gateway"
# HTTPS (edgefaas_gateway_tls): the key made on the switch, the certificate from the blueprint's CA.
TLS_CERT = f"{DATA_DIR}/tls.crt"
TLS_KEY = f"{DATA_DIR}/tls.key"
SERVER_SECRET = f"{CONFIG_DIR}/server.secret"
CERTIFICATE_UNIT = "edgefaas-gateway-certificate"


is_node = hosts.k3s_role(host) is not None
if not is_node:
    logger.info(f"{host.name}: not a K3S node: no EdgeFaaS here")

# -- every K3S node: the function runtime image ------------------------------------------------
runtime = artifact("runtime-image")
runtime_ref = f"docker.io/edgefaas/runtime:{runtime.version}"
if is_node:
    # Where deploys/k3s.py puts it too (K3S imports that directory at start): the same file.
    image_file = f"{K3S_IMAGES_DIR}/runtime-image.tar"
    if runtime.url:
        files.download(
            name="Download the function runtime image",
            src=runtime.url,
            dest=image_file,
            sha256sum=runtime.sha256,
            mode="644",
        )
    else:
        files.put(name="Upload the function runtime image", src=runtime.path, dest=image_file, mode="644")
    if not host.get_fact(K3sImage, socket=CONTAINERD_SOCKET, ref=runtime_ref):
        server.shell(
            name=f"Import {runtime_ref} into K3S's containerd (no restart)",
            commands=[f"{CTR} --address {CONTAINERD_SOCKET} -n k8s.io images import {image_file}"],
        )

# -- the shared state: PostgreSQL on the database host, NATS on every gateway host ------------
# Each site (edgefaas.deploy.sites) has its own gateways and shared state; the SD-WAN plan
# below spans every switch, so that a clash between any two is refused.
site = site_inventory(host, inventory)
# Where the inventory holds a cloud site, each gateway is a site of the collaboration (3.3).
sites_plan = collaboration(host, inventory)
site_paths = SitePaths(CONFIG_DIR)
gateways = gateway_hosts(site)
database = database_plan(host, site)
queue = queue_plan(host, site)
gateway_addresses = [hosts.address(g) for g in gateways]
# Made (on the machine running pyinfra) only where the blueprint deploys the database itself.
database_password = (
    gateway_secret(host, "database-password", "database password") if database.host is not None else ""
)
# Planned for every switch at once, so a clash between two is refused before either is touched.
try:
    wan_plans = plan_wan([(h.name, h.data) for h in inventory.get_group("sonic", [])])
except WanError as exc:
    raise DeployError(f"the SD-WAN plan: {exc}") from None
if database.host is not None and database.host.name == host.name:
    postgresql(database, gateway_addresses, database_password)

# -- every gateway host: a gateway, active-active ----------------------------------------------
if is_gateway(host, site):
    user = host.data.edgefaas_user
    venv = host.data.edgefaas_venv
    namespace = setting(host, "edgefaas_namespace")
    port = int(setting(host, "edgefaas_gateway_port"))
    server_host = k3s_server(site)
    tls = gateway_tls(host)
    if tls and not server_host.data.get("parsec_service"):
        raise DeployError(
            f"{host.name}: the gateway's HTTPS certificate comes from the blueprint's CA, which runs on "
            f"the K3S server {server_host.name} with Parsec (deploys/nodeauth.py): set parsec_service = True "
            "there, or edgefaas_gateway_tls = False for plain HTTP"
        )
    pods_url = setting(host, "edgefaas_gateway_url") or gateway_url(host, hosts.address(first_gateway(site)))
    local_url = gateway_url(host, "127.0.0.1")
    ca_file = str(CA_PEM) if tls else ""
    password_file = f"{DATA_DIR}/admin-password"

    nats_token = gateway_secret(host, "nats-token", "NATS client token")
    nats_restart = nats(queue, nats_token, gateway_secret(host, "nats-route-password", "NATS route password"))

    # deploys/platform.py installs edgefaas[gateway] here (group_data/k3s_server.py, sonic.py).
    files.directory(
        name=f"Create the gateway's data directory {DATA_DIR} (700)",
        path=DATA_DIR,
        user=user,
        group=user,
        mode="700",
    )
    files.directory(name=f"Create {CONFIG_DIR}", path=CONFIG_DIR, user="root", group=user, mode="750")
    # One admin password for every gateway: a caller may land on any of them.
    password = files.put(
        name="Install the site's admin password (0600)",
        src=StringIO(
            gateway_secret(
                host, "gateway-admin-password", "admin password", host.data.get("edgefaas_admin_password")
            )
            + "\n"
        ),
        dest=password_file,
        user=user,
        group=user,
        mode="600",
    )

    checks = [f"create deployments -n {namespace}", "list nodes", "list events -n default"]
    if host.name == server_host.name:
        kubeconfig = service_account(
            what="gateway",
            template=TEMPLATES / "gateway-account.yaml.j2",
            rbac_file=RBAC,
            account=ACCOUNT,
            namespace=namespace,
            kubeconfig=KUBECONFIG,
            service_user=user,
            checks=checks,
        )
    open_ports("edgefaas", [f"{port}/tcp EdgeFaaS gateway"], f"the gateway's port {port}/tcp")

    # Licenses signed by a key held in Parsec (tamper-proof) where Parsec runs here.
    signer = setting(host, "edgefaas_license_signer")
    if signer not in ("parsec", "hmac"):
        raise DeployError(f"{host.name}: edgefaas_license_signer must be parsec or hmac, not {signer!r}")
    license_key = parsec_access = None
    if signer == "parsec":
        parsec_access = server.user(
            name=f"Let {user} use Parsec (group parsec-clients)",
            user=user,
            groups=["parsec-clients"],
            append=True,
        )
        # A key from the days of HMAC signing is a secret nothing uses any more: gone.
        files.file(name="Remove the old HMAC license key", path=f"{DATA_DIR}/license-key", present=False)
    else:
        # Every gateway verifies every other's tokens: one key for the site.
        license_key = files.put(
            name="Install the site's license-signing key (0600)",
            src=StringIO(gateway_secret(host, "license-key", "license key") + "\n"),
            dest=f"{DATA_DIR}/license-key",
            user=user,
            group=user,
            mode="600",
        )
    # The cloud's operations come first: an edge's copy of its catalogue key reads what they made.
    site_ops = []
    if sites_plan is not None and sites_plan.role == "cloud":
        site_ops = cloud_side(sites_plan, site_paths, user, venv, signer)
    elif sites_plan is not None:
        site_ops = edge_side(sites_plan, site_paths, user)
    # Below the server's account above: at run time the server has written what is copied.
    if host.name != server_host.name:
        kubeconfig = copy_from_server(
            what="gateway",
            server_host=server_host,
            kubeconfig=KUBECONFIG,
            api_url=f"https://{hosts.address(server_host)}:{server_host.data.get('k3s_api_port', 6443)}",
            service_user=user,
            checks=checks,
        )
    # The function API declared into the SD-WAN (edgefaas.deploy.wan): what this switch announces.
    wan = wan_plans.get(host.name)
    # A cloud peering with the WAN announces the same addresses, behind the edges (a fallback).
    cloud_wan_plan = cloud_wan(sites_plan, wan_plans)
    if cloud_wan_plan is not None:
        wan = cloud_wan_plan.plan
        cloud_bgp(cloud_wan_plan, hosts.address(host))
    if wan is not None:
        wan = dataclasses.replace(wan, ca_file=ca_file)
        check_wan_interfaces(wan, host.get_fact(InterfaceAddresses))
        wan_file = files.put(
            name=f"Write the WAN plan {WAN_PLAN} (anycast {wan.anycast}, {len(wan.functions)} functions)",
            src=StringIO(wan.render()),
            dest=WAN_PLAN,
            mode="644",
        )
        open_ports(
            "edgefaas-wan",
            [f"{wan.service_port}/tcp functions at their WAN addresses"],
            f"the functions' service port {wan.service_port}/tcp",
        )
    certificate = None
    if tls:
        # Every name a client reaches this gateway at: its own address, loopback (functions on this
        # switch, the announcer), the names the site gives, and its WAN addresses.
        names = [hosts.address(host), "127.0.0.1", host.name, hosts.node_name(host)]
        names += list(setting(host, "edgefaas_gateway_tls_names") or [])
        if wan is not None:
            names += [str(wan.anycast), *(str(f.address) for _, f in sorted(wan.functions.items()))]
        names = list(dict.fromkeys(names))
        certificate = certificate_from_ca(
            CertifiedService(
                what="the gateway",
                unit=CERTIFICATE_UNIT,
                templates=TEMPLATES,
                user=user,
                venv=venv,
                cert=TLS_CERT,
                key=TLS_KEY,
                secret_file=SERVER_SECRET,
                secret_group=user,
                secret_mode="640",
            ),
            names,
            server_host,
            data_dir=DATA_DIR,
        )
    environment = files.template(
        name="Write what the gateway shares with the others (database, queue; 0640)",
        src=str(TEMPLATES / "gateway.env.j2"),
        dest=ENVIRONMENT,
        user="root",
        group=user,
        mode="640",
        storage_url=database.url(database_password),
        nats_urls=",".join(queue.client_urls(host.name, nats_token)),
        nats_replicas=queue.replicas,
        idempotency_window=setting(host, "edgefaas_idempotency_window"),
        site_env=site_environment(sites_plan, site_paths, host),
    )
    unit = files.template(
        name="Install the edgefaas-gateway unit",
        src=str(TEMPLATES / "edgefaas-gateway.service.j2"),
        dest="/etc/systemd/system/edgefaas-gateway.service",
        service_user=user,
        venv=venv,
        kubeconfig=KUBECONFIG,
        namespace=namespace,
        runtime_image=runtime_ref,
        gateway_url=pods_url,
        data_dir=DATA_DIR,
        tls_cert=TLS_CERT if tls else "",
        tls_key=TLS_KEY,
        ca_file=ca_file,
        environment=ENVIRONMENT,
        license_signer=signer,
        wan_plan=WAN_PLAN if wan is not None else "",
        service_port=wan.service_port if wan is not None else 0,
        listen="0.0.0.0",
        port=port,
        metrics_auth=bool(setting(host, "edgefaas_gateway_metrics_auth")),
        # Where deploys/monitoring.py runs Prometheus (loopback only), the console plots from it.
        prometheus_url=monitoring_url(host, site),
        # The package the gateway runs: a new wheelhouse (deploys/platform.py) restarts it.
        # Taken from the artifact, not read from the device: in a site.py run this line is
        # evaluated before deploys/platform.py has uploaded anything.
        wheelhouse_sha256=artifact("edgefaas-wheelhouse").sha256,
    )
    restarter = files.template(
        name="Install the gateway's rolling restart (announcements withdrawn first)",
        src=str(TEMPLATES / "edgefaas-gateway-restart.sh.j2"),
        dest=RESTARTER,
        mode="755",
        local_url=local_url,
        ca_file=ca_file,
        drain_file=DRAIN_FILE,
        drain_seconds=3,
    )
    announcer = None
    if wan is not None:
        announcer = files.template(
            name="Install the edgefaas-announce unit",
            src=str(TEMPLATES / "edgefaas-announce.service.j2"),
            dest="/etc/systemd/system/edgefaas-announce.service",
            venv=venv,
            plan=WAN_PLAN,
            drain_file=DRAIN_FILE,
            wheelhouse_sha256=artifact("edgefaas-wheelhouse").sha256,
            frr_asn=cloud_wan_plan.plan.asn if cloud_wan_plan else None,
            prepend=cloud_wan_plan.prepend if cloud_wan_plan else 0,
        )
    # A new group takes effect only in a new process: joining parsec-clients restarts too.
    # Not the certificate: the gateway serves a renewed one by itself, without a restart.
    changes = [unit, environment, kubeconfig, password, license_key, parsec_access, nats_restart, *site_ops]
    restart = any_changed(*[op for op in changes if op is not None])
    # One switch at a time, so the others keep serving every call meanwhile.
    server.shell(
        name="Restart the gateway, one switch at a time (a new version, unit, account or shared state)",
        commands=[RESTARTER],
        _if=restart,
        _serial=True,
    )
    systemd.service(
        name="Keep the gateway enabled and running",
        service="edgefaas-gateway.service",
        running=True,
        enabled=True,
    )
    if announcer is not None:
        keep_running(
            "edgefaas-announce.service",
            "the announcer",
            any_changed(announcer, wan_file),
            "a new unit, package or WAN plan",
        )

# -- the functions, through the first gateway's API (the others share what it deploys) ---------
if is_gateway(host, site) and host.name == first_gateway(site).name:
    wanted = wanted_functions(host, site)
    files.directory(name=f"Create {FUNCTIONS_DIR}", path=FUNCTIONS_DIR, mode="755")
    for function in wanted:
        files.put(
            name=f"Upload function {function['service']}",
            src=function["path"],
            dest=f"{FUNCTIONS_DIR}/{function['file']}",
            mode="644",
        )
    files.put(
        name="Write the list of functions to keep deployed",
        src=StringIO(manifest(wanted)),
        dest=MANIFEST,
        mode="644",
    )
    # Asked of the gateway itself, so a function deleted or changed behind the deploy's back
    # is put right, and a second run with nothing new changes nothing.
    edgefaas = f"{venv}/bin/edgefaas"
    checked = host.get_fact(
        OutOfDateFunctions,
        edgefaas=edgefaas,
        url=local_url,
        password_file=password_file,
        wanted=check_manifest(wanted),
        ca_file=ca_file,
    )
    stale = out_of_date(wanted, checked)
    if stale:
        server.shell(
            name=f"Deploy or update {', '.join(stale)} through the gateway's API",
            commands=[
                f"{edgefaas} sync-functions --url {local_url} --password-file {password_file} "
                f"--manifest {MANIFEST}" + (f" --ca-file {ca_file}" if ca_file else "")
            ],
        )
