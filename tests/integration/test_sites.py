"""Cloud-edge collaboration on the lab (issue 19, Scenario 3.3): a cloud site beside the edge.

    pytest -m lab tests/integration/test_sites.py [--inventory inventories/mylab.py]

The cloud site (edgefaas.deploy.sites: the inventory's hosts of group `cloud`) runs its own K3S
server and gateway; the edge site is the switches and boards. Their gateways were made sites of
one collaboration by deploys/edgefaas.py (edgefaas.deploy.collaboration): the cloud publishes,
signs with a key in its Parsec and serves offloaded calls; the edges follow its catalogue, send
calls on, and push their usage to it. This suite checks, through the gateways' own APIs:

- the cloud is reached from the edge through the WAN's routing alone;
- a function published in the cloud for the edge reaches the edge and runs there;
- an entry tampered with in the cloud's database is refused at the edge, which keeps serving the
  verified revision;
- a call of a cloud-only function made at the edge runs in the cloud and is billed once, at the
  edge;
- a load past the edge's objective (inventory data `edgefaas_site_objectives`) runs part of the
  calls in the cloud;
- with the WAN cut between edge and cloud, the edge serves its own functions, and once the cut
  heals the cloud's roll-up of the edge's usage equals the edge's bill;
- the cloud announces the API's anycast address into the WAN behind the edge switches (its AS
  prepended): a WAN client reaches the cloud when no edge switch announces it.

The WAN is cut on the provider edge (the lab's `wan` device): its forwarding between the lab
subnet and the cloud segment is dropped, except for the lab machine, which keeps reaching both
sides to drive the test. Skipped where the inventory holds no cloud site or the PE is the operator's.
"""

from __future__ import annotations

import json
import shlex
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from edgefaas.deploy import hosts
from edgefaas.deploy.gateways import first_gateway, gateway_hosts
from edgefaas.deploy.sites import Site, collaboration, site_of
from tests.integration import sonic_support as sonic
from tests.integration.conftest import Device, admin_password, connect, gateway_base, gateway_verify
from tests.integration.support import wait_for
from tests.site_function import code

# The function the lab's inventory names in the edge's objectives (inventories/lab.py).
OVERFLOW_FUNCTION = "cloud-near"
# A function only the cloud deploys (inventories/group_data/cloud.py).
CLOUD_ONLY = "cloud_info"
GATEWAY_DB = "/var/lib/edgefaas/gateway/gateway.db"
# While it exists a switch's announcer withdraws everything (deploys/edgefaas.py's DRAIN_FILE).
DRAIN_FILE = "/run/edgefaas/wan-drain"
CUT_TAG = "edgefaas-lab-wan-cut"
# A publish reaches the edge within the catalogue poll plus a pod start.
ARRIVAL_TIMEOUT = 120


@dataclass
class Gateway:
    device: Device
    admin: httpx.Client
    url: str


