"""What the WAN suite (test_edgefaas_wan.py) and its figures (tests/perf/gateways_bench.py) share:
the gateways on the switches, the WAN plan as the deploy makes it, the provider edge's (PE's)
view of what the switches announce, and a steady load from the WAN client behind the PE.

The load is wan_load.py, run by the PE's own python3 inside the WAN client's network namespace
(only there is the API's anycast address routed), and wan_watch.py times a path's withdrawal on
the PE itself; each runs on an SSH connection of its own, so the test can read the PE's table
and kill a gateway meanwhile.
"""

from __future__ import annotations

import base64
import json
import shlex
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from edgefaas.deploy import hosts
from edgefaas.deploy.gateways import gateway_hosts, gateway_tls
from edgefaas.deploy.wan import WanPlan, plan_wan
from tests.integration import sonic_support as sonic
from tests.integration.conftest import Device, admin_password, blueprint_ca, connect, server_device

GATEWAY_UNIT = "edgefaas-gateway.service"
# Where the tests put the blueprint's CA on the PE, for the WAN client's curl.
PE_CA_FILE = "/tmp/edgefaas-blueprint-ca.pem"
LOAD_SCRIPT = Path(__file__).with_name("wan_load.py")
WATCH_SCRIPT = Path(__file__).with_name("wan_watch.py")
# A licensed function with no placement constraint, fast to answer (the chain's last).
LICENSED_FUNCTION = "FuncC"


@dataclass
class Site:
    """The switches that run a gateway and announce it, the PE, and each switch's WAN plan."""

    switches: list[Device]
    pe: Device
    plans: dict[str, WanPlan]
    port: int
    password: str
    server: Device
    # The blueprint's CA (PEM) when the gateways serve HTTPS only, "" for plain HTTP.
    ca_pem: str = ""

    @property
    def scheme(self) -> str:
        return "https" if self.ca_pem else "http"

    @property
    def anycast(self) -> str:
        return f"{next(iter(self.plans.values())).anycast}/32"

    @property
    def api_url(self) -> str:
        """The API as a WAN client calls it: the anycast address, the gateway's port."""
        plan = next(iter(self.plans.values()))
        return f"{self.scheme}://{plan.anycast}:{plan.api_port}"

    def service_url(self, address: str) -> str:
        """A function at its own WAN address, on the service port."""
        plan = next(iter(self.plans.values()))
        return f"{self.scheme}://{address}:{plan.service_port}"

    @property
    def verify(self) -> ssl.SSLContext | bool:
        return ssl.create_default_context(cadata=self.ca_pem) if self.ca_pem else True

    def gateway_url(self, switch: Device) -> str:
        """The switch's own gateway as the test runner reaches it (the management network)."""
        return f"{self.scheme}://{hosts.address(switch)}:{self.port}"

    def admin(self, switch: Device, timeout: float = 60) -> httpx.Client:
        return httpx.Client(
            base_url=self.gateway_url(switch),
            auth=("admin", self.password),
            timeout=timeout,
            trust_env=False,
            verify=self.verify,
        )

    def pe_ca_file(self) -> str:
        """The CA as a file on the PE, for curl in the WAN client's namespace (written once)."""
        if not self.ca_pem:
            return ""
        path = PE_CA_FILE
        held = self.pe.host.file(path)
        if not held.exists or held.content_string != self.ca_pem:
            written = self.pe.host.run(f"printf %s {shlex.quote(self.ca_pem)} > {path}")
            if written.rc != 0:
                raise RuntimeError(f"{self.pe.name}: cannot write {path}: {written.stderr}")
        return path

    def switch_at(self, address: str) -> Device | None:
        return next((s for s in self.switches if s.address == address), None)


