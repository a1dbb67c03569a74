"""The function API in the SD-WAN (issue 17, Scenario 1.3), seen from a client beyond the WAN.

    pytest -m lab tests/integration/test_edgefaas_wan.py [--inventory inventories/mylab.py]

Every switch runs a gateway and announces, through STATE_DB ADVERTISE_NETWORK_TABLE, the
API's anycast address while its gateway is healthy and one address per public function
with a BGP large community <switch ASN>:<slot>:<version>. The client is the WAN client
namespace behind the SD-WAN provider edge (PE; the virtual lab's `wan` device): it calls the
anycast address and a function's own address; the PE's BGP table is read with vtysh. A
function deployed through one gateway answers at the anycast wherever the PE forwards it.
Under a steady load from that client the gateway the PE prefers is SIGKILLed: its
announcement leaves the PE's table within 3 s (timed on the PE, wan_watch.py), calls go on
through the other switch, and every call that succeeded is billed exactly once. A function
removed through the API has its route withdrawn. Skipped where the inventory plans no WAN or
the tests cannot log in to the PE.
"""

from __future__ import annotations

import json
import shlex
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.integration import fault_figures
from tests.integration import sonic_support as sonic
from tests.integration import wan_support as wan
from tests.integration.support import wait_for

# Issue 17: an announcement leaves the WAN router's table within 3 s of its gateway failing.
WITHDRAWAL_LIMIT_S = 3.0
CHANGE_TIMEOUT = 30
# A gateway SIGKILLed is started again by systemd and announced again once healthy.
RESTART_TIMEOUT = 90
LOAD_THREADS = 8
# A public function of the WAN plan, called at its own address, then removed and put back.
PUBLIC_FUNCTION = "system_info"
FIGURES = Path(__file__).resolve().parents[2] / "reports" / "edgefaas-wan-figures.txt"


@pytest.fixture(scope="module")
def site(inventory) -> wan.Site:
    found = wan.find_site(inventory)
    if isinstance(found, str):
        pytest.skip(found)
    return found


@pytest.fixture(scope="module")
def admins(site):
    """An admin client of every switch's gateway, by switch name."""
    clients = {s.name: site.admin(s) for s in site.switches}
    yield clients
    for client in clients.values():
        client.close()


def _answering(site: wan.Site):
    """A switch whose gateway answers now (one may be restarting)."""
    return wait_for(
        lambda: next((s for s in site.switches if wan.healthy(site.gateway_url(s), site.verify)), None),
        RESTART_TIMEOUT,
        "a gateway that answers /healthz",
        interval=0.5,
    )


def _any_admin(site: wan.Site, admins) -> httpx.Client:
    return admins[_answering(site).name]


@pytest.fixture(scope="module")
def license(site, admins):
    made = wan.new_license(admins[site.switches[0].name], "itest-wan")
    yield made
    _any_admin(site, admins).delete(f"/system/licenses/{made['id']}")


@pytest.fixture(scope="module")
def figures():
    lines: list[str] = []
    yield lines
    if lines:
        FIGURES.parent.mkdir(exist_ok=True)
        FIGURES.write_text("".join(f"{line}\n" for line in lines))


def _curl(site: wan.Site, url: str, *args: str, timeout: float = 30) -> tuple[int, dict[str, str], str]:
    """(status, headers, body) of curl from the WAN client; an AssertionError when curl itself fails."""
    verify = ["--cacert", site.pe_ca_file()] if url.startswith("https:") else []
    command = " ".join(["curl -sS -i", f"--max-time {timeout:g}", *map(shlex.quote, [*verify, *args, url])])
    result = sonic.wan_client(site.pe, command)
    assert result.rc == 0, f"curl {url} from the WAN client on {site.pe.name}: rc {result.rc} {result.stderr}"
    head, _, body = result.stdout.replace("\r\n", "\n").partition("\n\n")
    lines = head.splitlines()
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


def _wait_announced_by_all(site: wan.Site, prefix: str, timeout: float = CHANGE_TIMEOUT) -> None:
    addresses = {s.address for s in site.switches}
    wait_for(
        lambda: addresses <= wan.announcers(site.pe, prefix),
        timeout,
        lambda: (
            f"{site.pe.name} to hold {prefix} from every switch {sorted(addresses)} "
            f"(it has it from {sorted(wan.announcers(site.pe, prefix))})"
        ),
        interval=0.5,
    )