@dataclass
class Sites:
    edge_name: str
    edge: list[Gateway]
    cloud_name: str
    cloud: Gateway
    pe: Device
    license: str
    token: str

    def call(
        self, name: str, payload: dict | None = None, key: str | None = None, at: int = 0
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        if key:
            headers["X-Call-Id"] = key
        gateway = self.edge[at]
        with httpx.Client(
            base_url=gateway.url, timeout=60, trust_env=False, verify=gateway.admin.verify_tls
        ) as c:
            return c.post(f"/function/{name}", json=payload or {}, headers=headers)

    def publish(self, name: str, revision: int, sites: str | None, method: str = "POST") -> httpx.Response:
        body: dict[str, Any] = {"service": name, "code": code(revision)}
        if sites is not None:
            body["annotations"] = {"edgefaas.io/sites": sites}
        return self.cloud.admin.request(method, "/system/functions", json=body)

    def answers_at_edge(self, name: str, revision: int) -> bool:
        answer = self.call(name)
        return (
            answer.status_code == 200
            and answer.headers.get("X-EdgeFaaS-Site") == self.edge_name
            and answer.json().get("revision") == revision
        )

    def refusals(self) -> list[dict[str, Any]]:
        return self.edge[0].admin.get("/system/sites").json()["catalogue"]["refused"]

    def edge_bill(self) -> dict[str, Any]:
        return self.edge[0].admin.get("/system/billing", params={"license": self.license}).json()

    def rolled_up(self) -> dict[str, Any] | None:
        found = self.cloud.admin.get("/system/site-usage", params={"license": self.license}).json()
        return next((e for e in found["licenses"] if e["license"] == self.license), None)


def _gateway(device: Device) -> Gateway:
    port = int(device.data.get("edgefaas_gateway_port") or 8080)
    verify = gateway_verify(device)
    url = gateway_base(device, device.address, port)
    client = httpx.Client(
        base_url=url, auth=("admin", admin_password(device)), timeout=120, trust_env=False, verify=verify
    )
    client.verify_tls = verify  # type: ignore[attr-defined]
    return Gateway(device, client, url)


def _device(host: Any) -> Device:
    return connect(host.name, host.data, host.groups)


@pytest.fixture(scope="module")
def sites(whole_inventory) -> Iterator[Sites]:
    everyone = list(whole_inventory)
    plan = next((collaboration(h, everyone) for h in everyone), None)
    if plan is None:
        pytest.skip("the inventory holds no cloud site (hosts of group `cloud`)")
    edge_name = next(name for name in plan.edges)
    edge_site = Site(edge_name, [h for h in everyone if site_of(h) == edge_name])
    switches = [h for h in edge_site.get_group("sonic")]
    peers = sonic.sdwan_peers(_device(switches[0])) if switches else []
    pe = sonic.provider_edge(_device(switches[0]), peers[0]) if peers else None
    if pe is None:
        pytest.skip("the WAN between the sites is the operator's: the tests cannot cut it")
    edge = [_gateway(_device(h)) for h in gateway_hosts(edge_site)]
    cloud = _gateway(_device(first_gateway(plan.cloud)))
    made = edge[0].admin.post(
        "/system/licenses", json={"name": f"itest-sites-{uuid.uuid4().hex[:6]}", "plan": "standard"}
    )
    assert made.status_code in (200, 201), made.text
    license = made.json()
    yield Sites(edge_name, edge, plan.cloud.name, cloud, pe, license["id"], license["token"])
    for gateway in [*edge, cloud]:
        gateway.admin.close()


@contextmanager
def wan_cut(sites: Sites) -> Iterator[None]:
    """The WAN cut between the edge and the cloud, on the provider edge: nothing is forwarded
    between the lab subnet and the cloud segment but the lab machine's own traffic."""
    lab_machine = sites.edge[0].device.data.get("lab_gateway")
    rules = [
        f"FORWARD -o cloud ! -s {lab_machine} -m comment --comment {CUT_TAG} -j DROP",
        f"FORWARD -i cloud ! -d {lab_machine} -m comment --comment {CUT_TAG} -j DROP",
    ]
    for rule in rules:
        sites.pe.host.check_output(f"sudo iptables -w -I {rule}")
    try:
        yield
    finally:
        for rule in rules:
            sites.pe.host.run(f"sudo iptables -w -D {rule}")


def _sql(device: Device, statement: str, *params: Any) -> Any:
    """Run one statement on the gateway's SQLite database (the cloud's: a gateway alone), as the
    attacker who holds the database but not the key would; its rows as JSON."""
    script = (
        "import json, sqlite3, sys\n"
        f"db = sqlite3.connect({GATEWAY_DB!r})\n"
        "rows = db.execute(sys.argv[1], json.loads(sys.argv[2])).fetchall()\n"
        "db.commit()\n"
        "print(json.dumps(rows))\n"
    )
    args = " ".join(shlex.quote(a) for a in (script, statement, json.dumps(list(params))))
    return json.loads(device.host.check_output(f"sudo python3 -c {args}"))


def _eventually(predicate: Callable[[], Any], what: str, timeout: float = ARRIVAL_TIMEOUT) -> Any:
    return wait_for(predicate, timeout, what, interval=1.0)


def test_the_cloud_is_a_cluster_of_its_own_reached_through_the_wan_alone(sites):
    cloud = sites.cloud.device
    nodes = cloud.host.check_output("sudo kubectl get nodes -o name").split()
    assert nodes == [f"node/{hosts.node_name(cloud)}"], nodes
    status = sites.cloud.admin.get("/system/sites").json()
    assert status["role"] == "cloud" and status["site"] == sites.cloud_name, status
    # A switch reaches the cloud through the provider edge, whose route it learnt over BGP.
    switch = sites.edge[0].device
    route = switch.host.check_output(f"ip -4 route get {cloud.address}")
    assert f"via {sites.pe.address}" in route, route
    edge = sites.edge[0].admin.get("/system/sites").json()
    assert edge["role"] == "edge" and edge["catalogue"]["cloud_reachable"] is True, edge


def test_a_function_published_in_the_cloud_reaches_the_edge_and_runs_there(sites):
    started = time.monotonic()
    published = sites.publish(OVERFLOW_FUNCTION, 1, sites.edge_name)
    if published.status_code == 409:  # left by an earlier run: published again as revision 1
        published = sites.publish(OVERFLOW_FUNCTION, 1, sites.edge_name, method="PUT")
    assert published.status_code in (200, 202), published.text
    _eventually(
        lambda: sites.answers_at_edge(OVERFLOW_FUNCTION, 1), f"{OVERFLOW_FUNCTION} answering at the edge"
    )
    print(f"publish in the cloud -> answering at the edge: {time.monotonic() - started:.1f} s")
    answer = sites.call(OVERFLOW_FUNCTION)
    assert answer.headers["X-EdgeFaaS-Offload-Reason"] == "local"
    # Every gateway of the edge follows the catalogue and serves it.
    for at in range(len(sites.edge)):
        assert sites.call(OVERFLOW_FUNCTION, at=at).headers["X-EdgeFaaS-Site"] == sites.edge_name
    deployed = sites.edge[0].admin.get(f"/system/function/{OVERFLOW_FUNCTION}").json()
    assert deployed["annotations"].get("edgefaas.io/catalogue-version"), deployed


def test_a_tampered_function_is_refused_at_the_edge_and_the_verified_one_keeps_serving(sites):
    _eventually(
        lambda: sites.answers_at_edge(OVERFLOW_FUNCTION, 1), f"{OVERFLOW_FUNCTION} revision 1 at the edge"
    )
    before = {(r["function"], r["version"]) for r in sites.refusals()}
    with wan_cut(sites):
        # Revision 2 published while the edge cannot reach the cloud, then its code swapped in the
        # cloud's database before the edge fetches it: the signed digest no longer matches.
        assert sites.publish(OVERFLOW_FUNCTION, 2, sites.edge_name, method="PUT").status_code == 200
        (spec,) = _sql(
            sites.cloud.device, "SELECT spec FROM catalogue WHERE function = ?", OVERFLOW_FUNCTION
        )[0]
        swapped = json.loads(spec)
        swapped["code"] = code(666)
        _sql(
            sites.cloud.device,
            "UPDATE catalogue SET spec = ? WHERE function = ?",
            json.dumps(swapped),
            OVERFLOW_FUNCTION,
        )
    refused = _eventually(
        lambda: [r for r in sites.refusals() if (r["function"], r["version"]) not in before],
        "the edge refusing it",
    )
    assert refused[0]["function"] == OVERFLOW_FUNCTION and refused[0]["reason"] == "tampered", refused
    assert "does not match its signed digest" in refused[0]["error"]
    answer = sites.call(OVERFLOW_FUNCTION)
    assert answer.json()["revision"] == 1 and answer.headers["X-EdgeFaaS-Site"] == sites.edge_name
    # A genuine publish afterwards is taken.
    assert sites.publish(OVERFLOW_FUNCTION, 3, sites.edge_name, method="PUT").status_code == 200
    _eventually(lambda: sites.answers_at_edge(OVERFLOW_FUNCTION, 3), "the genuine revision 3 at the edge")


def _cloud_runs(sites: Sites, function: str) -> list[list[int]]:
    """The calls the cloud ran for the edge site: its ledger rows under the payer site:<edge>."""
    return _sql(
        sites.cloud.device,
        "SELECT COUNT(*), COALESCE(SUM(amount_micros), 0) FROM ledger WHERE license_id = ? AND function = ?",
        f"site:{sites.edge_name}",
        function,
    )


def test_a_cloud_only_function_called_at_the_edge_runs_in_the_cloud_and_is_billed_once(sites):
    calls_before = sum(f["invocations"] for f in sites.edge_bill()["functions"])
    [[ran_before, _]] = _cloud_runs(sites, CLOUD_ONLY)
    key = f"sites-{uuid.uuid4().hex[:8]}"
    first = sites.call(CLOUD_ONLY, key=key)
    assert first.status_code == 200, first.text
    assert first.headers["X-EdgeFaaS-Site"] == sites.cloud_name
    assert first.headers["X-EdgeFaaS-Offload-Reason"] == "not_deployed"
    # system_info names the pod it ran in: the cloud's deployment of the function.
    assert first.json()["name"].startswith(CLOUD_ONLY.replace("_", "-")), first.json()
    # A retry, at the edge's other gateway: replayed, neither run nor billed again.
    again = sites.call(CLOUD_ONLY, key=key, at=len(sites.edge) - 1)
    assert again.status_code == 200 and again.headers.get("X-Idempotent-Replay") == "true"
    bill = sites.edge_bill()
    assert sum(f["invocations"] for f in bill["functions"]) == calls_before + 1, bill
    # The cloud ran it once for the edge and priced it nothing: billed where the caller entered.
    assert _cloud_runs(sites, CLOUD_ONLY) == [[ran_before + 1, 0]]


def test_a_load_past_the_edge_objective_runs_part_of_the_calls_in_the_cloud(sites):
    _eventually(lambda: sites.answers_at_edge(OVERFLOW_FUNCTION, 3), f"{OVERFLOW_FUNCTION} at the edge")
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: sites.call(OVERFLOW_FUNCTION, {"sleep": 1.5}), range(16)))
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers if a.status_code != 200]
    reasons = [(a.headers["X-EdgeFaaS-Site"], a.headers["X-EdgeFaaS-Offload-Reason"]) for a in answers]
    assert (sites.edge_name, "local") in reasons, reasons
    assert (sites.cloud_name, "queue_depth") in reasons, reasons
    assert {site for site, _ in reasons} == {sites.edge_name, sites.cloud_name}


