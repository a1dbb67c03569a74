"""Monitoring: Prometheus and Alertmanager on the K3S server, a node exporter on every K3S node.

    pyinfra -y inventories/lab.py deploys/monitoring.py

After deploys/edgefaas.py and deploys/triton.py (it scrapes their gateways and Triton servers).
All three are Debian's packages (`prometheus`, `prometheus-alertmanager`,
`prometheus-node-exporter`), installed with apt; the lab's root filesystems carry them
already, disabled, since lab devices cannot download (edgefaas.lab.rootfs).

Prometheus (edgefaas.deploy.monitoring plans what) scrapes, every monitoring_scrape_interval:
- every gateway's /metrics over HTTPS, verified by the blueprint's CA (/etc/edgefaas/ca.pem), with
  the admin's password where edgefaas_gateway_metrics_auth puts /metrics behind it;
- Triton's metrics port (plain HTTP, as Triton serves it) on every triton_server host;
- K3S: the API server's /metrics and every kubelet's /metrics and /metrics/cadvisor, as its own
  ServiceAccount `edgefaas-prometheus`, allowed `get` on /metrics and nodes/metrics and nothing
  else (not nodes/proxy, which would allow exec), verified by K3S's server CA;
- a node exporter on every K3S node, bound to its management address; on SONiC the control-plane
  ACL opens its port to the K3S server alone.
Prometheus and Alertmanager listen on loopback only (Alertmanager with no cluster port): the
gateway beside them reads Prometheus for the console's plots (--prometheus-url), and nothing
else reaches either.

Alertmanager sends OpenFaaS's APIHighInvocationRate alert (templates/monitoring/alert-rules.yml.j2:
threshold, window and hold from monitoring_alert_*) to one gateway's /system/alert (this host's
own when it runs one) over HTTPS verified by the CA, as the admin, whose password it reads from a
file only root and the prometheus group can read: a firing alert adds replicas, the resolved one
sets them back to the minimum.

Settings (host data, defaults in edgefaas.deploy.settings): monitoring (False: nothing here),
monitoring_scrape_interval, monitoring_retention, monitoring_*_port, monitoring_alert_*.
"""

from io import StringIO
from pathlib import Path

from pyinfra import host, inventory, logger
from pyinfra.operations import apt, files, server
from pyinfra.operations.util import any_changed

from edgefaas.deploy import hosts
from edgefaas.deploy.control_plane_acl import open_ports
from edgefaas.deploy.facts import KubeTokenFile, SameFile
from edgefaas.deploy.gateways import gateway_tls
from edgefaas.deploy.monitoring import (
    enabled,
    gateway_targets,
    monitoring_host,
    node_targets,
    triton_targets,
    webhook_url,
)
from edgefaas.deploy.secrets import gateway_secret
from edgefaas.deploy.services import keep_running
from edgefaas.deploy.settings import setting
from edgefaas.deploy.sites import site_inventory
from edgefaas.nodeauth.tls import CA_PEM

TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "monitoring"
CONFIG_DIR = "/etc/prometheus"
PROMETHEUS_CONFIG = f"{CONFIG_DIR}/edgefaas.yml"
RULES = f"{CONFIG_DIR}/edgefaas-rules.yml"
ALERTMANAGER_CONFIG = f"{CONFIG_DIR}/edgefaas-alertmanager.yml"
# Read by Prometheus (scrapes behind edgefaas_gateway_metrics_auth) and Alertmanager (the webhook).
PASSWORD_FILE = f"{CONFIG_DIR}/edgefaas-admin-password"
KUBE_TOKEN = f"{CONFIG_DIR}/k3s-token"
KUBE_CA = f"{CONFIG_DIR}/k3s-server-ca.crt"
K3S_SERVER_CA = "/var/lib/rancher/k3s/server/tls/server-ca.crt"
ACCOUNT = "edgefaas-prometheus"
ACCOUNT_NAMESPACE = "kube-system"
ACCOUNT_FILE = f"{CONFIG_DIR}/k3s-account.yaml"
KUBELET_PORT = 10250
USER = "prometheus"  # Debian's packages run all three as this user