# -- reaching the API and a function from the WAN --------------------------------------------------


def test_the_wan_client_calls_the_api_at_its_anycast_address(site, admins, license):
    status, _, body = _curl(site, f"{site.api_url}/healthz", timeout=5)
    assert (status, body.strip()) == (200, "OK"), f"{site.api_url}/healthz: {status} {body[:200]}"
    key = uuid.uuid4().hex
    call = [
        "-H",
        f"Authorization: Bearer {license['token']}",
        "-H",
        "Content-Type: application/json",
        "-H",
        f"X-Call-Id: {key}",
        "--data",
        json.dumps({"message": key}),
    ]
    url = f"{site.api_url}/function/{wan.LICENSED_FUNCTION}"
    status, headers, body = _curl(site, url, *call)
    assert status == 200, f"POST {url} from the WAN client: {status} {body[:300]}"
    answer = json.loads(body)
    assert (answer.get("function"), answer.get("message")) == (wan.LICENSED_FUNCTION, key), answer
    assert headers.get("x-call-id") == key, f"expected X-Call-Id {key} kept end to end: {headers}"
    # The same key again (a client that lost the answer): its first answer, billed once.
    status, headers, again = _curl(site, url, *call)
    assert status == 200 and headers.get("x-idempotent-replay") == "true", (status, headers, again[:200])
    assert json.loads(again) == answer
    billed = wan.billed_calls(admins[site.switches[0].name], license["id"])
    assert billed == 1, f"one call made twice with one X-Call-Id over the WAN: billed {billed}"


def test_a_public_function_answers_at_its_own_address(site, admins):
    plan = next(iter(site.plans.values()))
    if PUBLIC_FUNCTION not in plan.functions:
        pytest.skip(f"{PUBLIC_FUNCTION} has no WAN address in this inventory's plan")
    apis = {e["name"]: e for e in admins[site.switches[0].name].get("/system/apis").json()}
    entry = apis.get(PUBLIC_FUNCTION, {}).get("wan")
    address = str(plan.functions[PUBLIC_FUNCTION].address)
    assert entry and entry["address"] == address, (
        f"/system/apis: expected {PUBLIC_FUNCTION} at {address}: {apis.get(PUBLIC_FUNCTION)}"
    )
    assert entry["anycast"] == str(plan.anycast), entry
    _wait_announced_by_all(site, f"{address}/32")
    # No credentials, no /function/<name> prefix: a WAN client needs only the address.
    status, _, body = _curl(site, entry["url"])
    assert status == 200, f"GET {entry['url']} from the WAN client: {status} {body[:300]}"
    answer = json.loads(body)
    assert {"name", "profile", "arch"} <= set(answer), f"not {PUBLIC_FUNCTION}'s answer: {answer}"


def test_the_pe_holds_the_anycast_from_every_switch_and_each_function_with_its_community(site, admins):
    _wait_announced_by_all(site, site.anycast)
    for path in wan.paths(site.pe, site.anycast):
        switch = site.switch_at(wan.peer_of(path))
        if switch is None:
            # Only a fallback comes from elsewhere: a cloud site's, its AS prepended (test_sites.py).
            assert not wan.originated(path), (
                f"{site.anycast} from {wan.peer_of(path)}, which is no switch: {path}"
            )
            continue
        community = site.plans[switch.name].api_community
        assert community in wan.standard_communities(path), (
            f"{site.anycast} from {switch.name}: expected community {community}: {path.get('community')}"
        )
    checked = []
    for switch in site.switches:
        plan = site.plans[switch.name]
        admin = admins[switch.name]
        apis = {e["name"]: e for e in admin.get("/system/apis").json()}
        for name, function in sorted(plan.functions.items()):
            status = admin.get(f"/system/function/{name}")
            if status.status_code == 404 or not status.json().get("availableReplicas"):
                continue  # not served: not announced (the next test covers a withdrawal)
            version = status.json()["version"]
            expected = f"{plan.asn}:{function.id}:{version}"
            listed = (apis.get(name) or {}).get("wan") or {}
            assert (listed.get("address"), listed.get("community")) == (str(function.address), expected), (
                f"{switch.name} /system/apis {name}: expected {function.address} with {expected}: {listed}"
            )
            prefix = f"{function.address}/32"
            wait_for(
                lambda prefix=prefix, switch=switch: switch.address in wan.announcers(site.pe, prefix),
                CHANGE_TIMEOUT,
                f"{site.pe.name} to hold {name}'s {prefix} from {switch.name}",
                interval=0.5,
            )
            found = [
                p
                for p in wan.paths(site.pe, prefix)
                if wan.peer_of(p) == switch.address and wan.originated(p)
            ]
            assert wan.large_community(found[0]) == expected, (
                f"{prefix} ({name} version {version}) from {switch.name}: expected large community "
                f"{expected} (ASN:slot:version), found {wan.large_community(found[0])!r}"
            )
            assert plan.function_community in wan.standard_communities(found[0]), found[0]
            checked.append(f"{name}@{switch.name}")
    assert checked, "no function of the WAN plan is served: nothing announced to check"