def find_site(inventory) -> Site | str:
    """The inventory's WAN site, or why there is none to test (a reason to skip)."""
    sonic_hosts = list(inventory.get_group("sonic"))
    plans = plan_wan([(h.name, h.data) for h in sonic_hosts])
    if not plans:
        return "no WAN plan in the inventory (edgefaas_wan_anycast and edgefaas_wan_function_pool unset)"
    gateways = {h.name for h in gateway_hosts(inventory)}
    switches = [s for s in sonic.switches(inventory) if s.name in plans and s.name in gateways]
    if not switches:
        return "no SONiC switch with sonic_config_db runs a gateway"
    peers = sonic.sdwan_peers(switches[0])
    if not peers:
        return "no sdwan_peers in the inventory: the switches announce to no SD-WAN provider edge"
    pe = sonic.provider_edge(switches[0], peers[0])
    if pe is None:
        return "the PE is the operator's: the tests have no login on it (only the virtual lab's wan device)"
    probe = sonic.wan_client(pe, "true")
    if probe.rc != 0:
        return f"{pe.name} has no WAN client namespace {sonic.WAN_CLIENT_NETNS}: {probe.stderr.strip()}"
    server = server_device(inventory)
    port = int(server.data.get("edgefaas_gateway_port") or 8080)
    ca_pem = blueprint_ca(server) if gateway_tls(server) else ""
    return Site(
        switches, pe, {s.name: plans[s.name] for s in switches}, port, admin_password(server), server, ca_pem
    )


# -- the PE's view ---------------------------------------------------------------------------------


def paths(pe: Device, prefix: str) -> list[dict[str, Any]]:
    """The PE's BGP paths to `prefix` (`show bgp ipv4 unicast PREFIX json`), each with its communities."""
    entry = sonic.bgp_route(pe, prefix)
    return list(entry["paths"]) if entry else []


def peer_of(path: dict[str, Any]) -> str:
    """The BGP neighbour a path came from: the announcing switch's address."""
    return str((path.get("peer") or {}).get("peerId") or path.get("peerId") or "")


def originated(path: dict[str, Any]) -> bool:
    """Whether the neighbour the path came from announced it itself: its AS path is that one AS.

    Once a switch withdraws a prefix the other switch also announces, it passes on the other's
    path (AS path of two ASes): the PE still has a path from it, but not its announcement."""
    aspath = path.get("aspath") or {}
    return int(aspath.get("length", len(str(aspath.get("string", "")).split()))) == 1


def announcers(pe: Device, prefix: str) -> set[str]:
    """The addresses of the switches whose own announcement of `prefix` the PE holds."""
    return {peer_of(p) for p in paths(pe, prefix) if originated(p)}


def large_community(path: dict[str, Any]) -> str:
    return str((path.get("largeCommunity") or {}).get("string", ""))


def standard_communities(path: dict[str, Any]) -> set[str]:
    return set(str((path.get("community") or {}).get("string", "")).split())


def preferred(pe: Device, prefix: str) -> str | None:
    """The next hop the PE forwards `prefix` to (`show ip route PREFIX json`), None when it has no route."""
    for route in sonic.rib_route(pe, prefix):
        if route.get("protocol") == "bgp" and route.get("selected"):
            for hop in route.get("nexthops", []):
                if hop.get("active") and hop.get("ip"):
                    return str(hop["ip"])
    return None


def seconds_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.05) -> float | None:
    """Seconds until `predicate` holds, polled every `interval`; None when it did not within `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(interval)
    return None


# -- the gateways ----------------------------------------------------------------------------------


def kill_gateway(switch: Device) -> None:
    """SIGKILL the switch's gateway: no clean stop, no hand-back; systemd starts it again."""
    killed = switch.host.run(f"systemctl kill --signal=SIGKILL {GATEWAY_UNIT}")
    if killed.rc != 0:
        raise RuntimeError(f"{switch.name}: systemctl kill {GATEWAY_UNIT} failed: {killed.stderr}")


def healthy(url: str, verify: ssl.SSLContext | bool = True) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2, trust_env=False, verify=verify).status_code == 200
    except httpx.HTTPError:
        return False


def new_license(admin: httpx.Client, purpose: str) -> dict[str, Any]:
    """A fresh license on the standard plan (no quota): {id, token, ...}."""
    answer = admin.post(
        "/system/licenses", json={"name": f"{purpose}-{uuid.uuid4().hex[:8]}", "plan": "standard"}
    )
    if answer.status_code != 201:
        raise RuntimeError(f"POST /system/licenses: {answer.status_code} {answer.text}")
    return answer.json()


def billed_calls(admin: httpx.Client, license_id: str) -> int:
    """Every call billed to the license, all functions together."""
    answer = admin.get("/system/billing", params={"license": license_id})
    if answer.status_code != 200:
        raise RuntimeError(f"GET /system/billing: {answer.status_code} {answer.text}")
    return sum(int(row["invocations"]) for row in answer.json()["functions"])


# -- scripts run on the PE in the background -------------------------------------------------------


