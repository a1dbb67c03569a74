"""Sites in one inventory: each host's deploy finds its K3S server, gateways, shared state and
Prometheus targets among its own site's hosts, and a lone site plans as before."""

from __future__ import annotations

import pytest
from pyinfra.api.exceptions import DeployError

from edgefaas.deploy import gateways, monitoring
from edgefaas.deploy.collaboration import SitePaths, site_environment
from edgefaas.deploy.secrets import cluster_token, gateway_secret, site_credential
from edgefaas.deploy.sites import collaboration, site_inventory, site_of

from .deploy_fakes import FakeHost

pytestmark = pytest.mark.unit


def edge() -> list[FakeHost]:
    return [
        FakeHost("sonic-1", ("sonic", "k3s_server"), k3s_node_ip="10.77.0.11"),
        FakeHost("sonic-2", ("sonic", "k3s_agent"), k3s_node_ip="10.77.0.12"),
        FakeHost("jetson-1", ("jetson", "k3s_agent"), k3s_node_ip="10.77.0.13", triton_server=True),
    ]


def edge_and_cloud() -> list[FakeHost]:
    return [
        *edge(),
        FakeHost("cloud-1", ("cloud", "k3s_server"), k3s_node_ip="10.78.0.11", triton_server=True),
        FakeHost("cloud-2", ("cloud", "k3s_agent"), k3s_node_ip="10.78.0.12"),
    ]


def test_a_host_is_in_the_site_its_data_names_else_cloud_or_edge_by_profile():
    hosts = {h.name: h for h in edge_and_cloud()}
    assert [site_of(h) for h in hosts.values()] == ["edge", "edge", "edge", "cloud", "cloud"]
    hosts["sonic-2"].data["edgefaas_site"] = "edge-b"
    assert site_of(hosts["sonic-2"]) == "edge-b"
    assert [h.name for h in site_inventory(hosts["sonic-2"], hosts.values())] == ["sonic-2"]
    hosts["sonic-2"].data["edgefaas_site"] = "Edge B"
    with pytest.raises(DeployError, match="sonic-2: edgefaas_site 'Edge B' is not a site name"):
        site_of(hosts["sonic-2"])


def test_each_site_is_its_own_cluster_with_its_own_server_and_gateways():
    hosts = edge_and_cloud()
    by_name = {h.name: h for h in hosts}
    cloud = site_inventory(by_name["cloud-2"], hosts)
    assert [h.name for h in cloud] == ["cloud-1", "cloud-2"]
    assert [h.name for h in cloud.get_group("k3s_server")] == ["cloud-1"]
    assert gateways.k3s_server(cloud).name == "cloud-1"
    # No switches in the cloud: its K3S server carries the gateway, alone, on SQLite.
    assert [h.name for h in gateways.gateway_hosts(cloud)] == ["cloud-1"]
    assert gateways.database_plan(by_name["cloud-1"], cloud).kind == "sqlite"
    assert gateways.queue_plan(by_name["cloud-1"], cloud).servers == ("cloud-1",)

    site = site_inventory(by_name["jetson-1"], hosts)
    assert gateways.k3s_server(site).name == "sonic-1"
    assert [h.name for h in gateways.gateway_hosts(site)] == ["sonic-1", "sonic-2"]
    database = gateways.database_plan(by_name["sonic-2"], site)
    assert database.kind == "postgresql" and database.host.name == "sonic-1"
    assert gateways.queue_plan(by_name["sonic-2"], site).servers == ("sonic-1", "sonic-2")


def test_each_site_scrapes_its_own_devices():
    hosts = edge_and_cloud()
    cloud = site_inventory(hosts[-1], hosts)
    assert monitoring.monitoring_host(cloud).name == "cloud-1"
    assert [t.name for t in monitoring.node_targets(cloud, 9100)] == ["cloud-1", "cloud-2"]
    assert [t.name for t in monitoring.triton_targets(cloud)] == ["cloud-1"]
    edge_site = site_inventory(hosts[0], hosts)
    assert [t.name for t in monitoring.node_targets(edge_site, 9100)] == ["sonic-1", "sonic-2", "jetson-1"]
    assert [t.name for t in monitoring.gateway_targets(edge_site)] == ["sonic-1", "sonic-2"]


