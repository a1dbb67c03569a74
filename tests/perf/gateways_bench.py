"""Figures for the gateways on every switch (issue 17), on an inventory's lab (the virtual one by default).

    .venv/bin/python -m tests.perf.gateways_bench [--inventory inventories/lab.py] [--tries 10]
        [--threads 8] [--seconds 10] [--users 16] [--calls 10] [--async-calls 24]
        [--parts failover,throughput,exactly_once,async]

Prints, and writes to reports/gateways-figures.txt (and .json):

- failover after a gateway kill, p50 (and max) over --tries: a steady load of --threads callers
  from the WAN client (behind the SD-WAN provider edge) calls the API's anycast address, each
  failed call retried once with its X-Call-Id; the gateway of the switch the PE forwards the
  anycast to is SIGKILLed. Per try: calls failed after their retry, seconds from the kill until
  the PE's table no longer has that switch's own announcement of the anycast (looked at on the PE
  every 20 ms, tests/integration/wan_watch.py; the kill's SSH round trip included), seconds the
  anycast answered nothing (the WAN client asks
  /healthz every 50 ms: from its last answer before the kill to its first after), seconds until
  the restarted gateway's switch announces it again, and calls succeeded against billed;
- throughput with two gateways against one: --threads callers on this machine call the
  licensed function for --seconds through the first gateway's address only, then alternately
  through both gateways' addresses, two rounds each, side by side in one run (req/s);
- billing exactly-once under 2 gateways x --users: every user sends each of its --calls calls
  with one X-Call-Id to both gateways at the same moment; distinct keys against calls billed;
- asynchronous calls across a gateway restart: --async-calls calls of a 1 s function queued
  through both gateways, then the first switch's gateway SIGKILLed: queued, completed (a
  callback received), lost, repeated callbacks, and billed.

A switch powered off cannot be measured in the virtual lab: a lab device cannot be powered off
and keep its disk (lab down removes it), so the figures say so instead of a number.
Run after deploys/edgefaas.py; it makes a license per part and one throwaway function, and
removes them; the killed gateways are started again by systemd.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from edgefaas.deploy.inventory import load_inventory
from edgefaas.perf.stats import percentile
from tests.integration import wan_support as wan
from tests.integration.conftest import REPO
from tests.integration.support import Callbacks

FIGURES = REPO / "reports" / "gateways-figures.txt"
RESTART_TIMEOUT = 90.0
POWER_OFF = (
    "switch power-off: not measured: a virtual lab device cannot be powered off and keep its disk "
    "(lab down removes it); on real switches, cut one's power under the same load"
)
SLEEPER = """
import time


def handle(event, context):
    data = event.json(default={}) or {}
    time.sleep(float(data.get("seconds", 1)))
    return {"call_id": context.call_id}
