"""Sites in one inventory: each host's deploy finds its K3S server, gateways, shared state and
Prometheus targets among its own site's hosts, and a lone site plans as before."""

from __future__ import annotations

import pytest
from pyinfra.api.exceptions import DeployError

from edgefaas.deploy import gateways, monitoring
from edgefaas.deploy.sites import site_inventory, site_of

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