def test_an_inventory_of_one_site_plans_as_the_whole_inventory():
    hosts = edge()
    for current in hosts:
        site = site_inventory(current, hosts)
        assert site.name == "edge" and list(site) == hosts
        assert gateways.gateway_hosts(site) == gateways.gateway_hosts(hosts)
        assert gateways.database_plan(current, site) == gateways.database_plan(current, hosts)


def test_with_a_cloud_site_every_gateway_is_a_site_of_one_collaboration():
    hosts = edge_and_cloud()
    by_name = {h.name: h for h in hosts}
    by_name["sonic-2"].data["edgefaas_site"] = "edge-b"
    cloud = collaboration(by_name["cloud-1"], hosts)
    assert (cloud.role, cloud.name, cloud.edges) == ("cloud", "cloud", ("edge", "edge-b"))
    at_edge = collaboration(by_name["sonic-2"], hosts)
    assert (at_edge.role, at_edge.name, at_edge.cloud.name) == ("edge", "edge-b", "cloud")
    assert [h.name for h in at_edge.cloud] == ["cloud-1", "cloud-2"]
    # Without a cloud site, no collaboration: each gateway is a site alone, as before.
    assert collaboration(by_name["sonic-1"], edge()) is None


def test_an_inventory_with_two_cloud_sites_is_refused_naming_them():
    hosts = edge_and_cloud()
    hosts[-1].data["edgefaas_site"] = "cloud-b"
    with pytest.raises(DeployError, match=r"2 cloud sites \(cloud, cloud-b\)"):
        collaboration(hosts[0], hosts)


def test_the_gateways_site_settings_name_their_role_the_cloud_and_their_files():
    hosts = edge_and_cloud()
    by_name = {h.name: h for h in hosts}
    for h in hosts:
        h.data.update(ssh_hostname=h.data["k3s_node_ip"], edgefaas_gateway_tls=True)
    paths = SitePaths("/etc/edgefaas/gateway")
    cloud = site_environment(collaboration(by_name["cloud-1"], hosts), paths, by_name["cloud-1"])
    assert cloud == {
        "EDGEFAAS_SITE_NAME": "cloud",
        "EDGEFAAS_SITE_ROLE": "cloud",
        "EDGEFAAS_SITES_FILE": "/etc/edgefaas/gateway/sites.json",
    }
    edge_env = site_environment(collaboration(by_name["sonic-2"], hosts), paths, by_name["sonic-2"])
    assert edge_env["EDGEFAAS_SITE_ROLE"] == "edge" and edge_env["EDGEFAAS_SITE_NAME"] == "edge"
    # The cloud's first gateway (its K3S server), in the scheme the cloud serves.
    assert edge_env["EDGEFAAS_CLOUD_URL"] == "https://10.78.0.11:8080"
    assert edge_env["EDGEFAAS_CLOUD_SITE"] == "cloud"
    assert edge_env["EDGEFAAS_CATALOGUE_KEY"] == "/etc/edgefaas/gateway/cloud-catalogue-key.pem"
    assert edge_env["EDGEFAAS_OBJECTIVES_FILE"] == "/etc/edgefaas/gateway/objectives.json"
    assert site_environment(None, paths, by_name["sonic-1"]) == {}


def test_each_site_keeps_its_own_secrets_and_an_edge_s_credential_is_shared_with_the_cloud(tmp_path):
    hosts = edge_and_cloud()
    for h in hosts:
        h.data.update(edgefaas_secrets_dir=str(tmp_path), k3s_token_file=str(tmp_path / "k3s-token"))
    by_name = {h.name: h for h in hosts}
    assert cluster_token(by_name["sonic-1"]) == cluster_token(by_name["jetson-1"])
    assert cluster_token(by_name["cloud-1"]) != cluster_token(by_name["sonic-1"])
    # The default site keeps the files' own names: a lab deployed before sites keeps its token.
    assert (tmp_path / "k3s-token").read_text().strip() == cluster_token(by_name["sonic-1"])
    assert (tmp_path / "k3s-token.cloud").is_file()
    assert gateway_secret(by_name["cloud-1"], "gateway-admin-password", "admin password") != gateway_secret(
        by_name["sonic-1"], "gateway-admin-password", "admin password"
    )
    assert site_credential(by_name["cloud-1"], "edge") == site_credential(by_name["sonic-2"], "edge")
    assert site_credential(by_name["cloud-1"], "edge") != site_credential(by_name["cloud-1"], "edge-b")
