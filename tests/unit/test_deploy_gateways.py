"""Where the gateways run and what they share (edgefaas.deploy.gateways), planned from inventories."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from pyinfra.api.exceptions import DeployError

from edgefaas.deploy.gateways import database_plan, first_gateway, gateway_hosts, is_gateway, queue_plan

from .deploy_fakes import FakeHost

pytestmark = pytest.mark.unit


def lab(*extra: FakeHost, **data: object) -> list[FakeHost]:
    return [
        FakeHost("sonic-1", ("sonic", "k3s_server"), ssh_hostname="10.0.0.11", **data),
        FakeHost("sonic-2", ("sonic", "k3s_agent"), ssh_hostname="10.0.0.12", **data),
        FakeHost("jetson-1", ("jetson", "k3s_agent"), ssh_hostname="10.0.0.21", **data),
        *extra,
    ]


def test_every_switch_runs_a_gateway_unless_the_inventory_names_them() -> None:
    inventory = lab()
    assert [h.name for h in gateway_hosts(inventory)] == ["sonic-1", "sonic-2"]
    assert not is_gateway(inventory[2], inventory)
    named = [FakeHost("sonic-1", ("sonic", "k3s_server")), FakeHost("sonic-2", ("sonic", "edgefaas_gateway"))]
    assert [h.name for h in gateway_hosts(named)] == ["sonic-2"]
    assert first_gateway(named).name == "sonic-2"


def test_a_site_without_switches_keeps_its_gateway_on_the_k3s_server() -> None:
    inventory = [FakeHost("a", ("k3s_server",)), FakeHost("b", ("k3s_agent",))]
    assert [h.name for h in gateway_hosts(inventory)] == ["a"]


def test_two_gateways_share_postgresql_on_the_k3s_server() -> None:
    inventory = lab()
    plan = database_plan(inventory[1], inventory)
    assert plan.kind == "postgresql"
    assert plan.host.name == "sonic-1"
    url = urlsplit(plan.url("p@ss/word"))
    assert (url.scheme, url.hostname, url.port, url.path) == ("postgresql", "10.0.0.11", 5432, "/edgefaas")
    # The password is quoted, so a URL parser gives it back whole.
    assert url.password is not None and "/" not in url.password


def test_one_gateway_keeps_sqlite() -> None:
    inventory = [FakeHost("sonic-1", ("sonic", "k3s_server"), ssh_hostname="10.0.0.11")]
    plan = database_plan(inventory[0], inventory)
    assert plan.kind == "sqlite" and plan.host is None and plan.url("x") == ""


def test_the_database_host_can_be_any_inventory_host_and_a_wrong_one_is_named() -> None:
    inventory = lab(edgefaas_database_host="jetson-1")
    assert database_plan(inventory[0], inventory).host.name == "jetson-1"
    wrong = lab(edgefaas_database_host="nowhere")
    with pytest.raises(DeployError, match="edgefaas_database_host 'nowhere'"):
        database_plan(wrong[0], wrong)


def test_sqlite_cannot_be_shared_by_two_gateways() -> None:
    inventory = lab(edgefaas_database="sqlite")
    with pytest.raises(DeployError, match="SQLite cannot be shared"):
        database_plan(inventory[0], inventory)


def test_an_external_database_is_used_as_given_and_must_be_postgresql() -> None:
    inventory = lab(edgefaas_database_url="postgresql://u:p@db.example:5433/x")
    plan = database_plan(inventory[0], inventory)
    assert plan.host is None and plan.url("ignored") == "postgresql://u:p@db.example:5433/x"
    bad = lab(edgefaas_database_url="mysql://u:p@db/x")
    with pytest.raises(DeployError, match="edgefaas_database_url must be a postgresql"):
        database_plan(bad[0], bad)


def test_the_queue_clusters_the_gateway_hosts_and_each_connects_to_its_own_server_first() -> None:
    inventory = lab()
    plan = queue_plan(inventory[0], inventory)
    assert plan.clustered and plan.replicas == 2
    assert plan.routes("sonic-1") == ["nats-route://10.0.0.12:6222"]
    assert plan.client_urls("sonic-2") == ["nats://127.0.0.1:4222", "nats://10.0.0.11:4222"]
    assert plan.client_urls("sonic-2", "tok") == ["nats://tok@127.0.0.1:4222", "nats://tok@10.0.0.11:4222"]
    assert plan.routes("sonic-1", "route:pw") == ["nats-route://route:pw@10.0.0.12:6222"]
    four = [FakeHost(f"s{i}", ("sonic",), ssh_hostname=f"10.0.0.{i}") for i in range(4)]
    assert queue_plan(four[0], four).replicas == 3
