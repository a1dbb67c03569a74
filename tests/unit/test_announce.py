"""`edgefaas announce` against a real Redis, real addresses on lo (in a network namespace of
its own) and, where FRR is installed, a real zebra and bgpd: what the switch announces as its
gateway passes or fails its health checks, as functions come and go, and on SIGTERM."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import redis

from edgefaas.sonic import announce, config_db

from .redis_server import redis_server

pytestmark = pytest.mark.unit

APPL_DB, STATE_DB = 0, 6
PLAN = {
    "anycast": "10.255.0.1/32",
    "pool": "10.255.1.0/24",
    "asn": 65101,
    "api_port": 8080,  # the stand-in gateway's port in the tests that ask it
    "service_port": 80,
    "api_profile": "FROM_SDN_SLB_ROUTES",
    "api_community": "65100:100",
    "function_profile": "FROM_SDN_APPLIANCE_ROUTES",
    "function_community": "65100:200",
    "functions": {"camera": {"address": "10.255.1.7", "id": 7}, "FuncA": {"address": "10.255.1.9", "id": 9}},
}
ANYCAST, CAMERA, FUNCA = "10.255.0.1/32", "10.255.1.7/32", "10.255.1.9/32"


# --- what the announcer wants (pure) -----------------------------------------------------------


def test_desired_state_follows_health_and_the_functions_served():
    plan = announce.parse_plan(PLAN)
    healthy = announce.desired_state(plan, True, {"camera": 3})
    assert healthy.advertise == {ANYCAST: "FROM_SDN_SLB_ROUTES", CAMERA: "FROM_SDN_APPLIANCE_ROUTES"}
    assert healthy.profiles == {"FROM_SDN_SLB_ROUTES": "65100:100", "FROM_SDN_APPLIANCE_ROUTES": "65100:200"}
    assert healthy.communities == {7: (CAMERA, "65101:7:3")}
    assert "not served here" in healthy.reasons[FUNCA]
    down = announce.desired_state(plan, False, {"camera": 3}, "the gateway failed 2 health checks")
    assert down.advertise == {} and down.communities == {}
    assert "failed 2 health checks" in down.reasons[ANYCAST]
    # A new version is a new large community.
    assert announce.desired_state(plan, True, {"camera": 4}).communities[7] == (CAMERA, "65101:7:4")


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"anycast": "10.255.0.0/24"}, "anycast"),
        ({"pool": "10.0.0.0/8"}, "pool"),
        ({"asn": 0}, "asn"),
        ({"service_port": 0}, "service_port"),
        ({"api_profile": "OTHER"}, "api_profile"),
        ({"function_community": "1:2:3"}, "function_community"),
        ({"ca_file": "ca.pem"}, "ca_file"),
        ({"functions": {"camera": {"address": "10.9.9.9"}}}, "functions.camera.address"),
        (
            {"functions": {"a": {"address": "10.255.1.7"}, "b": {"address": "10.255.1.7"}}},
            "functions.b.address",
        ),
    ],
)
def test_a_plan_that_is_not_one_is_refused_naming_the_field(change, fragment):
    with pytest.raises(announce.PlanError, match=fragment):
        announce.parse_plan({**PLAN, **change})


def test_frr_commands_add_before_announcing_and_remove_callers_first():
    running = announce.frr_objects(
        "route-map OTHER_RM permit 5\n set metric 1\nexit\n"
        "ip prefix-list EDGEFAAS_FN_9 seq 5 permit 10.255.1.9/32\n"
        "route-map FROM_SDN_APPLIANCE_ROUTES_RM permit 10\n call EDGEFAAS_FN_RM\n on-match next\nexit\n"
        "route-map FROM_SDN_APPLIANCE_ROUTES_RM permit 100\n set community 65100:200\nexit\n"
        "route-map EDGEFAAS_FN_RM permit 9\n match ip address prefix-list EDGEFAAS_FN_9\n"
        " set large-community 65101:9:1 additive\nexit\n"
        "route-map EDGEFAAS_FN_RM permit 65535\nexit\n"
    )
    # bgpcfgd's own entry and others' route-maps are not EdgeFaaS's.
    assert not [head for head in running if "OTHER_RM" in head or head.endswith("permit 100")]
    plan = announce.parse_plan(PLAN)
    wanted = announce.wanted_frr(plan, announce.desired_state(plan, True, {"camera": 3}))
    commands = announce.frr_commands(running, wanted)
    assert commands[:5] == [
        "ip prefix-list EDGEFAAS_FN_7 seq 5 permit 10.255.1.7/32",
        "route-map EDGEFAAS_FN_RM permit 7",
        "match ip address prefix-list EDGEFAAS_FN_7",
        "set large-community 65101:7:3 additive",
        "exit",
    ]
    assert commands[5:] == ["no route-map EDGEFAAS_FN_RM permit 9", "no ip prefix-list EDGEFAAS_FN_9"]
    assert announce.frr_commands(announce.frr_objects(_as_running(wanted)), wanted) == []
    everything_off = announce.frr_commands(running, {})
    assert everything_off[0] == "no route-map FROM_SDN_APPLIANCE_ROUTES_RM permit 10"
    assert everything_off[-1] == "no ip prefix-list EDGEFAAS_FN_9"


def _as_running(objects: dict[str, list[str]]) -> str:
    return "".join(head + "\n" + "".join(f" {line}\n" for line in body) for head, body in objects.items())


# --- the switch: Redis, lo, FRR ------------------------------------------------------------------


@pytest.fixture
def redis_socket(tmp_path):
    with redis_server(tmp_path) as socket:
        yield socket


@pytest.fixture
def netns():
    """A network namespace of the test's own: the announcer's `ip` runs in it (needs root)."""
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("nsenter"):
        pytest.skip("addresses on lo need root, unshare and nsenter")
    holder = subprocess.Popen(["unshare", "-n", "sleep", "600"])
    try:
        path = f"/proc/{holder.pid}/ns/net"
        deadline = time.monotonic() + 5
        while os.readlink(path) == os.readlink("/proc/self/ns/net"):
            assert time.monotonic() < deadline, "unshare made no network namespace"
            time.sleep(0.01)
        subprocess.run(["nsenter", f"--net={path}", "ip", "link", "set", "lo", "up"], check=True)
        yield ["nsenter", f"--net={path}"]
    finally:
        holder.kill()
        holder.wait()


class StandInGateway:
    """The two things the announcer asks a gateway: /healthz and /wan. A stand-in, so a test
    can make it fail on cue; test_gateway_service_addresses checks the real gateway's /wan."""

    def __init__(self) -> None:
        self.healthy = True
        self.functions: dict[str, dict] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path not in ("/healthz", "/wan"):
                    self.send_error(404)
                    return
                if not outer.healthy:
                    self.send_error(503)
                    return
                body = (
                    b"OK" if self.path == "/healthz" else json.dumps({"functions": outer.functions}).encode()
                )
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def gateway():
    stand_in = StandInGateway()
    yield stand_in
    stand_in.close()