def test_with_the_wan_cut_the_edge_serves_its_functions_and_the_roll_up_is_exact_after(sites):
    _eventually(
        lambda: (
            (sites.rolled_up() or {}).get("sites", {}).get(sites.edge_name, {}).get("calls")
            == sum(f["invocations"] for f in sites.edge_bill()["functions"])
        ),
        "the roll-up caught up before the cut",
    )
    with wan_cut(sites):
        # The cut drops packets: the edge learns of it at its next catalogue round (seconds).
        _eventually(
            lambda: sites.edge[0].admin.get("/system/sites").json()["catalogue"]["cloud_reachable"] is False,
            "the edge noticing the cloud is away",
            timeout=30,
        )
        for _ in range(5):
            local = sites.call("FuncC", {"name": "edge"})
            assert local.status_code == 200, local.text
            assert local.headers["X-EdgeFaaS-Site"] == sites.edge_name
        # A function only the cloud has is refused at once, and billed nowhere.
        away = sites.call(CLOUD_ONLY)
        assert away.status_code == 503 and "unreachable" in away.json()["error"], away.text
    bill = sites.edge_bill()
    calls = sum(f["invocations"] for f in bill["functions"])
    entry = _eventually(
        lambda: (e := sites.rolled_up()) and e["sites"].get(sites.edge_name, {}).get("calls") == calls and e,
        "the roll-up catching up after the cut",
    )
    assert entry["sites"][sites.edge_name]["amount_micros"] == round(bill["total"] * 1_000_000), (entry, bill)
    assert set(entry["sites"]) == {sites.edge_name}, "the cloud billed none of the edge's calls itself"


