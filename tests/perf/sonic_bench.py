"""Switch-routing figures for an inventory's SONiC switches (the virtual lab by default).

    .venv/bin/python -m tests.perf.sonic_bench [--inventory inventories/lab.py] [--tries 20]
        [--restarts 5] [--frr-unit frr]

Prints, as p50/p95 over the tries (edgefaas.perf.stats.percentile):
- CONFIG_DB change to FRR holding it: a BGP_NEIGHBOR entry (a spare address in the first
  neighbour's subnet, never saved) written to the first switch's CONFIG_DB with redis-cli until
  `show bgp neighbors ADDR json` knows it; timed on the switch itself, polling every 10 ms;
- withdrawn advertisement to the peer dropping the route: STATE_DB ADVERTISE_NETWORK_TABLE
  entry deleted on the first switch until the second's BGP table no longer has the prefix;
  timed from this machine (one SSH round trip included), polling every 50 ms;
- BGP session establishment after `systemctl restart <frr-unit>` on the second switch, until
  every planned session of it is Established again (the lab's unit is `frr`; on a real SONiC
  switch FRR is the `bgp` service).

Run it after deploys/sonic.py, on a lab: it briefly adds a neighbour that never answers, announces
a documentation prefix (RFC 5737) and restarts FRR on one switch, and puts everything back.
"""

from __future__ import annotations

import argparse
import shlex
import time

from edgefaas.deploy.inventory import load_inventory
from edgefaas.deploy.sonic import interface_addresses
from edgefaas.perf.stats import percentile
from tests.integration import sonic_support as sonic
from tests.integration.conftest import REPO, Device

BENCH_PREFIX = "198.51.100.0/24"
POLL = 0.05


def _line(what: str, seconds: list[float]) -> str:
    return (
        f"{what}: p50 {percentile(seconds, 50):.3f} s, p95 {percentile(seconds, 95):.3f} s "
        f"({len(seconds)} tries, max {max(seconds):.3f} s)"
    )


def _wait(predicate, timeout: float, what: str) -> float:
    """Seconds until `predicate` holds, polled every POLL s; SystemExit naming `what` after `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(POLL)
    raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")


def spare_neighbor(device: Device, plan) -> tuple[str, str]:
    """An address in the first planned neighbour's subnet (the switch's interface holding it)
    that is neither a planned peer nor the switch's own, and that neighbour's address."""
    first = plan.neighbors[0]
    interfaces = interface_addresses(device.host.check_output("ip -j -4 addr show"))
    network = next(
        i.network
        for ifaces in interfaces.values()
        for i in ifaces
        if i.network.prefixlen < 32 and first.address in i.network
    )
    used = {n.address for n in plan.neighbors} | {i.ip for ifaces in interfaces.values() for i in ifaces}
    spare = next(a for a in reversed(list(network.hosts())) if a not in used)
    return str(spare), str(first.address)


def config_db_to_frr(device: Device, plan, local_addr: str, spare: str, tries: int) -> list[float]:
    """Seconds from a BGP_NEIGHBOR write to FRR holding the neighbour, measured on the switch.

    The write is redis-cli's (milliseconds to start), so the clock starts right before it;
    the entry is the database's only (never saved), and deleted again after each try."""
    redis = "redis-cli -s /var/run/redis/redis.sock -n 4"
    key = shlex.quote(f"BGP_NEIGHBOR|{spare}")
    fields = (
        f"asn 64999 name edgefaas-bench local_addr {local_addr} admin_status up "
        f"holdtime {plan.holdtime} keepalive {plan.keepalive}"
    )
    knows = f"vtysh -c {shlex.quote(f'show bgp neighbors {spare} json')} | grep -q '\"{spare}\"'"
    script = (
        "t0=$(date +%s%N); "
        f"{redis} hset {key} {fields} >/dev/null; "
        f"until {knows}; do sleep 0.01; done; "
        "t1=$(date +%s%N); "
        f"{redis} del {key} >/dev/null; "
        f"while {knows}; do sleep 0.01; done; "
        # FRR forgets the neighbour part-way through the removal's apply: let that apply end,
        # so the next try times its own change and not the tail of this one.
        "sleep 1; "
        'echo "$(( (t1 - t0) / 1000 ))"'
    )
    found = []
    for _ in range(tries):
        result = device.host.run(f"timeout 60 sh -c {shlex.quote(script)}")
        if result.rc != 0:
            device.host.run(f"{redis} del {key}")
            raise SystemExit(
                f"{device.name}: FRR did not take BGP_NEIGHBOR {spare} within 60 s: {result.stderr}"
            )
        found.append(int(result.stdout.strip()) / 1e6)
    return found