def _plan_file(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "wan.json"
    path.write_text(json.dumps({**PLAN, "api_port": port}))
    return path


def _announcer(tmp_path, redis_socket, gateway, netns=None, frr=None) -> announce.Announcer:
    settings = announce.Settings(
        plan_path=_plan_file(tmp_path, gateway.port),
        functions_interval=0,
        frr_interval=0,
        drain_file=tmp_path / "drain",
        bind=netns is not None,
    )
    databases = config_db.Databases(config_db.Paths(socket=redis_socket, database_config=tmp_path / "none"))
    loopback = announce.Loopback([*netns, "ip"]) if netns else None
    return announce.Announcer(settings, announce.Tables(databases), frr, loopback)


def _advertised(redis_socket) -> dict[str, dict]:
    state = redis.Redis(unix_socket_path=str(redis_socket), db=STATE_DB, decode_responses=True)
    return {key.split("|", 1)[1]: state.hgetall(key) for key in state.keys("ADVERTISE_NETWORK_TABLE|*")}


def _on_lo(netns) -> set[str]:
    listing = subprocess.run(
        [*netns, "ip", "-j", "addr", "show", "dev", "lo"], capture_output=True, text=True
    )
    return announce.bound_addresses(listing.stdout)


def test_healthy_announced_two_failures_withdrawn_function_gone_withdrawn(
    tmp_path, redis_socket, gateway, netns
):
    state = redis.Redis(unix_socket_path=str(redis_socket), db=STATE_DB, decode_responses=True)
    appl = redis.Redis(unix_socket_path=str(redis_socket), db=APPL_DB, decode_responses=True)
    # Someone else's announcement and profile: never touched.
    state.hset("ADVERTISE_NETWORK_TABLE|10.9.0.0/24", mapping={"profile": "FROM_SDN_SLB_ROUTES"})
    appl.hset("BGP_PROFILE_TABLE:FROM_SDN_SLB_ROUTES", mapping={"community_id": "64999:1"})
    gateway.functions = {
        "camera": {"available": True, "version": 3},
        "FuncA": {"available": False, "version": 1},
    }
    announcer = _announcer(tmp_path, redis_socket, gateway, netns)
    gateway.healthy = False
    announcer.step()  # a gateway never seen healthy: nothing announced
    assert set(_advertised(redis_socket)) == {"10.9.0.0/24"}

    gateway.healthy = True
    announcer.step()
    assert _advertised(redis_socket) == {
        ANYCAST: {"profile": "FROM_SDN_SLB_ROUTES"},
        CAMERA: {"profile": "FROM_SDN_APPLIANCE_ROUTES"},
        "10.9.0.0/24": {"profile": "FROM_SDN_SLB_ROUTES"},
    }
    assert appl.hgetall("BGP_PROFILE_TABLE:FROM_SDN_APPLIANCE_ROUTES") == {"community_id": "65100:200"}
    assert appl.hgetall("BGP_PROFILE_TABLE:FROM_SDN_SLB_ROUTES") == {"community_id": "64999:1"}
    assert _on_lo(netns) == {ANYCAST, CAMERA}

    gateway.healthy = False
    announcer.step()  # one failed check is not enough: a slow answer is not a dead gateway
    assert set(_advertised(redis_socket)) == {ANYCAST, CAMERA, "10.9.0.0/24"}
    announcer.step()
    assert set(_advertised(redis_socket)) == {"10.9.0.0/24"}
    assert _on_lo(netns) == set()

    gateway.healthy = True
    announcer.step()
    assert set(_advertised(redis_socket)) == {ANYCAST, CAMERA, "10.9.0.0/24"}

    gateway.functions = {"FuncA": {"available": True, "version": 2}}  # camera removed, FuncA up
    announcer.step()
    assert set(_advertised(redis_socket)) == {ANYCAST, FUNCA, "10.9.0.0/24"}
    assert _on_lo(netns) == {ANYCAST, FUNCA}

    (tmp_path / "drain").touch()  # an upgrade drains the switch
    announcer.step()
    assert set(_advertised(redis_socket)) == {"10.9.0.0/24"}
    (tmp_path / "drain").unlink()
    announcer.step()
    assert set(_advertised(redis_socket)) == {ANYCAST, FUNCA, "10.9.0.0/24"}

    announcer.withdraw_all("stopping")
    assert set(_advertised(redis_socket)) == {"10.9.0.0/24"}
    assert _on_lo(netns) == set()


# --- with FRR itself ----------------------------------------------------------------------------

FRR_DAEMONS = Path("/usr/lib/frr")


@pytest.fixture
def frr(tmp_path, netns):
    """zebra and bgpd in the test's namespace, their vty sockets under tmp_path."""
    if not (FRR_DAEMONS / "bgpd").exists() or not shutil.which("vtysh"):
        pytest.skip("FRR is not installed")
    # FRR drops to its own user: its directory must be reachable by it, which tmp_path is not.
    run = Path(tempfile.mkdtemp(prefix="edgefaas-frr-"))
    run.chmod(0o755)
    shutil.chown(run, "frr", "frr")
    common = ["-d", "-u", "frr", "-g", "frr", "-z", str(run / "zserv.api"), "--vty_socket", str(run)]
    common += ["-A", "127.0.0.1", "-P", "0", "-f", "/dev/null"]
    pids = []
    try:
        for daemon, extra in (("zebra", []), ("bgpd", ["-p", "0"])):
            pidfile = run / f"{daemon}.pid"
            subprocess.run(
                [*netns, str(FRR_DAEMONS / daemon), *common, *extra, "-i", str(pidfile)], check=True
            )
            deadline = time.monotonic() + 10
            while not (run / f"{daemon}.vty").exists():
                assert time.monotonic() < deadline, f"{daemon} did not start"
                time.sleep(0.05)
            pids.append(int(pidfile.read_text()))
        vtysh = ["vtysh", "--vty_socket", str(run)]
        base = (
            "router bgp 65101\n bgp router-id 10.1.0.1\n no bgp network import-check\nexit\n"
            # bgpcfgd's entry for the profile (managers_rm.py): the community of BGP_PROFILE_TABLE.
            "route-map FROM_SDN_APPLIANCE_ROUTES_RM permit 100\n set community 65100:200\nexit\n"
        )
        conf = tmp_path / "base.conf"
        conf.write_text(base)
        subprocess.run([*vtysh, "-f", str(conf)], check=True, capture_output=True)
        yield vtysh
    finally:
        for pid in reversed(pids):
            os.kill(pid, signal.SIGTERM)
        shutil.rmtree(run, ignore_errors=True)


def _route(vtysh, prefix: str) -> dict:
    out = subprocess.run(
        [*vtysh, "-c", f"show bgp ipv4 unicast {prefix} json"], capture_output=True, text=True
    )
    return json.loads(out.stdout or "{}")


def _wait_for(what, check, limit: float = 15.0):
    deadline = time.monotonic() + limit
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"{what} within {limit:.0f} s"
        time.sleep(0.1)


def test_a_function_route_carries_its_large_community_and_bgpcfgds(
    tmp_path, redis_socket, gateway, netns, frr
):
    gateway.functions = {"camera": {"available": True, "version": 3}}
    announcer = _announcer(tmp_path, redis_socket, gateway, netns, announce.Frr(frr))
    announcer.step()
    assert CAMERA in _advertised(redis_socket)
    # What bgpcfgd does for the STATE_DB entry; EdgeFaaS's entries are in place before it.
    network = f"network {CAMERA} route-map FROM_SDN_APPLIANCE_ROUTES_RM"
    bgp = ["configure terminal", "router bgp 65101", "address-family ipv4 unicast", network]
    subprocess.run([*frr, *(arg for command in bgp for arg in ("-c", command))], check=True)

    def communities() -> tuple[str, str] | None:
        paths = _route(frr, CAMERA).get("paths") or []
        if not paths:
            return None
        path = paths[0]
        return (path.get("community") or {}).get("string", ""), (path.get("largeCommunity") or {}).get(
            "string", ""
        )

    assert _wait_for("the route with both communities", lambda: communities() == ("65100:200", "65101:7:3"))

    # An FRR restart loses what vtysh configured: the next round puts it back.
    subprocess.run([*frr, "-c", "configure terminal", "-c", "no route-map EDGEFAAS_FN_RM"], check=True)
    subprocess.run([*frr, "-c", "configure terminal", "-c", "no ip prefix-list EDGEFAAS_FN_7"], check=True)
    announcer.step()
    running = announce.Frr(frr).running()
    assert running["route-map EDGEFAAS_FN_RM permit 7"] == [
        "match ip address prefix-list EDGEFAAS_FN_7",
        "set large-community 65101:7:3 additive",
    ]

    gateway.functions = {}
    announcer.step()
    assert announce.Frr(frr).running() == {}  # every EdgeFaaS object gone with the function
    full = subprocess.run([*frr, "-c", "show running-config"], capture_output=True, text=True).stdout
    assert "route-map FROM_SDN_APPLIANCE_ROUTES_RM permit 100" in full  # bgpcfgd's is left alone


# --- the command: SIGTERM withdraws everything -------------------------------------------------


def test_sigterm_withdraws_everything_then_exits(tmp_path, redis_socket, gateway, netns):
    gateway.functions = {"camera": {"available": True, "version": 1}}
    command = [
        sys.executable,
        "-c",
        "from edgefaas.cli import main; main()",
        "announce",
        f"--plan={_plan_file(tmp_path, gateway.port)}",
        f"--socket={redis_socket}",
        f"--database-config={tmp_path / 'none'}",
        f"--drain-file={tmp_path / 'drain'}",
        # No FRR answers here: the addresses are announced all the same (reachability first).
        f"--vtysh=vtysh --vty_socket {tmp_path / 'no-frr'}",
        f"--ip={' '.join([*netns, 'ip'])}",
        "--withdraw-grace=0.2",
    ]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for("the announcement", lambda: set(_advertised(redis_socket)) == {ANYCAST, CAMERA})
        assert _on_lo(netns) == {ANYCAST, CAMERA}
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert _advertised(redis_socket) == {}
    assert _on_lo(netns) == set()
    assert f"announce {CAMERA}: function camera version 1" in err
    assert f"withdraw {ANYCAST}: the announcer is stopping (SIGTERM)" in err
