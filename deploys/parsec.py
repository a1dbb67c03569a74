"""Parsec (SoW Task 2): the real Parsec service, run directly on every SONiC switch.

Also on the devices whose host data sets `parsec_service` (Jetsons: their node keys for
edge-node certification live there).

    pyinfra -y inventories/lab.py deploys/parsec.py

Installs parsec-service and parsec-tool from the artifact directory (or URLs, by host
data; checksums verified), runs the service as the unprivileged `parsec` user under
systemd with its socket in /run/parsec, and opens nothing in the network: Parsec is
reached over a Unix socket only. A new version or configuration restarts the service;
keys live in /var/lib/parsec and survive both.

On the K3S server it also makes the tenant namespaces of host data `parsec_tenants`, each
labelled with its tenant's Parsec uid; deploys/nodeauth.py's admission webhook holds every
pod in them to that uid (edgefaas.parsec.tenancy).
"""

from pathlib import Path

from pyinfra import host
from pyinfra.api.exceptions import DeployError
from pyinfra.operations import files, server
from pyinfra.operations.util import any_changed

from edgefaas.deploy import hosts
from edgefaas.deploy.artifacts import artifact, install
from edgefaas.deploy.facts import KubeNamespaceLabel
from edgefaas.deploy.services import keep_running
from edgefaas.parsec.tenancy import TENANT_LABEL, UID_LABEL, tenant_problems

TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "parsec"
BINARY = "/usr/libexec/parsec/parsec"
TOOL = "/usr/local/bin/parsec-tool"
CONFIG = "/etc/parsec/config.toml"
STATE_DIR = "/var/lib/parsec"
SOCKET = "/run/parsec/parsec.sock"
AUTHENTICATORS = ("UnixPeerCredentials", "Direct")
TENANTS_FILE = "/etc/edgefaas/parsec-tenants.yaml"


if host.data.get("parsec_service"):
    authenticator = host.data.parsec_authenticator
    if authenticator not in AUTHENTICATORS:
        raise DeployError(
            f"{host.name}: parsec_authenticator {authenticator!r} must be one of {AUTHENTICATORS}"
        )

    server.group(name="Create the parsec group", group="parsec", system=True)
    server.group(name="Create the parsec-clients group", group="parsec-clients", system=True)
    server.user(
        name="Create the parsec service user",
        user="parsec",
        group="parsec",
        groups=["parsec-clients"],
        system=True,
        shell="/usr/sbin/nologin",
        home=STATE_DIR,
        create_home=False,
    )
    # Both directories hold secrets (the config names admins; the state holds keys): 700.
    for path in ("/etc/parsec", STATE_DIR):
        files.directory(name=f"Create {path} (700)", path=path, user="parsec", group="parsec", mode="700")
    files.directory(name="Create /usr/libexec/parsec", path="/usr/libexec/parsec", mode="755")

    binary = install(artifact("parsec-service"), BINARY, "parsec-service")
    install(artifact("parsec-tool"), TOOL, "parsec-tool")
    config = files.template(
        name="Write the Parsec configuration",
        src=str(TEMPLATES / "config.toml.j2"),
        dest=CONFIG,
        user="parsec",
        group="parsec",
        mode="600",
        authenticator=authenticator,
        admins=host.data.parsec_admins,
        log_level=host.data.parsec_log_level,
        thread_pool_size=host.data.parsec_thread_pool_size,
        idle_listener_sleep_ms=host.data.parsec_idle_listener_sleep_ms,
        listener_timeout_ms=host.data.parsec_listener_timeout_ms,
        socket_path=SOCKET,
        state_dir=STATE_DIR,
    )
    unit = files.template(
        name="Install the parsec systemd unit",
        src=str(TEMPLATES / "parsec.service.j2"),
        dest="/etc/systemd/system/parsec.service",
        service_user="parsec",
        clients_group="parsec-clients",
        state_dir=STATE_DIR,
        binary=BINARY,
        config=CONFIG,
    )
    changed = any_changed(binary, config, unit)
    keep_running("parsec.service", "the Parsec service", changed, "a new version or configuration")
    server.shell(
        name="Check that the restarted Parsec service answers",
        _if=changed,
        commands=[
            f"for i in $(seq 50); do test -S {SOCKET} && break; sleep 0.1; done",
            f"PARSEC_SERVICE_ENDPOINT=unix:{SOCKET} {host.data.edgefaas_venv}/bin/edgefaas parsec ping",
        ],
    )

# -- the K3S server: the tenants' namespaces, labelled with their Parsec uids ---------------------
if hosts.k3s_role(host) == "server":
    tenants = dict(host.data.get("parsec_tenants") or {})
    problems = tenant_problems(tenants)
    if problems:
        raise DeployError(f"{host.name}: parsec_tenants: " + "; ".join(problems))
    manifest = files.template(
        name="Write the Parsec tenant namespaces",
        src=str(TEMPLATES / "tenant-namespaces.yaml.j2"),
        dest=TENANTS_FILE,
        mode="644",
        tenants=tenants,
        tenant_label=TENANT_LABEL,
        uid_label=UID_LABEL,
    )
    present = host.get_fact(KubeNamespaceLabel, label=UID_LABEL)
    missing = [ns for ns, uid in tenants.items() if present.get(ns) != str(uid)]
    server.shell(
        name=f"Apply the Parsec tenant namespaces ({', '.join(tenants) or 'none'})",
        commands=[f"kubectl apply -f {TENANTS_FILE}"],
        _if=lambda: bool(tenants) and (manifest.did_change() or bool(missing)),
    )