ECHO = """
def handle(event, context):
    return {"call_id": context.call_id}
"""


def test_a_function_deployed_through_one_gateway_answers_at_the_anycast(site, license):
    """Active-active: the WAN client reaches whichever gateway the PE prefers, so a function
    deployed through the other one must answer there as soon as its deploy has answered."""
    if len(site.switches) < 2:
        pytest.skip("one gateway in this inventory")
    _wait_announced_by_all(site, site.anycast)
    reached = site.switch_at(wan.preferred(site.pe, site.anycast) or "")
    assert reached is not None, f"{site.pe.name} forwards {site.anycast} to no switch"
    other = next(s for s in site.switches if s is not reached)
    name = f"itest-wan-{uuid.uuid4().hex[:6]}"
    # A deploy waits for the function's readiness (up to 90 s): a client that waits longer.
    with site.admin(other, timeout=180) as admin:
        deployed = admin.post("/system/functions", json={"service": name, "code": ECHO, "public": False})
        assert deployed.status_code in (200, 201, 202), deployed.text
        try:
            url = f"{site.api_url}/function/{name}"
            auth = f"Authorization: Bearer {license['token']}"
            status, _, body = _curl(
                site, url, "-H", auth, "-H", "Content-Type: application/json", "--data", "{}"
            )
            assert status == 200, (
                f"{name}, deployed through {other.name}'s gateway, called from the WAN client at the "
                f"anycast (forwarded to {reached.name}): {status} {body[:200]}"
            )
        finally:
            admin.request("DELETE", "/system/functions", json={"functionName": name})


# -- a gateway killed under load -------------------------------------------------------------------