def _anycast_paths(sites: Sites, anycast: str) -> list[dict[str, Any]]:
    entry = sonic.bgp_route(sites.pe, f"{anycast}/32")
    return list(entry["paths"]) if entry else []


def _as_path(path: dict[str, Any]) -> list[str]:
    return str((path.get("aspath") or {}).get("string") or path.get("path") or "").split()


def test_the_cloud_is_the_wan_s_fallback_when_no_edge_switch_announces_the_api(sites):
    """The cloud announces the API's anycast address behind the edges (its AS prepended): the PE
    prefers an edge switch while one announces it, and the cloud once none does."""
    cloud = sites.cloud.device
    if not cloud.data.get("sdwan_peers"):
        pytest.skip("the cloud peers with no SD-WAN provider edge (its sdwan_peers)")
    plan = json.loads(cloud.host.file("/etc/edgefaas/wan.json").content_string)
    anycast = plan["anycast"].split("/")[0]
    asn = str(cloud.data["bgp_asn"])

    def via_cloud(path: dict[str, Any]) -> bool:
        return _as_path(path)[:1] == [asn]

    paths = _eventually(
        lambda: (p := _anycast_paths(sites, anycast)) and any(via_cloud(x) for x in p) and p,
        "the cloud's path to the anycast address at the PE",
        timeout=60,
    )
    cloud_path = next(p for p in paths if via_cloud(p))
    edge_best = [p for p in paths if p.get("bestpath", {}).get("overall")]
    assert edge_best and not via_cloud(edge_best[0]), paths
    assert len(_as_path(cloud_path)) > len(_as_path(edge_best[0])), (cloud_path, edge_best)

    switches = [g.device for g in sites.edge if g.device.data.get("sdwan_peers")]
    ca_file = "/tmp/edgefaas-cloud-ca.pem"
    ca = cloud.host.file("/etc/edgefaas/ca.pem").content_string
    sites.pe.host.check_output(f"printf %s {shlex.quote(ca)} > {ca_file}")
    try:
        for switch in switches:
            switch.host.check_output(f"sudo mkdir -p {Path(DRAIN_FILE).parent} && sudo touch {DRAIN_FILE}")
        _eventually(
            lambda: (p := _anycast_paths(sites, anycast)) and all(via_cloud(x) for x in p),
            "only the cloud announcing the anycast address",
            timeout=30,
        )
        url = f"https://{anycast}:{plan['api_port']}/function/{CLOUD_ONLY}"
        called = sonic.wan_client(
            sites.pe, f"curl -sS --max-time 20 --cacert {ca_file} -X POST -d '{{}}' {shlex.quote(url)}"
        )
        assert called.rc == 0, called.stderr
        assert json.loads(called.stdout)["name"].startswith(CLOUD_ONLY.replace("_", "-")), called.stdout
    finally:
        for switch in switches:
            switch.host.run(f"sudo rm -f {DRAIN_FILE}")
    _eventually(
        lambda: any(
            p.get("bestpath", {}).get("overall") and not via_cloud(p) for p in _anycast_paths(sites, anycast)
        ),
        "an edge switch the PE's best path again",
        timeout=60,
    )
