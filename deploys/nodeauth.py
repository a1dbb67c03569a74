"""Edge-node certification (Scenario 2, Demo 1): the authentication server and agents.

    pyinfra -y inventories/lab.py deploys/nodeauth.py

After deploys/k3s.py and deploys/parsec.py (both services keep their keys in Parsec).

The K3S server gets the authentication server (`edgefaas-nodeauth-server`, HTTPS on port
8472, since enrollment secrets travel to it): its CA key and its challenge key are made
inside its Parsec, it runs as its own user with its
own Kubernetes account, and it certifies every K3S node that joins, or removes it. It also
serves the Parsec tenant admission webhook (HTTPS on 127.0.0.1:8473, a certificate from the
same CA), which this deploy registers with K3S for the tenant namespaces deploys/parsec.py
labels (edgefaas.parsec.tenancy).

The CA's certificate is published at /etc/edgefaas/ca.pem on the server and every K3S
agent (each agent fetches it once, trusting it only with the proof its enrollment secret
checks: edgefaas.nodeauth.enrollment.bootstrap_ca); every client verifies the server by it.

Every K3S agent gets an enrollment secret for its own name, enrolls (a certificate for
a key made inside its Parsec) and runs the authentication agent (`edgefaas-nodeauth-agent`,
port 8471), which answers the server's address alone (and, on SONiC, the control-plane
ACL opens the port to that address alone).

Admitting a device is adding it to the inventory and running this deploy; revoking one is
`edgefaas nodeauth revoke NODE` on the server (edgefaas.nodeauth.enrollment says how).
The enrollment key that derives every device's secret is taken from host data
`nodeauth_enrollment_key`, or from the file `nodeauth_enrollment_key_file` on the machine
running pyinfra, made on first use (like the K3S token).
"""

import shlex
from io import StringIO
from pathlib import Path

from pyinfra import host, inventory
from pyinfra.api.exceptions import DeployError
from pyinfra.operations import files, server
from pyinfra.operations.util import any_changed

from edgefaas.deploy import hosts
from edgefaas.deploy.artifacts import artifact
from edgefaas.deploy.control_plane_acl import open_ports
from edgefaas.deploy.facts import AdmissionWebhookCurrent, NodeCertificate, TrustsServer
from edgefaas.deploy.kube_account import service_account
from edgefaas.deploy.secrets import enrollment_key
from edgefaas.deploy.services import keep_running
from edgefaas.deploy.settings import setting
from edgefaas.deploy.sites import site_inventory, site_of
from edgefaas.nodeauth.admission import ADMISSION_PORT
from edgefaas.nodeauth.enrollment import ENROLL_PORT, enrollment_secret
from edgefaas.nodeauth.server import AGENT_PORT
from edgefaas.nodeauth.tls import CA_PEM

TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "nodeauth"
USER = "edgefaas-nodeauth"
CONFIG_DIR = "/etc/edgefaas/nodeauth"
STATE_DIR = "/var/lib/edgefaas/nodeauth"
KEY_FILE = f"{CONFIG_DIR}/enrollment.key"
SECRET_FILE = f"{CONFIG_DIR}/enrollment.secret"
KUBECONFIG = f"{CONFIG_DIR}/kubeconfig"
ACCOUNT = "edgefaas-nodeauth"

# The authentication server of this host's site (edgefaas.deploy.sites) certifies it.
servers = site_inventory(host, inventory).get_group("k3s_server")
role = hosts.k3s_role(host)
if role is not None:
    if not host.data.get("parsec_service"):
        raise DeployError(
            f"{host.name}: node certification keeps its keys in Parsec: set parsec_service = True "
            "for this host (inventories/group_data) and run deploys/parsec.py first"
        )
    if not servers:
        raise DeployError(
            f"{host.name}: site {site_of(host)!r} has no k3s_server host to run the authentication server"
        )
    venv = host.data.edgefaas_venv
    server_host = servers[0]
    server_url = f"https://{hosts.address(server_host)}:{ENROLL_PORT}"
    wheelhouse = artifact("edgefaas-wheelhouse").sha256

    server.user(
        name=f"Create the {USER} service user (Parsec client)",
        user=USER,
        groups=["parsec-clients"],
        system=True,
        shell="/usr/sbin/nologin",
        home=STATE_DIR,
        create_home=False,
    )
    files.directory(name=f"Create {CONFIG_DIR}", path=CONFIG_DIR, user="root", group=USER, mode="750")
    files.directory(name=f"Create {STATE_DIR} (700)", path=STATE_DIR, user=USER, group=USER, mode="700")
    if role == "agent":
        # Before the server is asked anything: the secret also proves the server's CA to this node.
        files.put(
            name="Install this node's enrollment secret (0640, the agent's user reads it)",
            src=StringIO(enrollment_secret(enrollment_key(host), hosts.node_name(host)) + "\n"),
            dest=SECRET_FILE,
            user="root",
            group=USER,
            mode="640",
        )