def test_a_gateway_killed_under_load_fails_only_its_running_calls_and_bills_each_call_once(
    site, admins, license, figures
):
    if len(site.switches) < 2:
        pytest.skip("one gateway in this inventory: nothing to fail over to")
    _wait_announced_by_all(site, site.anycast)
    victim = site.switch_at(wait_for(lambda: wan.preferred(site.pe, site.anycast), CHANGE_TIMEOUT, "a route"))
    assert victim is not None, f"{site.pe.name} forwards {site.anycast} to no switch"
    survivor = next(s for s in site.switches if s is not victim)
    before = wan.billed_calls(admins[survivor.name], license["id"])
    watch = wan.PathWatch(site.pe, site.anycast, victim.address)
    load = wan.WanLoad(site.pe, site.api_url, license["token"], LOAD_THREADS, ca_pem=site.ca_pem)
    with load, watch:
        wait_for(lambda: load.succeeded() >= 40, 60, "calls flowing from the WAN client", interval=0.5)
        flowing = load.succeeded()
        # From before the kill command: its SSH round trip is counted against the limit.
        killed_at = time.time()
        wan.kill_gateway(victim)
        moved = wan.seconds_until(
            lambda: wan.preferred(site.pe, site.anycast) == survivor.address, CHANGE_TIMEOUT, interval=0.1
        )
        wait_for(
            lambda: load.succeeded() >= flowing + 40,
            60,
            lambda: f"calls to go on after the kill (progress {load.progress()})",
            interval=0.5,
        )
        # systemd starts the killed gateway again; its switch announces the anycast again.
        wait_for(
            lambda: victim.address in wan.announcers(site.pe, site.anycast),
            RESTART_TIMEOUT,
            f"{victim.name} to announce {site.anycast} again after systemd's restart",
            interval=0.5,
        )
        wait_for(lambda: load.succeeded() >= flowing + 80, 60, "calls after the restart", interval=0.5)
        withdrawn, back = watch.changes(since=killed_at)
        result = load.stop()
    failures = result["failures"]
    billed = wan.billed_calls(_any_admin(site, admins), license["id"]) - before
    figures.append(
        f"gateway on {victim.name} SIGKILLed under {LOAD_THREADS} WAN callers: anycast withdrawn in "
        f"{withdrawn if withdrawn is None else f'{withdrawn:.2f}'} s, announced again after "
        f"{back if back is None else f'{back:.1f}'} s; {result['calls']} calls, {result['succeeded']} "
        f"succeeded ({result['retried_ok']} on their retry, {result['replayed']} replayed), "
        f"{result['failed']} failed, {billed} billed; API unanswered at the anycast for {result['outages']} s"
    )
    print(figures[-1])
    print("failed calls (first try / retry):", [f"{f['first']} / {f['retry']}" for f in failures[:8]])
    fault_figures.record(
        "gateway SIGKILL (WAN callers)",
        calls=result["calls"],
        failed=result["retried"],
        # A failed call got a status on its retry (5xx): only one with no answer at all is lost.
        lost=sum(1 for f in failures if not f["retry"][:3].isdigit()),
        billing_errors=abs(billed - result["succeeded"]),
        recover_s=max(result["outages"], default=0.0),
        detail=f"{result['failed']} failed after their retry, anycast withdrawn in "
        f"{withdrawn if withdrawn is None else f'{withdrawn:.2f}'} s",
    )
    assert withdrawn is not None and withdrawn <= WITHDRAWAL_LIMIT_S, (
        f"{site.pe.name}: {victim.name}'s {site.anycast} left the table "
        f"{'never' if withdrawn is None else f'{withdrawn:.2f} s'} after its gateway was killed; "
        f"expected within {WITHDRAWAL_LIMIT_S} s"
    )
    assert moved is not None, (
        f"{site.pe.name}: expected {site.anycast} forwarded to {survivor.name} ({survivor.address}) "
        f"once {victim.name}'s gateway was killed"
    )
    assert result["failed"] <= LOAD_THREADS, (
        f"{result['failed']} calls failed after their retry; at most the {LOAD_THREADS} in flight "
        f"when the gateway died may: {failures[:5]}"
    )
    assert billed == result["succeeded"], (
        f"{result['succeeded']} calls succeeded (distinct X-Call-Id keys), {billed} billed; "
        f"failed: {failures[:5]}"
    )


# -- a rolling upgrade ------------------------------------------------------------------------------

# What deploys/edgefaas.py runs on each switch in turn (pyinfra's _serial) when the gateway changed.
RESTARTER = "/usr/local/sbin/edgefaas-gateway-restart"


def test_a_rolling_restart_of_every_gateway_fails_no_call(site, admins, license, figures):
    """An upgrade as the deploy rolls it: one switch at a time, its announcements withdrawn
    first, restored once its gateway is healthy; WAN callers see no failed call."""
    if len(site.switches) < 2:
        pytest.skip("one gateway in this inventory: a restart leaves nobody to serve")
    _wait_announced_by_all(site, site.anycast)
    before = wan.billed_calls(_any_admin(site, admins), license["id"])
    took = []
    with wan.WanLoad(site.pe, site.api_url, license["token"], LOAD_THREADS, ca_pem=site.ca_pem) as load:
        wait_for(lambda: load.succeeded() >= 40, 60, "calls flowing from the WAN client", interval=0.5)
        for switch in site.switches:
            started = time.monotonic()
            done = switch.host.run(f"sudo {RESTARTER}")
            assert done.rc == 0, f"{switch.name}: {RESTARTER} failed: {done.stderr[-1000:]}"
            took.append(f"{switch.name} {time.monotonic() - started:.1f} s")
            # The next switch goes only once this one announces again, as the deploy's next host
            # would find it.
            _wait_announced_by_all(site, site.anycast)
        flowing = load.succeeded()
        wait_for(lambda: load.succeeded() >= flowing + 20, 60, "calls after the last restart", interval=0.5)
        result = load.stop()
    billed = wan.billed_calls(_any_admin(site, admins), license["id"]) - before
    figures.append(
        f"rolling restart ({', '.join(took)}) under {LOAD_THREADS} WAN callers: {result['calls']} calls, "
        f"{result['succeeded']} succeeded ({result['retried_ok']} on their retry), "
        f"{result['failed']} failed, {billed} billed"
    )
    print(figures[-1])
    assert result["failed"] == 0, (
        f"{result['failed']} calls failed during a rolling restart: {result['failures'][:5]}"
    )
    # A first try may be reset, never answered wrongly or left hanging: when a switch announces
    # again the PE spreads the anycast over two paths, and a connection hashed anew to the other
    # switch meets a TCP reset there (its retry, with the same key, is answered and billed once).
    # A gateway stopped mid-call, or a 5xx, would show as another error or a timeout.
    odd = [f for f in result.get("first_failures", []) if not f["first"].startswith(RESET_ERRORS)]
    assert not odd, f"first tries that failed other than by a reset during a rolling restart: {odd[:5]}"
    assert billed == result["succeeded"], f"{result['succeeded']} calls succeeded, {billed} billed"


