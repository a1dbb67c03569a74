"""`edgefaas announce`: the switch declares the gateway's API and its functions into the SD-WAN.

Every loop (0.5 s by default) the announcer asks the local gateway's /healthz; two failed
checks in a row make it down. From that and the WAN plan (/etc/edgefaas/wan.json, rendered
by the deploy, edgefaas.deploy.wan) it computes what the switch should announce:

- the API's anycast address, with SONiC's profile FROM_SDN_SLB_ROUTES, while the gateway is
  healthy;
- each function's service address, with profile FROM_SDN_APPLIANCE_ROUTES, while the gateway
  is healthy and reports the function served here (/wan: available replicas);

and makes the switch hold exactly that, the SONiC way: STATE_DB `ADVERTISE_NETWORK_TABLE|
<prefix>` (bgpcfgd turns each key into `network <prefix> route-map <profile>_RM`), APPL_DB
`BGP_PROFILE_TABLE:<profile>` community_id (the community bgpcfgd's route-map sets), and the
address as a /32 on `lo` (label lo:efwan) so the switch takes the traffic sent to it.

SONiC's profile carries one community for all functions; a function's own identity is a BGP
large community `<asn>:<id>:<version>`, set by EdgeFaaS's own FRR objects, which bgpcfgd
leaves alone as it does anything it did not write:

    ip prefix-list EDGEFAAS_FN_<id> seq 5 permit <address>/32
    route-map EDGEFAAS_FN_RM permit <id>
     match ip address prefix-list EDGEFAAS_FN_<id>
     set large-community <asn>:<id>:<version> additive
    route-map EDGEFAAS_FN_RM permit 65535          (everything else passes unchanged)
    route-map FROM_SDN_APPLIANCE_ROUTES_RM permit 10
     call EDGEFAAS_FN_RM
     on-match next                                  (then bgpcfgd's entry 100: its community)

FRR keeps them in memory only, so they are compared with the running configuration every
few seconds and put back after an FRR restart. A function's FRR objects are in place before
its prefix is announced, and removed after it is withdrawn. SIGTERM withdraws everything,
then exits (a rolling upgrade stops the announcer first); so does a drain file while it exists.
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger("edgefaas.announce")

PLAN = Path("/etc/edgefaas/wan.json")
ADVERTISE_TABLE = "ADVERTISE_NETWORK_TABLE"
PROFILE_TABLE = "BGP_PROFILE_TABLE"
PROFILES = ("FROM_SDN_SLB_ROUTES", "FROM_SDN_APPLIANCE_ROUTES")
LABEL = "lo:efwan"
FN_ROUTE_MAP = "EDGEFAAS_FN_RM"
FN_PREFIX_LIST = "EDGEFAAS_FN_{id}"
# The profile route-map entry that calls EdgeFaaS's map: before bgpcfgd's entry 100.
HOOK_SEQUENCE = 10
PASS_SEQUENCE = 65535
FAILURES_TO_DOWN = 2


class PlanError(ValueError):
    """A wan.json that is not a plan: nothing is announced from it."""


@dataclass(frozen=True)
class WanFunction:
    name: str
    address: IPv4Address
    id: int


@dataclass(frozen=True)
class WanPlan:
    anycast: IPv4Address
    pool: IPv4Network
    asn: int
    api_port: int
    service_port: int
    api_profile: str
    api_community: str
    function_profile: str
    function_community: str
    functions: dict[str, WanFunction]
    # The CA the gateway's certificate is from: the gateway serves HTTPS only. "": plain HTTP.
    ca_file: str = ""

    def by_address(self) -> dict[str, str]:
        """Service address -> function name."""
        return {str(f.address): name for name, f in self.functions.items()}

    def community(self, name: str, version: int) -> str:
        return f"{self.asn}:{self.functions[name].id}:{version}"


def _community(value: Any, where: str) -> str:
    parts = str(value).split(":")
    if len(parts) != 2 or not all(p.isdigit() and int(p) <= 65535 for p in parts):
        raise PlanError(f"{where}: {value!r} is no BGP community (AA:NN)")
    return str(value)


def parse_plan(document: Any) -> WanPlan:
    """A WanPlan from wan.json's document; PlanError names the field that is wrong."""
    if not isinstance(document, Mapping):
        raise PlanError("the plan must be a JSON object")
    try:
        anycast = IPv4Interface(str(document["anycast"]))
        if anycast.network.prefixlen != 32:
            raise PlanError(f"anycast: {document['anycast']!r} must be a /32")
        pool = IPv4Network(str(document["pool"]))
        if pool.prefixlen < 16:
            raise PlanError(f"pool: {pool} is too large (at least /16: ids are route-map sequence numbers)")
        asn = int(document["asn"])
        if not 1 <= asn <= 4294967295:
            raise PlanError(f"asn: {asn} out of range")
        ports = {k: int(document.get(k, d)) for k, d in (("api_port", 8080), ("service_port", 80))}
        for key, port in ports.items():
            if not 1 <= port <= 65535:
                raise PlanError(f"{key}: {port} is no TCP port (1..65535)")
        profiles = {
            k: str(document.get(k, d))
            for k, d in (("api_profile", PROFILES[0]), ("function_profile", PROFILES[1]))
        }
        for key, profile in profiles.items():
            if profile not in PROFILES:
                raise PlanError(f"{key}: {profile!r} is not one of {', '.join(PROFILES)}")
        communities = {
            k: _community(document.get(k, "65100:100" if k == "api_community" else "65100:200"), k)
            for k in ("api_community", "function_community")
        }
        functions: dict[str, WanFunction] = {}
        seen: dict[IPv4Address, str] = {}
        for name, entry in sorted((document.get("functions") or {}).items()):
            address = IPv4Address(str(entry["address"]))
            if address not in pool or address == pool.network_address:
                raise PlanError(f"functions.{name}.address: {address} is outside the pool {pool}")
            if address in seen or address == anycast.ip:
                raise PlanError(
                    f"functions.{name}.address: {address} is {seen.get(address, 'the anycast')}'s too"
                )
            seen[address] = name
            functions[name] = WanFunction(name, address, int(address) - int(pool.network_address))
    except KeyError as exc:
        raise PlanError(f"{exc.args[0]}: missing") from None
    except (TypeError, ValueError) as exc:
        if isinstance(exc, PlanError):
            raise
        raise PlanError(str(exc)) from None
    ca_file = str(document.get("ca_file") or "")
    if ca_file and not ca_file.startswith("/"):
        raise PlanError(f"ca_file: {ca_file!r} must be an absolute path")
    return WanPlan(
        anycast=anycast.ip,
        pool=pool,
        asn=asn,
        functions=functions,
        ca_file=ca_file,
        **ports,
        **profiles,
        **communities,
    )


