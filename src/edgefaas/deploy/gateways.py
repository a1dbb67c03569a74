"""Where the gateways run and what they share, planned on the machine running pyinfra.

Every gateway serves any call, deploy, update or billing query with the same answer, so
what they hold in common lives outside them: licenses and the ledger in one PostgreSQL
database (on the host `edgefaas_database_host` names, by default the K3S server, or an
external server at `edgefaas_database_url`), queued calls in a NATS JetStream cluster of
one server per gateway host. A site with one gateway keeps SQLite beside it.

Gateway hosts: the inventory's group `edgefaas_gateway` if it has one, else every `sonic`
host (the switches carry the gateway), else the K3S server.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from pyinfra.api.exceptions import DeployError

from edgefaas.deploy import hosts
from edgefaas.deploy.settings import setting

GATEWAY_GROUP = "edgefaas_gateway"
DATABASE_NAME = "edgefaas"
DATABASE_USER = "edgefaas"
# Raft needs a majority: three copies of the queue keep it through the loss of one server.
MAX_QUEUE_REPLICAS = 3


def _in_group(other: Any, group: str) -> bool:
    return group in other.groups


def gateway_hosts(inventory: Iterable[Any]) -> list[Any]:
    """The hosts that run a gateway, in inventory order."""
    everyone = list(inventory)
    for group in (GATEWAY_GROUP, "sonic", "k3s_server"):
        chosen = [other for other in everyone if _in_group(other, group)]
        if chosen:
            return chosen
    return []


def is_gateway(current: Any, inventory: Iterable[Any]) -> bool:
    return any(other.name == current.name for other in gateway_hosts(inventory))


def first_gateway(inventory: Iterable[Any]) -> Any:
    """The gateway the deploy talks to for what all share (the functions): the first one."""
    chosen = gateway_hosts(inventory)
    if not chosen:
        raise DeployError("no gateway host: put a host in group edgefaas_gateway, sonic or k3s_server")
    return chosen[0]


def gateway_tls(current: Any) -> bool:
    """Whether the gateways serve HTTPS only (edgefaas_gateway_tls)."""
    value = setting(current, "edgefaas_gateway_tls")
    if not isinstance(value, bool):
        raise DeployError(f"{current.name}: edgefaas_gateway_tls must be True or False, not {value!r}")
    return value


def gateway_url(current: Any, address: str, port: int | None = None) -> str:
    """A gateway's base URL at `address`, in the scheme the site serves (edgefaas_gateway_tls)."""
    chosen = int(setting(current, "edgefaas_gateway_port")) if port is None else port
    where = f"[{address}]" if ":" in address else address
    return f"{'https' if gateway_tls(current) else 'http'}://{where}:{chosen}"


def k3s_server(inventory: Iterable[Any]) -> Any:
    servers = [other for other in inventory if _in_group(other, "k3s_server")]
    if not servers:
        raise DeployError("no host in group k3s_server: the gateways need the K3S API")
    return servers[0]


@dataclass(frozen=True)
class DatabasePlan:
    """Where licenses and the ledger live: `host` is the inventory host to deploy PostgreSQL on,
    None for SQLite beside a single gateway or for an external server."""

    kind: str  # "sqlite" | "postgresql"
    host: Any = None
    address: str = ""
    port: int = 5432
    external_url: str = ""

    def url(self, password: str) -> str:
        """The storage URL a gateway is started with ("" for its own SQLite file)."""
        if self.kind == "sqlite":
            return ""
        if self.external_url:
            return self.external_url
        credentials = f"{DATABASE_USER}:{quote(password, safe='')}"
        return f"postgresql://{credentials}@{self.address}:{self.port}/{DATABASE_NAME}"


def database_plan(current: Any, inventory: Iterable[Any]) -> DatabasePlan:
    """PostgreSQL when several gateways share the state or the inventory asks for it."""
    everyone = list(inventory)
    external = setting(current, "edgefaas_database_url") or ""
    if external:
        scheme = urlsplit(str(external)).scheme
        if scheme not in ("postgresql", "postgres"):
            raise DeployError(
                f"{current.name}: edgefaas_database_url must be a postgresql:// URL, "
                f"not {scheme or 'one without a'} scheme"
            )
        return DatabasePlan("postgresql", external_url=str(external))
    gateways = gateway_hosts(everyone)
    wanted = setting(current, "edgefaas_database")
    if wanted not in ("auto", "sqlite", "postgresql"):
        raise DeployError(
            f"{current.name}: edgefaas_database must be auto, sqlite or postgresql, not {wanted!r}"
        )
    if wanted == "sqlite" and len(gateways) > 1:
        raise DeployError(
            f"{current.name}: edgefaas_database = 'sqlite' with {len(gateways)} gateways "
            f"({', '.join(g.name for g in gateways)}): SQLite cannot be shared; use postgresql"
        )
    if wanted == "sqlite" or (wanted == "auto" and len(gateways) <= 1):
        return DatabasePlan("sqlite")
    name = setting(current, "edgefaas_database_host")
    if name:
        matches = [other for other in everyone if other.name == name]
        if not matches:
            raise DeployError(f"{current.name}: edgefaas_database_host {name!r} is not in the inventory")
        db_host = matches[0]
    else:
        db_host = k3s_server(everyone)
    return DatabasePlan(
        "postgresql",
        host=db_host,
        address=hosts.address(db_host),
        port=int(setting(current, "edgefaas_database_port")),
    )


@dataclass(frozen=True)
class QueuePlan:
    """The NATS servers of the gateways' queue: one per gateway host, clustered when several."""

    servers: tuple[str, ...]  # host names
    addresses: tuple[str, ...]
    client_port: int
    cluster_port: int

    @property
    def clustered(self) -> bool:
        return len(self.servers) > 1

    @property
    def replicas(self) -> int:
        return min(len(self.servers), MAX_QUEUE_REPLICAS)

    def routes(self, own_name: str, credentials: str = "") -> list[str]:
        """The cluster routes of server `own_name`: every other server's cluster port
        (`credentials`: the routes' `user:password`)."""
        userinfo = f"{credentials}@" if credentials else ""
        return [
            f"nats-route://{userinfo}{address}:{self.cluster_port}"
            for name, address in zip(self.servers, self.addresses, strict=True)
            if name != own_name
        ]

    def client_urls(self, own_name: str, token: str = "") -> list[str]:
        """What a gateway connects to: its own server first (no network between them), then the
        others (`token`: the clients' token)."""
        userinfo = f"{token}@" if token else ""
        own = [f"nats://{userinfo}127.0.0.1:{self.client_port}"] if own_name in self.servers else []
        others = [
            f"nats://{userinfo}{address}:{self.client_port}"
            for name, address in zip(self.servers, self.addresses, strict=True)
            if name != own_name
        ]
        return own + others


def queue_plan(current: Any, inventory: Iterable[Any]) -> QueuePlan:
    gateways = gateway_hosts(inventory)
    return QueuePlan(
        servers=tuple(g.name for g in gateways),
        addresses=tuple(hosts.address(g) for g in gateways),
        client_port=int(setting(current, "edgefaas_nats_client_port")),
        cluster_port=int(setting(current, "edgefaas_nats_cluster_port")),
    )


def peer_sources(addresses: Sequence[str], port: int, why: str) -> list[str]:
    """Control-plane ACL lines opening `port` to each of `addresses` alone."""
    return [f"{port}/tcp from={address}/32 {why}" for address in sorted(set(addresses))]