# Each site has its own Prometheus, on its K3S server, scraping that site (edgefaas.deploy.sites).
site = site_inventory(host, inventory)
is_node = hosts.k3s_role(host) is not None
if not enabled(host):
    logger.info(f"{host.name}: monitoring is off (host data monitoring = False)")
elif is_node:
    server_host = monitoring_host(site)
    exporter_port = int(setting(host, "monitoring_node_exporter_port"))

    # -- every K3S node: a node exporter on the management address --------------------------------
    apt.packages(name="Install Debian's node exporter", packages=["prometheus-node-exporter"])
    exporter = files.template(
        name=f"Bind the node exporter to the management address (port {exporter_port})",
        src=str(TEMPLATES / "node-exporter.default.j2"),
        dest="/etc/default/prometheus-node-exporter",
        mode="644",
        address=hosts.address(host),
        port=exporter_port,
    )
    keep_running(
        "prometheus-node-exporter.service", "the node exporter", exporter.did_change, "a new address"
    )
    open_ports(
        "monitoring-node",
        [f"{exporter_port}/tcp from={hosts.address(server_host)}/32 node exporter, for Prometheus"],
        f"the node exporter's port {exporter_port}/tcp to the K3S server",
    )

    # -- the K3S server: Prometheus and Alertmanager ----------------------------------------------
    if host.name == server_host.name:
        prometheus_port = int(setting(host, "monitoring_prometheus_port"))
        alertmanager_port = int(setting(host, "monitoring_alertmanager_port"))
        tls = gateway_tls(host)
        metrics_auth = bool(setting(host, "edgefaas_gateway_metrics_auth"))
        apt.packages(
            name="Install Debian's Prometheus and Alertmanager",
            packages=["prometheus", "prometheus-alertmanager"],
        )
        # The same admin password every gateway has (deploys/edgefaas.py); never on a command line.
        password = files.put(
            name="Give Prometheus and Alertmanager the gateways' admin password (0640, group prometheus)",
            src=StringIO(
                gateway_secret(
                    host, "gateway-admin-password", "admin password", host.data.get("edgefaas_admin_password")
                )
                + "\n"
            ),
            dest=PASSWORD_FILE,
            user="root",
            group=USER,
            mode="640",
        )

        # K3S's metrics, as an account that may read metrics and nothing else.
        account = files.template(
            name="Write Prometheus's Kubernetes account (metrics only)",
            src=str(TEMPLATES / "account.yaml.j2"),
            dest=ACCOUNT_FILE,
            mode="644",
            account=ACCOUNT,
            namespace=ACCOUNT_NAMESPACE,
        )
        token_current = host.get_fact(
            KubeTokenFile, namespace=ACCOUNT_NAMESPACE, secret=f"{ACCOUNT}-token", path=KUBE_TOKEN
        )
        server.shell(
            name=f"Give Prometheus its own Kubernetes account ({ACCOUNT}) and its token (0640)",
            commands=[
                f"kubectl apply -f {ACCOUNT_FILE}",
                # The token controller fills the Secret in; the token goes through a pipe only.
                f"for i in $(seq 60); do t=$(kubectl -n {ACCOUNT_NAMESPACE} get secret {ACCOUNT}-token "
                "-o 'jsonpath={.data.token}' 2>/dev/null) && [ -n \"$t\" ] && break; sleep 1; done; "
                '[ -n "$t" ] || { echo "no token for ' + ACCOUNT + '" >&2; exit 1; }; '
                f"umask 027; printf '%s' \"$t\" | base64 -d > {KUBE_TOKEN}.new && "
                f"chgrp {USER} {KUBE_TOKEN}.new && mv {KUBE_TOKEN}.new {KUBE_TOKEN}",
            ],
            _if=lambda: account.did_change() or not token_current,
        )
        ca_current = host.get_fact(SameFile, source=K3S_SERVER_CA, copy=KUBE_CA)
        server.shell(
            name="Give Prometheus K3S's server CA (the API server's and kubelets' certificates)",
            commands=[f"install -m 644 {K3S_SERVER_CA} {KUBE_CA}"],
            _if=lambda: not ca_current,
        )

        rules = files.template(
            name="Write the APIHighInvocationRate rule (OpenFaaS's scaling alert)",
            src=str(TEMPLATES / "alert-rules.yml.j2"),
            dest=RULES,
            mode="644",
            threshold=setting(host, "monitoring_alert_threshold"),
            window=setting(host, "monitoring_alert_window"),
            hold=setting(host, "monitoring_alert_hold"),
        )
        interval = setting(host, "monitoring_scrape_interval")
        config = files.template(
            name="Write Prometheus's scrape configuration (gateways, Triton, K3S, node exporters)",
            src=str(TEMPLATES / "prometheus.yml.j2"),
            dest=PROMETHEUS_CONFIG,
            mode="644",
            scrape_interval=interval,
            evaluation_interval=interval,
            rule_file=RULES,
            alertmanager=f"127.0.0.1:{alertmanager_port}",
            gateway_scheme="https" if tls else "http",
            ca_file=str(CA_PEM),
            metrics_password_file=PASSWORD_FILE if metrics_auth else "",
            gateways=[t.as_dict() for t in gateway_targets(site)],
            nodes=[t.as_dict() for t in node_targets(site, exporter_port)],
            tritons=[t.as_dict() for t in triton_targets(site)],
            kube_token_file=KUBE_TOKEN,
            kube_ca_file=KUBE_CA,
            kube_api=f"127.0.0.1:{host.data.get('k3s_api_port', 6443)}",
            kube_server_name=host.name,
            kubelets=[t.as_dict() for t in node_targets(site, KUBELET_PORT)],
        )
        prometheus_args = files.template(
            name=f"Run Prometheus on 127.0.0.1:{prometheus_port} with EdgeFaaS's configuration",
            src=str(TEMPLATES / "prometheus.default.j2"),
            dest="/etc/default/prometheus",
            mode="644",
            config=PROMETHEUS_CONFIG,
            port=prometheus_port,
            retention=setting(host, "monitoring_retention"),
        )
        keep_running(
            "prometheus.service",
            "Prometheus",
            any_changed(config, rules, prometheus_args),
            "a new configuration or rule",
        )

        receiver = files.template(
            name="Write Alertmanager's route: APIHighInvocationRate to a gateway's /system/alert",
            src=str(TEMPLATES / "alertmanager.yml.j2"),
            dest=ALERTMANAGER_CONFIG,
            mode="644",
            group_wait=setting(host, "monitoring_alert_group_wait"),
            group_interval=setting(host, "monitoring_alert_group_interval"),
            repeat_interval=setting(host, "monitoring_alert_repeat_interval"),
            webhook_url=webhook_url(host, site),
            password_file=PASSWORD_FILE,
            ca_file=str(CA_PEM) if tls else "",
        )
        alertmanager_args = files.template(
            name=f"Run Alertmanager on 127.0.0.1:{alertmanager_port}, without a cluster port",
            src=str(TEMPLATES / "alertmanager.default.j2"),
            dest="/etc/default/prometheus-alertmanager",
            mode="644",
            config=ALERTMANAGER_CONFIG,
            port=alertmanager_port,
        )
        keep_running(
            "prometheus-alertmanager.service",
            "Alertmanager",
            any_changed(receiver, alertmanager_args, password),
            "a new route, address or password",
        )
else:
    logger.info(f"{host.name}: not a K3S node: no monitoring here")