def load_plan(path: Path) -> WanPlan | None:
    """The plan at `path`; None when there is no file (no WAN on this switch)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise PlanError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return parse_plan(json.loads(text))
    except ValueError as exc:
        raise PlanError(f"{path}: {exc}") from None


# --- what the switch should hold (pure) ---------------------------------------------------------


@dataclass(frozen=True)
class Desired:
    advertise: dict[str, str]  # prefix -> profile (ADVERTISE_NETWORK_TABLE)
    profiles: dict[str, str]  # profile -> community_id (BGP_PROFILE_TABLE)
    communities: dict[int, tuple[str, str]]  # function id -> (prefix, large community)
    reasons: dict[str, str] = field(default_factory=dict, compare=False)  # prefix -> why (in or out)

    @property
    def addresses(self) -> set[str]:
        return set(self.advertise)


NOTHING = Desired({}, {}, {})


def desired_state(plan: WanPlan, healthy: bool, served: Mapping[str, int], why_down: str = "") -> Desired:
    """What to announce: `served` maps each function served here to its version."""
    anycast = f"{plan.anycast}/32"
    reasons: dict[str, str] = {}
    advertise: dict[str, str] = {}
    communities: dict[int, tuple[str, str]] = {}
    if healthy:
        advertise[anycast] = plan.api_profile
        reasons[anycast] = "the API anycast address: the gateway is healthy"
    else:
        reasons[anycast] = f"the API anycast address: {why_down or 'the gateway is down'}"
    for name, function in sorted(plan.functions.items()):
        prefix = f"{function.address}/32"
        if not healthy:
            reasons[prefix] = f"function {name}: {why_down or 'the gateway is down'}"
        elif name not in served:
            reasons[prefix] = f"function {name}: not served here (no available replica, or removed)"
        else:
            community = plan.community(name, served[name])
            advertise[prefix] = plan.function_profile
            communities[function.id] = (prefix, community)
            reasons[prefix] = f"function {name} version {served[name]} (large community {community})"
    profiles = {profile: _profile_community(plan, profile) for profile in set(advertise.values())}
    return Desired(advertise, profiles, communities, reasons)


def _profile_community(plan: WanPlan, profile: str) -> str:
    return plan.api_community if profile == plan.api_profile else plan.function_community


def ours(plan: WanPlan, prefix: str) -> bool:
    """Whether an ADVERTISE_NETWORK_TABLE prefix is the announcer's: the anycast or a pool /32."""
    try:
        network = IPv4Network(prefix)
    except ValueError:
        return False
    return network.prefixlen == 32 and (
        network.network_address == plan.anycast or network.subnet_of(plan.pool)
    )


