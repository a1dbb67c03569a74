"""What the gateways share, deployed from inside deploys/edgefaas.py: PostgreSQL and NATS.

PostgreSQL (Debian's) holds licenses and the ledger for every gateway; the gateways create
and migrate their own tables, so the deploy makes only the role, the database and the door
(listen address, pg_hba.conf line and control-plane ACL rule per gateway). NATS (Debian's
nats-server with JetStream) holds queued asynchronous calls: one server per gateway host,
clustered when there are several; the gateways create the stream themselves.
"""

from __future__ import annotations

from io import StringIO
from pathlib import Path
from typing import Any

from pyinfra import host
from pyinfra.api.exceptions import DeployError
from pyinfra.operations import files, server, systemd
from pyinfra.operations.util import any_changed

from edgefaas.deploy.control_plane_acl import open_ports
from edgefaas.deploy.facts import PostgresClusters, PostgresDatabase
from edgefaas.deploy.gateways import DATABASE_NAME, DATABASE_USER, DatabasePlan, QueuePlan, peer_sources
from edgefaas.deploy.services import keep_running

TEMPLATES = Path(__file__).resolve().parents[3] / "templates" / "edgefaas"
DATABASE_CONFIG_DIR = "/etc/edgefaas/database"
NATS_CONFIG_DIR = "/etc/edgefaas/nats"
NATS_MONITOR_PORT = 8222
# Plain words: pyinfra finds the block by its marker lines with a pattern.
HBA_MARKER = "# {mark} EDGEFAAS GATEWAYS"


def postgresql(plan: DatabasePlan, gateway_addresses: list[str], password: str) -> None:
    """Debian's PostgreSQL on this host, with the gateways' role and database."""
    versions = host.get_fact(PostgresClusters)
    if not versions:
        raise DeployError(
            f"{host.name}: no PostgreSQL cluster in /etc/postgresql/*/main: install Debian's postgresql "
            "(edgefaas_database_host names this host)"
        )
    version = versions[-1]
    cluster = f"/etc/postgresql/{version}/main"
    config = files.template(
        name=f"Let the gateways reach PostgreSQL {version} ({cluster}/conf.d/edgefaas.conf)",
        src=str(TEMPLATES / "postgresql.conf.j2"),
        dest=f"{cluster}/conf.d/edgefaas.conf",
        mode="644",
        address=plan.address,
        port=plan.port,
        # Each gateway keeps a small pool; room for every gateway, the tools and an upgrade's overlap.
        max_connections=max(100, 20 * len(gateway_addresses) + 20),
    )
    lines = [
        f"host {DATABASE_NAME} {DATABASE_USER} {address}/32 scram-sha-256"
        for address in sorted(gateway_addresses)
    ]
    hba = files.block(
        name="Let each gateway log in to the edgefaas database with its password (pg_hba.conf)",
        path=f"{cluster}/pg_hba.conf",
        content="\n".join(lines),
        marker=HBA_MARKER,
    )
    # Debian makes the postgres user's home 755; nothing but PostgreSQL reads it (the gateways
    # use TCP), and Lynis's HOME-9304 asks for 750.
    files.directory(
        name="Keep PostgreSQL's home directory to its own user and group (750)",
        path="/var/lib/postgresql",
        user="postgres",
        group="postgres",
        mode="750",
    )
    unit = f"postgresql@{version}-main.service"
    # postgresql.service starts every cluster at boot; the cluster's own unit is the server.
    systemd.service(name="Start PostgreSQL at boot", service="postgresql.service", running=True, enabled=True)
    systemd.service(name="Keep PostgreSQL running", service=unit, running=True)
    systemd.service(
        name="Restart PostgreSQL for its new listen address",
        service=unit,
        restarted=True,
        _if=config.did_change,
    )
    systemd.service(
        name="Reload PostgreSQL for its new pg_hba.conf", service=unit, reloaded=True, _if=hba.did_change
    )
    files.directory(name=f"Create {DATABASE_CONFIG_DIR}", path=DATABASE_CONFIG_DIR, user="root", mode="700")
    secret = files.put(
        name="Keep the gateways' database password (root only)",
        src=StringIO(password + "\n"),
        dest=f"{DATABASE_CONFIG_DIR}/password",
        mode="600",
    )
    exists = host.get_fact(PostgresDatabase, database=DATABASE_NAME, user=DATABASE_USER)
    server.shell(
        name=f"Create role {DATABASE_USER} and database {DATABASE_NAME}, and set the role's password",
        commands=[
            f'pw="$(cat {DATABASE_CONFIG_DIR}/password)"; '
            "for i in $(seq 60); do runuser -u postgres -- pg_isready -q && break; sleep 0.5; done; "
            "runuser -u postgres -- psql -X -v ON_ERROR_STOP=1 -v pw=\"$pw\" <<'SQL'\n"
            f"SELECT 'CREATE ROLE {DATABASE_USER} LOGIN' "
            f"WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{DATABASE_USER}')\\gexec\n"
            f"ALTER ROLE {DATABASE_USER} WITH LOGIN PASSWORD :'pw';\n"
            f"SELECT 'CREATE DATABASE {DATABASE_NAME} OWNER {DATABASE_USER}' "
            f"WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '{DATABASE_NAME}')\\gexec\n"
            "SQL"
        ],
        _if=lambda: secret.did_change() or not exists,
    )
    open_ports(
        "edgefaas-db",
        peer_sources(gateway_addresses, plan.port, "EdgeFaaS gateway to PostgreSQL"),
        f"PostgreSQL's port {plan.port}/tcp to the gateways",
    )