# How http.client reports a connection the other end reset or closed before answering.
RESET_ERRORS = (
    "RemoteDisconnected",
    "ConnectionResetError",
    "BrokenPipeError",
    "SSLEOFError",
    "SSLZeroReturnError",
)


# -- a removed function ----------------------------------------------------------------------------


def test_a_function_removed_through_the_api_has_its_route_withdrawn(site, figures):
    """The plan's public function is removed through the API and put back as it was: each switch
    withdraws its address once no replica serves it, and announces it again after."""
    plan = next(iter(site.plans.values()))
    if PUBLIC_FUNCTION not in plan.functions:
        pytest.skip(f"{PUBLIC_FUNCTION} has no WAN address in this inventory's plan")
    # A deploy waits for the function's readiness (up to 90 s): a client that waits longer.
    admin = site.admin(_answering(site), timeout=180)
    current = admin.get(f"/system/function/{PUBLIC_FUNCTION}")
    assert current.status_code == 200, current.text
    code = admin.get(f"/system/function/{PUBLIC_FUNCTION}/code")
    assert code.status_code == 200, code.text
    body = {"service": PUBLIC_FUNCTION, "code": code.text}
    for field in ("constraints", "limits", "public", "envVars"):
        if current.json().get(field) is not None:
            body[field] = current.json()[field]
    prefix = f"{plan.functions[PUBLIC_FUNCTION].address}/32"
    _wait_announced_by_all(site, prefix)
    try:
        deleted = admin.request("DELETE", "/system/functions", json={"functionName": PUBLIC_FUNCTION})
        assert deleted.status_code == 200, deleted.text
        started = time.monotonic()
        gone = wan.seconds_until(lambda: not wan.announcers(site.pe, prefix), CHANGE_TIMEOUT, interval=0.2)
        seconds = time.monotonic() - started
        figures.append(f"{PUBLIC_FUNCTION} removed through the API: {prefix} withdrawn in {seconds:.1f} s")
        assert gone is not None, (
            f"{site.pe.name} still holds {prefix} from {sorted(wan.announcers(site.pe, prefix))} "
            f"{CHANGE_TIMEOUT} s after {PUBLIC_FUNCTION} was removed"
        )
        listed = {e["name"] for e in admin.get("/system/apis").json()}
        assert PUBLIC_FUNCTION not in listed, f"/system/apis still lists the removed {PUBLIC_FUNCTION}"
        url = site.service_url(prefix[:-3])
        verify = f"--cacert {site.pe_ca_file()} " if site.ca_pem else ""
        unreachable = sonic.wan_client(site.pe, f"curl -sS --max-time 3 {verify}{url}/")
        assert unreachable.rc != 0, f"expected {url}/ unreachable: {unreachable.stdout[:200]}"
    finally:
        _restore(admin, body)
        admin.close()
    _wait_announced_by_all(site, prefix, timeout=120)


def _restore(admin: httpx.Client, body: dict) -> None:
    """Deploy the function again as it was (the deploy's fields: a re-deploy changes nothing)."""

    def deployed() -> bool:
        answer = admin.post("/system/functions", json=body)
        # 409: the old one is still leaving Kubernetes.
        assert answer.status_code in (200, 201, 202, 409), answer.text
        return answer.status_code != 409

    wait_for(deployed, 120, f"{body['service']} deployed again", interval=2)
    wait_for(
        lambda: admin.get(f"/system/function/{body['service']}").json().get("availableReplicas"),
        120,
        f"{body['service']} available again",
        interval=1,
    )