# --- FRR: EdgeFaaS's route-map entries, by vtysh ------------------------------------------------


ROUTE_MAP_HEAD = re.compile(r"^route-map (\S+) (permit|deny) (\d+)$")


def frr_objects(running: str) -> dict[str, list[str]]:
    """EdgeFaaS's objects in FRR's running configuration: a heading line -> its body lines.

    Prefix-lists are one line each (the body is empty); a route-map entry's body is its
    indented lines. Only EDGEFAAS_* objects and profile route-map entries that call them."""
    found: dict[str, list[str]] = {}
    current: str | None = None
    for raw in running.splitlines():
        line = raw.rstrip()
        if line.startswith(" ") and current is not None:
            found.setdefault(current, []).append(line.strip())
            continue
        current = None
        if line.startswith("ip prefix-list EDGEFAAS_"):
            found[line] = []
        match = ROUTE_MAP_HEAD.match(line)
        if match:
            current = line
            found[line] = []
    return {
        head: body
        for head, body in found.items()
        if head.startswith(("ip prefix-list EDGEFAAS_", f"route-map {FN_ROUTE_MAP} "))
        or any(b == f"call {FN_ROUTE_MAP}" for b in body)
    }


def wanted_frr(plan: WanPlan | None, desired: Desired) -> dict[str, list[str]]:
    """The objects FRR should hold for `desired` (none at all when nothing is announced)."""
    if plan is None or not desired.communities:
        return {}
    wanted: dict[str, list[str]] = {}
    for fid, (prefix, community) in sorted(desired.communities.items()):
        name = FN_PREFIX_LIST.format(id=fid)
        wanted[f"ip prefix-list {name} seq 5 permit {prefix}"] = []
        wanted[f"route-map {FN_ROUTE_MAP} permit {fid}"] = [
            f"match ip address prefix-list {name}",
            f"set large-community {community} additive",
        ]
    wanted[f"route-map {FN_ROUTE_MAP} permit {PASS_SEQUENCE}"] = []
    wanted[f"route-map {plan.function_profile}_RM permit {HOOK_SEQUENCE}"] = [
        f"call {FN_ROUTE_MAP}",
        "on-match next",
    ]
    return wanted


def frr_commands(running: Mapping[str, list[str]], wanted: Mapping[str, list[str]]) -> list[str]:
    """vtysh configuration commands that turn `running` (frr_objects) into `wanted`.

    Additions first (callers of EDGEFAAS_FN_RM last), removals after, so that no moment has
    a call to a map that is missing."""
    add: list[str] = []
    hook: list[str] = []
    for head, body in wanted.items():
        if running.get(head) == body:
            continue
        if head.startswith("ip prefix-list "):
            add.append(head)
            continue
        # Entered again over the old entry: `set` replaces its value, so the entry never goes missing.
        lines = [head, *body, "exit"]
        (add if head.startswith(f"route-map {FN_ROUTE_MAP} ") else hook).extend(lines)
    remove: list[str] = []
    stale_lists = []
    for head in running:
        if head in wanted:
            continue
        if head.startswith("ip prefix-list "):
            # `no` of a whole list; it is rewritten above when wanted with another address.
            name = head.split()[2]
            if not any(w.startswith(f"ip prefix-list {name} ") for w in wanted):
                stale_lists.append(f"no ip prefix-list {name}")
            else:
                remove.append(f"no {head}")
        elif f"call {FN_ROUTE_MAP}" in running[head]:
            remove.insert(0, f"no {head}")
        else:
            remove.append(f"no {head}")
    return [*add, *hook, *remove, *sorted(set(stale_lists))]