# -- the K3S server: the authentication server ----------------------------------------------------
if role == "server":
    key = files.put(
        name="Install the enrollment key (0640, the server's user reads it)",
        src=StringIO(enrollment_key(host).decode() + "\n"),
        dest=KEY_FILE,
        user="root",
        group=USER,
        mode="640",
    )
    kubeconfig = service_account(
        what="authentication server",
        template=TEMPLATES / "account.yaml.j2",
        rbac_file=f"{CONFIG_DIR}/account.yaml",
        account=ACCOUNT,
        namespace="kube-system",
        kubeconfig=KUBECONFIG,
        service_user=USER,
        checks=[
            "patch nodes",
            "delete nodes",
            "create pods --subresource=eviction",
            "create events -n default",
            "get namespaces",
        ],
    )
    open_ports("nodeauth", [f"{ENROLL_PORT}/tcp node enrollment"], f"node enrollment {ENROLL_PORT}/tcp")
    unit = files.template(
        name="Install the edgefaas-nodeauth-server unit",
        src=str(TEMPLATES / "edgefaas-nodeauth-server.service.j2"),
        dest="/etc/systemd/system/edgefaas-nodeauth-server.service",
        service_user=USER,
        venv=venv,
        kubeconfig=KUBECONFIG,
        state_dir=STATE_DIR,
        key_file=KEY_FILE,
        exempt=[hosts.node_name(host)],
        port=ENROLL_PORT,
        # The names agents and this host's own clients reach the endpoint at, for its certificate.
        tls_names=list(dict.fromkeys([hosts.address(host), "127.0.0.1", hosts.node_name(host), host.name])),
        agent_port=AGENT_PORT,
        admission_port=ADMISSION_PORT,
        interval=setting(host, "nodeauth_interval"),
        recheck=setting(host, "nodeauth_recheck"),
        grace=setting(host, "nodeauth_grace"),
        clock_tolerance=setting(host, "nodeauth_clock_tolerance_s"),
        wheelhouse_sha256=wheelhouse,
    )
    files.directory(
        name="Remove the TLS key files earlier versions kept (the server holds its keys in memory)",
        path=f"{STATE_DIR}/server-tls",
        present=False,
    )
    files.directory(
        name="Remove the webhook's TLS key file earlier versions kept",
        path=f"{STATE_DIR}/admission-tls",
        present=False,
    )
    restart = any_changed(unit, key, kubeconfig)
    keep_running(
        "edgefaas-nodeauth-server.service",
        "the authentication server",
        restart,
        "a new version, unit, key or account",
    )

# -- every K3S node: the server answers ----------------------------------------------------------
# One operation on every node, from one line: pyinfra orders each host's operations and joins
# the hosts' orders where they share one, so this keeps the agents' enrollment after the
# server's start, and tells from each agent that the ACL lets it reach the server.
if role is not None:
    needs_certificate = role == "agent" and not host.get_fact(
        NodeCertificate,
        user=USER,
        venv=venv,
        server_url=server_url,
        secret_file=SECRET_FILE,
        node=hosts.node_name(host),
        state_dir=STATE_DIR,
        ca_file=str(CA_PEM),
    )
    ca_trusted = host.get_fact(TrustsServer, ca_file=str(CA_PEM), server_url=server_url)
    if role == "server":
        # The CA certificate the server made at its first start, published for this host's clients.
        wait = (
            f"{venv}/bin/edgefaas nodeauth export-ca --state-dir {STATE_DIR} --out {CA_PEM} >/dev/null "
            f"&& curl -fsS -o /dev/null --cacert {CA_PEM} {server_url}/v1/ca"
        )
    else:
        wait = (
            f"{venv}/bin/edgefaas nodeauth trust --server-url {server_url} --secret-file {SECRET_FILE} "
            f"--node {shlex.quote(hosts.node_name(host))} --out {CA_PEM} >/dev/null"
        )
    server.shell(
        name=f"Wait until the authentication server answers at {server_url}, and trust its CA",
        commands=[
            f"for i in $(seq 120); do ( {wait} ) 2>/dev/null && exit 0; sleep 0.5; done; "
            f"echo 'no answer from the authentication server at {server_url} in 60 s' >&2; "
            f"{wait}; "
            "journalctl -u edgefaas-nodeauth-server -n 30 --no-pager >&2 2>/dev/null; exit 1"
        ],
        # The server waits for itself after a restart; an agent, when it has to enroll; both when
        # the CA they hold does not verify the server (a first deploy, a new CA key).
        _if=lambda: not ca_trusted or (restart() if role == "server" else needs_certificate),
    )

# -- the K3S server: the Parsec tenant webhook, registered once the server answers ----------------
if role == "server":
    webhook_current = host.get_fact(AdmissionWebhookCurrent, venv=venv, ca_file=str(CA_PEM))
    server.shell(
        name="Register the Parsec tenant admission webhook (trusting the server's CA)",
        commands=[
            f"config=$({venv}/bin/edgefaas nodeauth admission-config --ca-file {CA_PEM}) && "
            'printf "%s\n" "$config" | kubectl apply -f -'
        ],
        _if=lambda: not webhook_current,
    )

# -- every K3S agent: its enrollment and the authentication agent ---------------------------------
if role == "agent":
    node = hosts.node_name(host)
    if needs_certificate:
        server.shell(
            name=f"Enroll {node}: a certificate for its Parsec-held key, from {server_url}",
            commands=[
                f"runuser -u {USER} -- {venv}/bin/edgefaas nodeauth enroll --server-url {server_url} "
                f"--secret-file {SECRET_FILE} --node {shlex.quote(node)} --state-dir {STATE_DIR} "
                f"--ca-file {CA_PEM}"
            ],
        )
    server_address = hosts.address(server_host)
    open_ports(
        "nodeauth",
        [f"{AGENT_PORT}/tcp from={server_address}/32 node authentication agent"],
        f"the authentication agent's port {AGENT_PORT}/tcp to {server_address} only",
    )
    unit = files.template(
        name="Install the edgefaas-nodeauth-agent unit",
        src=str(TEMPLATES / "edgefaas-nodeauth-agent.service.j2"),
        dest="/etc/systemd/system/edgefaas-nodeauth-agent.service",
        service_user=USER,
        venv=venv,
        server_addresses=[server_address],
        state_dir=STATE_DIR,
        port=AGENT_PORT,
        wheelhouse_sha256=wheelhouse,
    )
    keep_running("edgefaas-nodeauth-agent.service", "the authentication agent", unit.did_change, "a new unit")