class DeviceScript:
    """A script of this directory run by a device's python3 in the background, on an SSH connection
    of its own, with its configuration on standard input, until stop() (its stop file)."""

    def __init__(
        self, device: Device, script: Path, config: dict[str, Any], limit_s: float, netns: str | None = None
    ) -> None:
        self.device = connect(f"{device.name} ({script.stem})", device.data, device.groups)
        self.script = script
        self.directory = f"/run/edgefaas-{script.stem.replace('_', '-')}-{uuid.uuid4().hex[:8]}"
        self.config = {
            **config,
            "limit_s": limit_s,
            "stop_file": f"{self.directory}/stop",
            "progress_file": f"{self.directory}/progress.json",
        }
        self.limit_s = limit_s
        self.netns = netns
        self._result: Any = None
        self._thread: threading.Thread | None = None

    def _put(self, name: str, content: bytes) -> None:
        encoded = base64.b64encode(content).decode()
        self.device.host.check_output(f"printf %s {encoded} | base64 -d > {self.directory}/{name}")

    def start(self) -> DeviceScript:
        self.device.host.check_output(f"install -d -m 700 {self.directory}")
        self._put("script.py", self.script.read_bytes())
        self._put("config.json", json.dumps(self.config).encode())
        inside = f"ip netns exec {self.netns} " if self.netns else ""
        command = (
            f"timeout {int(self.limit_s) + 60} {inside}python3 {self.directory}/script.py "
            f"< {self.directory}/config.json"
        )

        def run() -> None:
            self._result = self.device.host.run(command)

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        return self

    def progress(self) -> dict[str, Any]:
        """What it wrote to its progress file so far ({} before the first write)."""
        found = self.device.host.run(f"cat {self.directory}/progress.json")
        try:
            return json.loads(found.stdout) if found.rc == 0 else {}
        except ValueError:
            return {}

    def stop(self, timeout: float = 120) -> dict[str, Any]:
        """Stop it; the JSON object it printed last."""
        self.device.host.run(f"touch {self.config['stop_file']}")
        assert self._thread is not None, f"{self.script.name} was never started"
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise RuntimeError(
                f"{self.script.name} on {self.device.name} did not stop within {timeout:.0f} s"
            )
        self.device.host.run(f"rm -rf {shlex.quote(self.directory)}")
        result = self._result
        try:
            return json.loads(result.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise RuntimeError(
                f"{self.script.name} printed no result (rc {result.rc}): {result.stdout[-500:]} "
                f"{result.stderr[-1500:]}"
            ) from None

    def __enter__(self) -> DeviceScript:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None and self._thread.is_alive():
            self.device.host.run(f"touch {self.config['stop_file']}")
            self._thread.join(60)
            self.device.host.run(f"rm -rf {shlex.quote(self.directory)}")


class WanLoad(DeviceScript):
    """wan_load.py in the WAN client's namespace: callers of the API's anycast address."""

    def __init__(
        self,
        pe: Device,
        url: str,
        token: str,
        threads: int,
        function: str = LICENSED_FUNCTION,
        retry_delay: float = 4.0,
        timeout: float = 10.0,
        limit_s: float = 240.0,
        ca_pem: str = "",
    ) -> None:
        config = {
            "url": url,
            "ca_pem": ca_pem,
            "function": function,
            "token": token,
            "threads": threads,
            "retry_delay": retry_delay,
            "timeout": timeout,
            "probe_interval": 0.05,
        }
        super().__init__(pe, LOAD_SCRIPT, config, limit_s, netns=sonic.WAN_CLIENT_NETNS)

    def succeeded(self) -> int:
        return int(self.progress().get("succeeded", 0))


class PathWatch(DeviceScript):
    """wan_watch.py on the PE: when its path to `prefix` from `peer` went and came back."""

    def __init__(self, pe: Device, prefix: str, peer: str, limit_s: float = 240.0) -> None:
        super().__init__(pe, WATCH_SCRIPT, {"prefix": prefix, "peer": peer}, limit_s)

    def changes(self, since: float) -> tuple[float | None, float | None]:
        """(seconds from `since` (time.time()) until the path was first seen gone, then until it was
        seen back); None where it was not."""
        events = self.stop()["events"]
        gone = next((t for t, present in events if t >= since and not present), None)
        back = None if gone is None else next((t for t, present in events if t > gone and present), None)
        return (None if gone is None else gone - since), (None if back is None else back - since)