class Frr:
    """FRR through vtysh (on SONiC the host's vtysh runs it in the bgp container)."""

    def __init__(self, vtysh: Sequence[str] = ("vtysh",), timeout: float = 10.0) -> None:
        self.vtysh = list(vtysh)
        self.timeout = timeout

    def running_config(self) -> str:
        proc = subprocess.run(
            [*self.vtysh, "-c", "show running-config"], capture_output=True, text=True, timeout=self.timeout
        )
        if proc.returncode != 0:
            raise OSError(f"vtysh show running-config failed: {(proc.stderr or proc.stdout).strip()}")
        return proc.stdout

    def running(self) -> dict[str, list[str]]:
        return frr_objects(self.running_config())

    def configure(self, commands: Sequence[str]) -> None:
        if not commands:
            return
        args = [*self.vtysh, "-c", "configure terminal"]
        for command in commands:
            args += ["-c", command]
        proc = subprocess.run(args, capture_output=True, text=True, timeout=self.timeout)
        problems = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
        if proc.returncode != 0 or problems:
            raise OSError(f"vtysh refused: {' | '.join(problems) or f'exit {proc.returncode}'}")


# --- the addresses on lo ------------------------------------------------------------------------


def bound_addresses(ip_json: str) -> set[str]:
    """The announcer's /32s on lo (label lo:efwan) in `ip -j addr show dev lo` output."""
    found = set()
    for link in json.loads(ip_json or "[]"):
        for info in link.get("addr_info", []):
            if info.get("family") == "inet" and info.get("label") == LABEL:
                found.add(f"{info['local']}/{info['prefixlen']}")
    return found


def address_commands(bound: set[str], wanted: set[str]) -> list[list[str]]:
    commands = [["addr", "add", a, "dev", "lo", "label", LABEL] for a in sorted(wanted - bound)]
    return commands + [["addr", "del", a, "dev", "lo"] for a in sorted(bound - wanted)]


class Loopback:
    def __init__(self, ip: Sequence[str] = ("ip",)) -> None:
        self.ip = list(ip)

    def bound(self) -> set[str]:
        proc = subprocess.run([*self.ip, "-j", "addr", "show", "dev", "lo"], capture_output=True, text=True)
        if proc.returncode != 0:
            raise OSError(f"ip addr show dev lo failed: {proc.stderr.strip()}")
        return bound_addresses(proc.stdout)

    def make(self, wanted: set[str]) -> list[str]:
        done = []
        for command in address_commands(self.bound(), wanted):
            proc = subprocess.run([*self.ip, *command], capture_output=True, text=True)
            if proc.returncode != 0:
                raise OSError(f"ip {' '.join(command)} failed: {proc.stderr.strip()}")
            done.append(f"{command[1]} {command[2]} on lo")
        return done


# --- the local gateway --------------------------------------------------------------------------


class GatewayProbe:
    """The local gateway: /healthz every loop, /wan (functions served here) less often."""

    def __init__(self, port: int, timeout: float = 0.4, host: str = "127.0.0.1", ca_file: str = "") -> None:
        self.base = f"{'https' if ca_file else 'http'}://{host}:{port}"
        self.timeout = timeout
        # No proxies: the gateway is on this switch. Its HTTPS is verified by the blueprint's CA.
        handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
        if ca_file:
            handlers.append(urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=ca_file)))
        self.opener = urllib.request.build_opener(*handlers)

    def _get(self, path: str) -> bytes:
        with self.opener.open(self.base + path, timeout=self.timeout) as answer:
            return answer.read()

    def healthy(self) -> tuple[bool, str]:
        try:
            self._get("/healthz")
            return True, ""
        except urllib.error.HTTPError as exc:
            return False, f"/healthz answered {exc.code}"
        except (OSError, ValueError) as exc:
            return False, f"/healthz: {getattr(exc, 'reason', exc)}"

    def served(self) -> dict[str, int]:
        """Function -> version, for the WAN functions with an available replica."""
        document = json.loads(self._get("/wan"))
        return {
            name: int(entry.get("version") or 0)
            for name, entry in (document.get("functions") or {}).items()
            if entry.get("available")
        }


