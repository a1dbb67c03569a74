"""Settings the deploys read from host data, and the default of each one that has a default.

A setting left out of the inventory, or set to None there, takes its default here; one with
no default must be in the inventory's group_data (inventories/group_data/all.py), and a
host without it fails, naming the setting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pyinfra.api.exceptions import DeployError

REPO = Path(__file__).resolve().parents[3]

DEFAULTS: dict[str, Any] = {
    # deploys/edgefaas.py
    "edgefaas_functions_dir": str(REPO / "functions"),
    "edgefaas_gateway_port": 8080,
    "edgefaas_namespace": "edgefaas-fn",
    # None: the gateway makes a random one on first start.
    "edgefaas_admin_password": None,
    # None: https://<the first gateway's address>:<port> (http:// with edgefaas_gateway_tls off).
    "edgefaas_gateway_url": None,
    # The gateway serves HTTPS only, with a certificate from the blueprint's CA (deploys/nodeauth.py
    # runs that CA on the K3S server; its key is held in Parsec). False: plain HTTP, for a site
    # without node certification, where passwords and license tokens then travel in clear.
    "edgefaas_gateway_tls": True,
    # More names (DNS names, addresses) clients reach a gateway at, for its certificate; its
    # management address, 127.0.0.1, its host name and its WAN addresses are always in it.
    "edgefaas_gateway_tls_names": [],
    # parsec: license tokens signed by an ES256 key held in Parsec (needs deploys/parsec.py on
    # the host, as on SONiC); hmac: a random key in the gateway's data directory.
    "edgefaas_license_signer": "hmac",
    # Where the gateways' shared secrets (admin password, license key, database and queue
    # credentials) are kept on the machine running pyinfra, made on first use (0600).
    "edgefaas_secrets_dir": "~/.config/edgefaas",
    # auto: PostgreSQL when several gateways share licenses and the ledger, SQLite for one.
    "edgefaas_database": "auto",
    # None: PostgreSQL (Debian's) deployed on the K3S server; or name another inventory host.
    "edgefaas_database_host": None,
    "edgefaas_database_port": 5432,
    # An external PostgreSQL server instead (postgresql://user:password@host/db): nothing deployed.
    "edgefaas_database_url": None,
    # The queue of asynchronous calls: a NATS JetStream server on every gateway host.
    "edgefaas_nats_client_port": 4222,
    "edgefaas_nats_cluster_port": 6222,
    # A retry with the same X-Call-Id within this many seconds is answered from the first call.
    "edgefaas_idempotency_window": 600,
    # Cloud-edge collaboration (edgefaas.deploy.collaboration), where the inventory has a cloud
    # site: per function, when an edge sends its calls on to the cloud ({"Fn": {"max_inflight": 4,
    # "max_latency_ms": 250}}), and the seconds between an edge's catalogue polls and usage pushes.
    "edgefaas_site_objectives": {},
    "edgefaas_site_poll": 2.0,
    # A cloud peering with the WAN (its sdwan_peers) announces the edge switches' addresses with its
    # AS prepended this many times, so that it is the WAN's fallback behind every edge switch.
    "edgefaas_wan_cloud_prepend": 3,
    # /metrics for the admin only (Prometheus scrapes with the admin's password); off: open, as in OpenFaaS.
    "edgefaas_gateway_metrics_auth": False,
    # deploys/monitoring.py: Prometheus and Alertmanager on the K3S server, a node exporter on every node.
    "monitoring": True,
    "monitoring_scrape_interval": "15s",
    "monitoring_retention": "7d",
    "monitoring_prometheus_port": 9090,
    "monitoring_alertmanager_port": 9093,
    "monitoring_node_exporter_port": 9100,
    # OpenFaaS's APIHighInvocationRate: more than `threshold` calls a second answered 200, averaged
    # over `window`, for `hold`, fires (OpenFaaS: 5 over 10 s at a 5 s scrape; the window here spans
    # four scrapes of the default interval). The lab sets short ones.
    "monitoring_alert_threshold": 5,
    "monitoring_alert_window": "1m",
    "monitoring_alert_hold": "5s",
    # How Alertmanager sends it: first after group_wait, a change after group_interval, and a
    # still-firing alert again (another step of replicas) every repeat_interval (OpenFaaS's values).
    "monitoring_alert_group_wait": "5s",
    "monitoring_alert_group_interval": "10s",
    "monitoring_alert_repeat_interval": "30s",
    # deploys/nodeauth.py
    "nodeauth_interval": 1.0,  # seconds between reviews of new nodes
    "nodeauth_recheck": 30.0,  # seconds between reviews of every node (revocations take effect at once)
    "nodeauth_grace": 120.0,  # seconds a new node may wait, cordoned, for its agent to start
    # seconds a node's clock may be off from the K3S server's before it is reported (not removed)
    "nodeauth_clock_tolerance_s": 30.0,
    # None: derived from the file below, on the machine running pyinfra (made on first use).
    "nodeauth_enrollment_key": None,
    "nodeauth_enrollment_key_file": "~/.config/edgefaas/nodeauth-enrollment-key",
}


def setting(current: Any, key: str) -> Any:
    """Host data `key` of the host `current`, else its default; a setting with neither fails the host."""
    value = current.data.get(key)
    if value is not None:
        return value
    if key not in DEFAULTS:
        raise DeployError(
            f"{current.name}: set {key} in the inventory's group_data (see inventories/group_data/all.py)"
        )
    return DEFAULTS[key]