"""


def _stat(values: list[float], unit: str = "s", digits: int = 2) -> str:
    if not values:
        return "no value"
    return (
        f"p50 {percentile(values, 50):.{digits}f} {unit} (max {max(values):.{digits}f}, {len(values)} tries)"
    )


def _wait(predicate, timeout: float, what: str, interval: float = 0.5) -> None:
    if wan.seconds_until(predicate, timeout, interval) is None:
        raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")


def _answering(site: wan.Site):
    for _ in range(int(RESTART_TIMEOUT / 0.5)):
        for switch in site.switches:
            if wan.healthy(site.gateway_url(switch), site.verify):
                return switch
        time.sleep(0.5)
    raise SystemExit("no gateway answers /healthz")


def _all_announce(site: wan.Site) -> bool:
    return {s.address for s in site.switches} <= wan.announcers(site.pe, site.anycast)


# -- failover -------------------------------------------------------------------------------------


def failover_try(site: wan.Site, token: str, license_id: str, threads: int) -> dict[str, Any]:
    _wait(lambda: _all_announce(site), RESTART_TIMEOUT, f"every switch to announce {site.anycast}")
    victim = site.switch_at(wan.preferred(site.pe, site.anycast) or "")
    if victim is None:
        raise SystemExit(f"{site.pe.name} forwards {site.anycast} to no switch")
    with site.admin(_answering(site)) as admin:
        before = wan.billed_calls(admin, license_id)
    watch = wan.PathWatch(site.pe, site.anycast, victim.address)
    with wan.WanLoad(site.pe, site.api_url, token, threads, ca_pem=site.ca_pem) as load, watch:
        _wait(lambda: load.succeeded() >= 20, 60, "calls flowing from the WAN client")
        killed_at = time.time()
        wan.kill_gateway(victim)
        gone = wan.seconds_until(lambda: victim.address not in wan.announcers(site.pe, site.anycast), 30)
        if gone is not None:  # else the watch says it never left: the try is counted as such
            _wait(lambda: _all_announce(site), RESTART_TIMEOUT, f"{victim.name} to announce again")
        time.sleep(2)  # calls through both switches again
        withdrawn, announced = watch.changes(since=killed_at)
        result = load.stop()
    with site.admin(_answering(site)) as admin:
        billed = wan.billed_calls(admin, license_id) - before
    return {
        "victim": victim.name,
        "failed": result["failed"],
        "calls": result["calls"],
        "succeeded": result["succeeded"],
        "billed": billed,
        "withdrawn_s": withdrawn,
        "unanswered_s": max(result["outages"], default=0.0),
        "announced_again_s": announced,
        "failures": [f"{f['first']} / {f['retry']}" for f in result["failures"][:3]],
    }


def failover(site: wan.Site, tries: int, threads: int) -> tuple[list[str], dict[str, Any]]:
    with site.admin(_answering(site)) as admin:
        license = wan.new_license(admin, "bench-failover")
    runs = []
    try:
        for number in range(tries):
            runs.append(failover_try(site, license["token"], license["id"], threads))
            print(f"  failover try {number + 1}/{tries}: {runs[-1]}", flush=True)
    finally:
        with site.admin(_answering(site)) as admin:
            admin.delete(f"/system/licenses/{license['id']}")
    withdrawn = [r["withdrawn_s"] for r in runs if r["withdrawn_s"] is not None]
    again = [r["announced_again_s"] for r in runs if r["announced_again_s"] is not None]
    lines = [
        f"failover, gateway SIGKILLed under {threads} WAN callers (retry once, same X-Call-Id):",
        f"  calls failed after their retry: {_stat([float(r['failed']) for r in runs], 'calls', 0)}",
        f"  anycast route gone from the PE's table: {_stat(withdrawn)}"
        + ("" if len(withdrawn) == len(runs) else f"; NOT withdrawn in {len(runs) - len(withdrawn)} tries"),
        f"  anycast unanswered at the WAN client: {_stat([r['unanswered_s'] for r in runs])}",
        f"  killed switch announcing again (systemd restart): {_stat(again)}",
        f"  calls succeeded {sum(r['succeeded'] for r in runs)}, billed {sum(r['billed'] for r in runs)}"
        f" (of {sum(r['calls'] for r in runs)} made)",
        f"  {POWER_OFF}",
    ]
    return lines, {"tries": runs}


# -- throughput -----------------------------------------------------------------------------------


def _round(urls: list[str], token: str, threads: int, seconds: float, verify: Any = True) -> tuple[int, int]:
    """(calls answered 200, other outcomes) in `seconds`, each thread alternating over `urls`."""
    counts: Counter[str] = Counter()
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def user(offset: int) -> None:
        clients = [
            httpx.Client(
                base_url=url,
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
                trust_env=False,
                verify=verify,
            )
            for url in urls
        ]
        number = offset
        try:
            while time.monotonic() < deadline:
                client = clients[number % len(clients)]
                number += 1
                try:
                    ok = client.post(f"/function/{wan.LICENSED_FUNCTION}", json={}).status_code == 200
                except httpx.HTTPError:
                    ok = False
                with lock:
                    counts["ok" if ok else "failed"] += 1
        finally:
            for client in clients:
                client.close()

    workers = [threading.Thread(target=user, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return counts["ok"], counts["failed"]


def throughput(site: wan.Site, threads: int, seconds: float) -> tuple[list[str], dict[str, Any]]:
    urls = [site.gateway_url(s) for s in site.switches[:2]]
    with site.admin(_answering(site)) as admin:
        license = wan.new_license(admin, "bench-throughput")
    found: dict[str, list[tuple[int, int]]] = {"one": [], "two": []}
    try:
        _round(urls, license["token"], threads, 2, site.verify)  # warm both gateways and the function
        for _ in range(2):
            found["one"].append(_round(urls[:1], license["token"], threads, seconds, site.verify))
            found["two"].append(_round(urls, license["token"], threads, seconds, site.verify))
    finally:
        with site.admin(_answering(site)) as admin:
            admin.delete(f"/system/licenses/{license['id']}")
    rate = {side: sum(ok for ok, _ in rounds) / (seconds * len(rounds)) for side, rounds in found.items()}
    failed = {side: sum(bad for _, bad in rounds) for side, rounds in found.items()}
    lines = [
        f"throughput, {threads} callers on this machine, {wan.LICENSED_FUNCTION}, "
        f"2 rounds of {seconds:g} s each:",
        f"  one gateway ({site.switches[0].name}): {rate['one']:.1f} req/s ({failed['one']} failed)",
        f"  two gateways alternately ({', '.join(s.name for s in site.switches[:2])}): "
        f"{rate['two']:.1f} req/s ({failed['two']} failed), x{rate['two'] / max(rate['one'], 1e-9):.2f}",
    ]
    return lines, {"req_per_s": rate, "failed": failed}


# -- billing exactly once -------------------------------------------------------------------------


def exactly_once(site: wan.Site, users: int, calls: int) -> tuple[list[str], dict[str, Any]]:
    urls = [site.gateway_url(s) for s in site.switches[:2]]
    with site.admin(_answering(site)) as admin:
        license = wan.new_license(admin, "bench-billing")
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def user() -> None:
        clients = [
            httpx.Client(
                base_url=url,
                headers={"Authorization": f"Bearer {license['token']}"},
                timeout=90,
                trust_env=False,
            )
            for url in urls
        ]
        try:
            for _ in range(calls):
                key = uuid.uuid4().hex
                answers: list[httpx.Response | None] = [None, None]

                def send(index: int, key: str = key, answers: list = answers) -> None:
                    try:
                        answers[index] = clients[index].post(
                            f"/function/{wan.LICENSED_FUNCTION}",
                            json={"message": key},
                            headers={"X-Call-Id": key},
                        )
                    except httpx.HTTPError:
                        answers[index] = None

                other = threading.Thread(target=send, args=(1,))
                other.start()
                send(0)
                other.join()
                ok = [a for a in answers if a is not None and a.status_code == 200]
                with lock:
                    outcomes["keys"] += 1
                    outcomes["answered"] += bool(ok)
                    outcomes["answered twice"] += len(ok) == 2
                    outcomes["replays"] += sum(a.headers.get("X-Idempotent-Replay") == "true" for a in ok)
                    outcomes["answers differ"] += len(ok) == 2 and ok[0].json() != ok[1].json()
        finally:
            for client in clients:
                client.close()

    try:
        workers = [threading.Thread(target=user) for _ in range(users)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        with site.admin(_answering(site)) as admin:
            billed = wan.billed_calls(admin, license["id"])
            admin.delete(f"/system/licenses/{license['id']}")
    except BaseException:
        with site.admin(_answering(site)) as admin:
            admin.delete(f"/system/licenses/{license['id']}")
        raise
    lines = [
        f"billing exactly once, 2 gateways x {users} users, each key sent to both at once:",
        f"  {outcomes['keys']} distinct keys, {outcomes['answered']} answered "
        f"({outcomes['answered twice']} by both gateways, {outcomes['replays']} replays, "
        f"{outcomes['answers differ']} differing), billed {billed}"
        + ("" if billed == outcomes["answered"] else "  <- NOT exactly once"),
    ]
    return lines, {**outcomes, "billed": billed}


# -- asynchronous calls across a restart ----------------------------------------------------------


def async_restart(site: wan.Site, calls: int) -> tuple[list[str], dict[str, Any]]:
    name = f"bench-sleep-{uuid.uuid4().hex[:6]}"
    first = site.switches[0]
    # A deploy waits for the function's readiness (up to 90 s): a client that waits longer.
    with site.admin(_answering(site), timeout=180) as admin:
        license = wan.new_license(admin, "bench-async")
        deployed = admin.post("/system/functions", json={"service": name, "code": SLEEPER, "public": False})
    if deployed.status_code not in (200, 201, 202):
        raise SystemExit(f"deploying {name}: {deployed.status_code} {deployed.text}")
    callbacks = Callbacks(first.address)
    headers = {"Authorization": f"Bearer {license['token']}"}
    callers = [
        httpx.Client(base_url=site.gateway_url(s), headers=headers, timeout=60, trust_env=False)
        for s in site.switches[:2]
    ]
    try:
        # The deploying gateway answers first; the others are asked as they are (a gateway that
        # does not know the function yet refuses its calls: counted below, not waited for).
        _wait(
            lambda: callers[0].post(f"/function/{name}", json={"seconds": 0}).status_code == 200,
            120,
            f"{name} to answer through {callers[0].base_url}",
            interval=1,
        )
        with site.admin(_answering(site)) as admin:
            before = wan.billed_calls(admin, license["id"])
        queued = []
        refused: Counter[str] = Counter()
        for number in range(calls):
            key = uuid.uuid4().hex
            answer = callers[number % len(callers)].post(
                f"/async-function/{name}",
                json={"seconds": 1},
                headers={"X-Call-Id": key, "X-Callback-Url": callbacks.url},
            )
            if answer.status_code == 202:
                queued.append(key)
            else:
                refused[f"{answer.status_code} {answer.text[:80]}"] += 1
        wan.kill_gateway(first)
        started = time.monotonic()
        done = wan.seconds_until(lambda: set(queued) <= set(callbacks.received), 240, interval=1)
        waited = time.monotonic() - started
        completed = len(set(queued) & set(callbacks.received))
        repeated = sum(1 for key in queued if callbacks.received[key] > 1)
        with site.admin(_answering(site)) as admin:
            billed = wan.billed_calls(admin, license["id"]) - before
    finally:
        callbacks.close()
        for client in callers:
            client.close()
        with site.admin(_answering(site), timeout=180) as admin:
            admin.request("DELETE", "/system/functions", json={"functionName": name})
            admin.delete(f"/system/licenses/{license['id']}")
    lines = [
        f"asynchronous calls across a gateway restart ({first.name}'s SIGKILLed right after queueing):",
        f"  {calls} sent, {len(queued)} queued, {completed} completed, {len(queued) - completed} lost, "
        f"{repeated} called back more than once, billed {billed}"
        + (f" (refused: {dict(refused)})" if refused else "")
        + "; "
        + (
            f"all done {waited:.1f} s after the kill" if done is not None else f"gave up after {waited:.0f} s"
        ),
    ]
    return lines, {
        "sent": calls,
        "queued": len(queued),
        "completed": completed,
        "lost": len(queued) - completed,
        "repeated": repeated,
        "billed": billed,
        "refused": dict(refused),
        "seconds": waited,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--inventory", default="inventories/lab.py")
    parser.add_argument("--tries", type=int, default=10, help="gateway kills for the failover figures")
    parser.add_argument("--threads", type=int, default=8, help="callers of the failover and throughput loads")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each throughput round")
    parser.add_argument("--users", type=int, default=16, help="users of the exactly-once figure")
    parser.add_argument("--calls", type=int, default=10, help="calls per user of the exactly-once figure")
    parser.add_argument("--async-calls", type=int, default=24, help="async calls queued before the restart")
    parser.add_argument(
        "--parts", default="failover,throughput,exactly_once,async", help="which figures (comma-separated)"
    )
    args = parser.parse_args()
    site = wan.find_site(load_inventory(args.inventory, cwd=str(REPO)))
    if isinstance(site, str):
        raise SystemExit(f"{args.inventory}: {site}")
    if len(site.switches) < 2:
        raise SystemExit(f"{args.inventory}: two gateways on switches needed, found {len(site.switches)}")
    lines: list[str] = []
    figures: dict[str, Any] = {}
    for part, measure in (
        ("failover", lambda: failover(site, args.tries, args.threads)),
        ("throughput", lambda: throughput(site, args.threads, args.seconds)),
        ("exactly_once", lambda: exactly_once(site, args.users, args.calls)),
        ("async", lambda: async_restart(site, args.async_calls)),
    ):
        if part not in args.parts.split(","):
            continue
        print(f"measuring {part}...", flush=True)
        found, figures[part] = measure()
        lines += found
        print("\n".join(found), flush=True)
    FIGURES.parent.mkdir(exist_ok=True)
    FIGURES.write_text("".join(f"{line}\n" for line in lines))
    Path(FIGURES.with_suffix(".json")).write_text(json.dumps(figures, indent=2) + "\n")
    print(f"\n{chr(10).join(lines)}\n\nwritten to {FIGURES.relative_to(REPO)} and .json")


if __name__ == "__main__":
    main()