# --- the loop -----------------------------------------------------------------------------------


class AnnouncedTables(Protocol):
    """Where announcements are kept: SONiC's tables (Tables), or FRR itself where no SONiC runs
    (edgefaas.sonic.frr_tables)."""

    def advertised(self, plan: WanPlan) -> dict[str, str]: ...
    def advertise(self, prefix: str, profile: str) -> None: ...
    def withdraw(self, prefix: str) -> None: ...
    def profile(self, profile: str) -> str | None: ...
    def set_profile(self, profile: str, community: str) -> None: ...


class Tables:
    """The announcer's STATE_DB and APPL_DB entries, through edgefaas.sonic.config_db's clients."""

    def __init__(self, databases: Any) -> None:
        self.state = databases.client("STATE_DB")
        self.appl = databases.client("APPL_DB")

    def advertised(self, plan: WanPlan) -> dict[str, str]:
        found = {}
        for key in self.state.scan_iter(match=f"{ADVERTISE_TABLE}|*", count=1000):
            prefix = key.split("|")[-1]
            if "|" not in key[len(ADVERTISE_TABLE) + 1 :] and ours(plan, prefix):
                found[prefix] = self.state.hget(key, "profile") or ""
        return found

    def advertise(self, prefix: str, profile: str) -> None:
        self.state.hset(f"{ADVERTISE_TABLE}|{prefix}", mapping={"profile": profile})

    def withdraw(self, prefix: str) -> None:
        self.state.delete(f"{ADVERTISE_TABLE}|{prefix}")

    def profile(self, profile: str) -> str | None:
        return self.appl.hget(f"{PROFILE_TABLE}:{profile}", "community_id")

    def set_profile(self, profile: str, community: str) -> None:
        self.appl.hset(f"{PROFILE_TABLE}:{profile}", mapping={"community_id": community})


@dataclass
class Settings:
    plan_path: Path = PLAN
    interval: float = 0.5
    health_timeout: float = 0.4
    functions_interval: float = 2.0
    frr_interval: float = 5.0
    drain_file: Path | None = None
    # On SIGTERM: seconds between withdrawing the routes and removing the addresses.
    withdraw_grace: float = 1.0
    bind: bool = True
    dry_run: bool = False