def nats(plan: QueuePlan, token: str, route_password: str) -> Any:
    """Debian's nats-server with JetStream on this gateway host; the op that restarted it, if any."""
    files.directory(
        name=f"Create {NATS_CONFIG_DIR}", path=NATS_CONFIG_DIR, user="root", group="nats", mode="750"
    )
    config = files.template(
        name="Write NATS's configuration (JetStream, the cluster of gateway hosts)",
        src=str(TEMPLATES / "nats-server.conf.j2"),
        dest=f"{NATS_CONFIG_DIR}/nats-server.conf",
        user="root",
        group="nats",
        mode="640",
        server_name=host.name,
        client_port=plan.client_port,
        cluster_port=plan.cluster_port,
        monitor_port=NATS_MONITOR_PORT,
        token=token,
        route_password=route_password,
        routes=plan.routes(host.name, f"route:{route_password}"),
        replicas=plan.replicas,
        max_file_store="1GB",
    )
    dropin = files.put(
        name="Point nats-server at EdgeFaaS's configuration (systemd drop-in)",
        src=str(TEMPLATES / "nats-server.service.d.conf"),
        dest="/etc/systemd/system/nats-server.service.d/edgefaas.conf",
        mode="644",
    )
    others = [a for n, a in zip(plan.servers, plan.addresses, strict=True) if n != host.name]
    ports = [*peer_sources(others, plan.client_port, "NATS client from a gateway")]
    if plan.clustered:
        ports += peer_sources(others, plan.cluster_port, "NATS cluster route")
    open_ports("edgefaas-nats", ports, "NATS's ports to the other gateway hosts")
    restart = any_changed(config, dropin)
    keep_running("nats-server.service", "NATS", restart, "a new configuration")
    return server.shell(
        name="Wait until NATS serves JetStream",
        commands=[
            f"url='http://127.0.0.1:{NATS_MONITOR_PORT}/healthz?js-enabled-only=true'; "
            'for i in $(seq 120); do curl -fsS -o /dev/null "$url" && exit 0; sleep 0.5; done; '
            "journalctl -u nats-server -n 30 --no-pager >&2; exit 1"
        ],
        _if=restart,
    )