def withdrawal_to_peer(announcer: Device, peer: Device, tries: int) -> list[float]:
    """Seconds from deleting an ADVERTISE_NETWORK_TABLE entry to the peer dropping the route."""
    key = f"ADVERTISE_NETWORK_TABLE|{BENCH_PREFIX}"
    found = []
    _, created = sonic.ensure_profile(announcer)
    try:
        for _ in range(tries):
            sonic.db_set(announcer, "STATE_DB", key, profile=sonic.PROFILE)
            _wait(lambda: sonic.bgp_route(peer, BENCH_PREFIX), 60, f"{peer.name} to learn {BENCH_PREFIX}")
            started = time.monotonic()
            sonic.db_del(announcer, "STATE_DB", key)
            _wait(
                lambda: sonic.bgp_route(peer, BENCH_PREFIX) is None, 60, f"{peer.name} to drop {BENCH_PREFIX}"
            )
            found.append(time.monotonic() - started)
    finally:
        sonic.db_del(announcer, "STATE_DB", key)
        if created:
            sonic.drop_profile(announcer)
    return found


def establishment_after_restart(device: Device, plan, unit: str, restarts: int) -> list[float]:
    """Seconds from `systemctl restart UNIT` to every planned session Established again."""
    addresses = [n.address for n in plan.neighbors]
    found = []
    for _ in range(restarts):
        _wait(lambda: sonic.established(device, addresses), 180, f"{device.name}: sessions Established")
        started = time.monotonic()
        # FRR's unit allows a few starts a minute; the bench restarts on purpose, so it clears
        # that count first rather than trip it.
        device.host.check_output(
            f"systemctl reset-failed {shlex.quote(unit)}; systemctl restart {shlex.quote(unit)}"
        )
        _wait(
            lambda: _answers(device) and sonic.established(device, addresses),
            180,
            f"{device.name}: sessions Established after restarting {unit}",
        )
        found.append(time.monotonic() - started)
    return found


def _answers(device: Device) -> bool:
    """Whether FRR answers at all (vtysh fails while bgpd starts)."""
    return device.host.run("vtysh -c 'show bgp summary json'").rc == 0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--inventory", default="inventories/lab.py")
    parser.add_argument("--tries", type=int, default=20, help="tries of each CONFIG_DB and withdrawal figure")
    parser.add_argument("--restarts", type=int, default=5, help="FRR restarts for the establishment figure")
    parser.add_argument("--frr-unit", default="frr", help="FRR's systemd unit (a real SONiC switch: bgp)")
    args = parser.parse_args()
    inventory = load_inventory(args.inventory, cwd=str(REPO))
    switches = sonic.switches(inventory)
    if len(switches) < 2:
        raise SystemExit(
            f"{args.inventory}: two SONiC switches with sonic_config_db needed, found {len(switches)}"
        )
    plans = sonic.routing(inventory)
    first, second = switches[0], switches[1]

    # The bench's neighbour sits beside the first planned one, with the same local address.
    spare, beside = spare_neighbor(first, plans[first.name])
    local_addr = (
        sonic.db_get(first, f"BGP_NEIGHBOR|{beside}").get(f"BGP_NEIGHBOR|{beside}", {}).get("local_addr")
    )
    if not local_addr:
        raise SystemExit(f"{first.name}: no BGP_NEIGHBOR|{beside} in CONFIG_DB; run deploys/sonic.py first")
    figures = [
        _line(
            f"CONFIG_DB change to FRR holding it ({first.name}, BGP_NEIGHBOR {spare})",
            config_db_to_frr(first, plans[first.name], local_addr, spare, args.tries),
        ),
        _line(
            f"withdrawn advertisement to the peer dropping it ({first.name} to {second.name})",
            withdrawal_to_peer(first, second, args.tries),
        ),
        _line(
            f"BGP sessions Established after systemctl restart {args.frr_unit} ({second.name})",
            establishment_after_restart(second, plans[second.name], args.frr_unit, args.restarts),
        ),
    ]
    print("\n".join(figures))


if __name__ == "__main__":
    main()