class Announcer:
    def __init__(
        self,
        settings: Settings,
        tables: AnnouncedTables | None,
        frr: Frr | None,
        loopback: Loopback | None,
        probe: Callable[[int], GatewayProbe] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.tables, self.frr, self.loopback = tables, frr, loopback
        self._probe_for = probe or (
            lambda port: GatewayProbe(
                port, settings.health_timeout, ca_file=self.plan.ca_file if self.plan else ""
            )
        )
        self._clock = clock
        self.plan: WanPlan | None = None
        self._plan_stamp: tuple[int, int] | None = None
        self._failures = 0
        # Down until a first check passes: nothing is announced for a gateway not yet seen healthy.
        self._seen_healthy = False
        self._served: dict[str, int] = {}
        self._served_at = -1e9
        self._frr_checked_at = -1e9
        self._frr_wanted: dict[str, list[str]] = {}
        self.desired = NOTHING
        self._profiles_warned: set[str] = set()
        self._rebind = False

    # plan ------------------------------------------------------------------------------------
    def _reload_plan(self) -> None:
        path = self.settings.plan_path
        try:
            stat = path.stat()
            stamp: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp == self._plan_stamp and (self.plan is not None or stamp is None):
            return
        try:
            plan = load_plan(path)
        except PlanError as exc:
            log.error("the WAN plan is refused, keeping the previous one: %s", exc)
            self._plan_stamp = stamp
            return
        if plan is None and self.plan is not None:
            log.warning("%s is gone: withdrawing everything", path)
            self.withdraw_all("the WAN plan was removed")
        self.plan, self._plan_stamp = plan, stamp
        if plan is not None:
            log.info(
                "WAN plan: anycast %s, %d function address(es) in %s, AS %d",
                plan.anycast,
                len(plan.functions),
                plan.pool,
                plan.asn,
            )

    # one loop --------------------------------------------------------------------------------
    def check(self) -> tuple[bool, str]:
        """The gateway's health, counting consecutive failures (FAILURES_TO_DOWN make it down)."""
        assert self.plan is not None
        drain = self.settings.drain_file
        if drain is not None and drain.exists():
            self._failures = FAILURES_TO_DOWN
            return False, f"draining ({drain} exists)"
        probe = self._probe_for(self.plan.api_port)
        ok, why = probe.healthy()
        if ok:
            self._failures = 0
            self._seen_healthy = True
            now = self._clock()
            if now - self._served_at >= self.settings.functions_interval:
                try:
                    self._served = probe.served()
                    self._served_at = now
                except (OSError, ValueError) as exc:
                    log.warning("/wan did not answer (keeping what it said before): %s", exc)
            return True, ""
        self._failures = min(self._failures + 1, 1_000_000)
        down = self._failures >= FAILURES_TO_DOWN or not self._seen_healthy
        if down:
            self._served_at = -1e9  # ask again as soon as it is back
        if not self._seen_healthy:
            return False, f"the gateway has not passed a health check yet ({why})"
        return not down, f"the gateway failed {self._failures} health check(s) in a row ({why})"

    def step(self) -> Desired:
        self._reload_plan()
        if self.plan is None:
            return self.desired
        healthy, why = self.check()
        desired = desired_state(self.plan, healthy, self._served, why)
        self.apply(desired)
        return desired

    def apply(self, desired: Desired, grace: float = 0.0) -> None:
        """Make the switch hold `desired`: addresses and FRR objects before announcing, after withdrawing."""
        plan = self.plan
        if plan is None:
            return
        previous = self.desired
        for prefix in sorted(desired.addresses - previous.addresses):
            log.info("announce %s: %s", prefix, desired.reasons.get(prefix, ""))
        for prefix in sorted(previous.addresses - desired.addresses):
            log.info("withdraw %s: %s", prefix, desired.reasons.get(prefix, "no longer in the plan"))
        for fid, (prefix, community) in desired.communities.items():
            before = previous.communities.get(fid)
            if before is not None and before != (prefix, community):
                log.info("%s now carries large community %s (was %s)", prefix, community, before[1])
        self.desired = desired
        if self.settings.dry_run:
            return
        frr_wanted = wanted_frr(plan, desired)
        frr_due = self._clock() - self._frr_checked_at >= self.settings.frr_interval
        # The addresses on lo are compared when the wanted ones change, and with FRR's objects
        # periodically (someone may have removed them): not an `ip` call per round.
        bind = self.loopback is not None and self.settings.bind
        rebind = bind and (desired.addresses != previous.addresses or frr_due or self._rebind)
        if rebind:
            # Those being withdrawn stay until their routes are gone.
            self._rebind = not self._make_addresses(desired.addresses | previous.addresses)
        frr_ok = True
        if self.frr is not None and (frr_wanted != self._frr_wanted or frr_due):
            frr_ok = self._frr_additions(frr_wanted)
        if self.tables is not None:
            self._tables(plan, desired)
        if grace > 0 and previous.addresses - desired.addresses:
            # Routes are withdrawn; calls already on their way still find the addresses meanwhile.
            time.sleep(grace)
        if self.frr is not None and (frr_wanted != self._frr_wanted or frr_due):
            if frr_ok and self._frr_sync(frr_wanted):
                self._frr_wanted = frr_wanted
                self._frr_checked_at = self._clock()
            else:
                self._frr_wanted = {"(FRR did not answer)": []}  # try again next round
        if rebind:
            self._rebind = not self._make_addresses(desired.addresses)

    def _make_addresses(self, wanted: set[str]) -> bool:
        assert self.loopback is not None
        try:
            for done in self.loopback.make(wanted):
                log.info("%s", done)
        except OSError as exc:
            log.error("addresses on lo: %s", exc)
            return False
        return True

    def _tables(self, plan: WanPlan, desired: Desired) -> None:
        assert self.tables is not None
        for profile, community in desired.profiles.items():
            have = self.tables.profile(profile)
            if have is None:
                self.tables.set_profile(profile, community)
            elif have != community and profile not in self._profiles_warned:
                self._profiles_warned.add(profile)
                log.warning(
                    "%s:%s community_id is %s, the plan says %s: someone else set it, it is left alone",
                    PROFILE_TABLE,
                    profile,
                    have,
                    community,
                )
        advertised = self.tables.advertised(plan)
        for prefix, profile in desired.advertise.items():
            if advertised.get(prefix) != profile:
                self.tables.advertise(prefix, profile)
        for prefix in advertised:
            if prefix not in desired.advertise:
                self.tables.withdraw(prefix)

    def _frr_additions(self, wanted: dict[str, list[str]]) -> bool:
        """The wanted objects that are missing or differ, before their prefixes are announced;
        removals wait until the prefixes are withdrawn (_frr_sync). False: FRR did not answer."""
        assert self.frr is not None
        try:
            running = self.frr.running()
            additions = frr_commands(running, {**running, **wanted})
            if additions:
                self.frr.configure(additions)
                log.info("FRR: %s", _summary(additions))
        except (OSError, subprocess.SubprocessError) as exc:
            # Reachability first: the addresses are announced all the same, with SONiC's
            # community only, and the large communities follow when FRR answers again.
            log.error("FRR: %s (functions are announced without their large community meanwhile)", exc)
            return False
        return True

    def _frr_sync(self, wanted: dict[str, list[str]]) -> bool:
        assert self.frr is not None
        try:
            commands = frr_commands(self.frr.running(), wanted)
            if commands:
                self.frr.configure(commands)
                log.info("FRR: %s", _summary(commands))
        except (OSError, subprocess.SubprocessError) as exc:
            log.error("FRR: %s", exc)
            return False
        return True

    def withdraw_all(self, why: str, grace: float = 0.0) -> None:
        """Withdraw every announcement, then (after `grace` seconds) remove the FRR objects and addresses."""
        if self.plan is None:
            return
        reasons = {prefix: why for prefix in self.desired.addresses}
        self._frr_checked_at = -1e9  # compare with FRR itself, not with what was last asked
        self.apply(Desired({}, {}, {}, reasons), grace=grace)


def _summary(commands: Sequence[str]) -> str:
    return "; ".join(c for c in commands if c.startswith(("ip ", "route-map ", "no ", "set ")))


def run(announcer: Announcer, once: bool = False) -> int:
    """The loop: a step every interval until SIGTERM or SIGINT, then everything withdrawn."""
    stopping: list[str] = []

    def stop(signum: int, _frame: Any) -> None:
        stopping.append(signal.Signals(signum).name)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not stopping:
            started = time.monotonic()
            try:
                announcer.step()
            except (OSError, subprocess.SubprocessError) as exc:
                log.error("this round failed, trying again: %s", exc)
            except Exception as exc:  # the database client's errors, and anything else: keep announcing
                log.error(
                    "this round failed, trying again: %s", exc, exc_info=log.isEnabledFor(logging.DEBUG)
                )
            if once:
                return 0
            time.sleep(max(0.0, announcer.settings.interval - (time.monotonic() - started)))
        log.info("%s: withdrawing everything before exiting", stopping[0])
        try:
            announcer.withdraw_all(
                f"the announcer is stopping ({stopping[0]})", grace=announcer.settings.withdraw_grace
            )
        except Exception as exc:  # exit all the same, saying what may still be announced
            log.error("withdrawing failed: %s; announcements may remain (edgefaas config-db get)", exc)
            return 1
        return 0
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def split_command(text: str) -> list[str]:
    return shlex.split(text)
