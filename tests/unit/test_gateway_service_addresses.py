"""Functions served at their WAN service addresses (edgefaas.gateway.service_addresses): a
request to a function's address is that function's call with no path prefix; /wan and
/system/apis say what the switch announces."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest
import uvicorn

from edgefaas.gateway import GatewaySettings, create_app
from edgefaas.gateway.cli import listening_socket, service_ports
from edgefaas.sonic.announce import GatewayProbe

from .test_gateway_fakes import ADMIN, FakeBackend, Harness, RefusingTransport, fake_functions

pytestmark = pytest.mark.unit

PLAN = {
    "anycast": "10.255.0.1/32",
    "pool": "10.255.1.0/24",
    "asn": 65101,
    "api_port": 8080,
    "service_port": 80,
    "functions": {"Echo": {"address": "10.255.1.7"}, "Gone": {"address": "10.255.1.8"}},
}


@pytest.fixture
def wan_harness(tmp_path):
    plan = tmp_path / "wan.json"
    plan.write_text(json.dumps(PLAN))
    harness = Harness(tmp_path / "data", wan_plan=plan)
    harness.deploy("Echo", public=True)
    yield harness
    harness.close()


def _at(harness: Harness, address: str, method: str, path: str, **kwargs) -> httpx.Response:
    # httpx's ASGI transport gives the URL's host as the request's local address (scope["server"]).
    return harness.request(method, f"http://{address}{path}", **kwargs)


def test_a_request_to_a_functions_address_is_its_call_without_a_prefix(wan_harness):
    answer = _at(wan_harness, "10.255.1.7", "POST", "/resize/small?w=10", content=b"hello")
    assert answer.status_code == 200, answer.text
    seen = answer.json()
    assert (seen["function"], seen["path"], seen["query"], seen["body"]) == (
        "Echo",
        "/resize/small",
        "w=10",
        "hello",
    )
    root = _at(wan_harness, "10.255.1.7", "GET", "/")
    assert root.status_code == 200 and root.json()["path"] == "/"
    # The API is not reachable at a function's address: every path there is the function's.
    assert _at(wan_harness, "10.255.1.7", "GET", "/system/functions", auth=ADMIN).json()["path"] == (
        "/system/functions"
    )
    # A planned function that is not deployed: the gateway's own 404 for it.
    missing = _at(wan_harness, "10.255.1.8", "GET", "/")
    assert missing.status_code == 404 and "Gone" in missing.text


def test_other_addresses_serve_the_api(wan_harness):
    assert _at(wan_harness, "10.255.0.1", "GET", "/healthz").text == "OK"
    assert _at(wan_harness, "10.255.0.1", "GET", "/function/Echo/x").json()["path"] == "/x"
    assert _at(wan_harness, "10.255.1.99", "GET", "/healthz").text == "OK"  # in the pool, no function


def test_wan_and_apis_show_address_community_and_anycast(wan_harness):
    state = wan_harness.get("/wan")
    assert state.status_code == 200  # no credentials: the switch's announcer reads it
    assert state.json() == {
        "anycast": "10.255.0.1",
        "functions": {
            "Echo": {"address": "10.255.1.7", "available": True, "version": 1, "community": "65101:7:1"},
            "Gone": {"address": "10.255.1.8", "available": False, "version": None, "community": None},
        },
    }
    apis = {api["name"]: api for api in wan_harness.get("/system/apis", auth=ADMIN).json()}
    assert apis["Echo"]["wan"] == {
        "address": "10.255.1.7",
        "url": "http://10.255.1.7/",
        "community": "65101:7:1",
        "anycast": "10.255.0.1",
    }
    wan_harness.deploy("Plain")  # not in the plan: no WAN fields
    apis = {api["name"]: api for api in wan_harness.get("/system/apis", auth=ADMIN).json()}
    assert "wan" not in apis["Plain"]
    # A new version of the function is a new community.
    update = {"service": "Echo", "code": "def handle(event, context):\n    return event\n", "public": True}
    assert wan_harness.put("/system/functions", json=update, auth=ADMIN).status_code == 200
    assert wan_harness.get("/wan").json()["functions"]["Echo"]["community"] == "65101:7:2"


def test_without_a_plan_there_is_no_wan(tmp_path):
    harness = Harness(tmp_path, wan_plan=tmp_path / "absent.json")
    try:
        harness.deploy("Echo", public=True)
        assert harness.get("/wan").json() == {"anycast": None, "functions": {}}
        assert "wan" not in harness.get("/system/apis", auth=ADMIN).json()[0]
        assert _at(harness, "10.255.1.7", "GET", "/healthz").text == "OK"
    finally:
        harness.close()


def test_a_plan_written_later_is_taken_without_a_restart(tmp_path):
    plan = tmp_path / "wan.json"
    harness = Harness(tmp_path / "data", wan_plan=plan)
    try:
        harness.deploy("Echo", public=True)
        harness.app.state.service_addresses.recheck = 0
        assert _at(harness, "10.255.1.7", "GET", "/healthz").text == "OK"
        plan.write_text(json.dumps(PLAN))
        assert _at(harness, "10.255.1.7", "GET", "/healthz").json()["function"] == "Echo"
        plan.write_text("{not json")  # a broken plan keeps the previous one
        assert _at(harness, "10.255.1.7", "GET", "/healthz").json()["function"] == "Echo"
    finally:
        harness.close()


def test_the_gateway_serves_the_api_port_and_the_service_port_over_tcp(tmp_path):
    """A real uvicorn on two loopback sockets, as `edgefaas gateway --wan-plan` runs it: the
    function's address is 127.0.0.5 (all of 127/8 is local), the API on 127.0.0.1."""
    plan = tmp_path / "wan.json"
    plan.write_text(
        json.dumps(
            {
                **PLAN,
                "pool": "127.0.0.0/24",
                "anycast": "127.0.1.1/32",
                "service_port": 8080,
                "functions": {"Echo": {"address": "127.0.0.5"}},
            }
        )
    )
    assert service_ports(plan, 8080) == []  # the API port itself: no second listener
    plan.write_text(json.dumps({**json.loads(plan.read_text()), "service_port": 8081}))
    assert service_ports(plan, 8080) == [8081]
    assert service_ports(tmp_path / "absent.json", 8080) == []

    backend = FakeBackend()
    app = create_app(
        GatewaySettings(data_dir=tmp_path / "data", admin_password=ADMIN[1], wan_plan=plan),
        backend,
        upstream_transport=RefusingTransport(fake_functions(backend, [])),
    )
    sockets = [listening_socket("127.0.0.1", 0), listening_socket("127.0.0.5", 0)]
    api_port, service_port = (s.getsockname()[1] for s in sockets)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": sockets}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "the gateway did not start within 10 s"
            time.sleep(0.01)
        with httpx.Client(timeout=10, trust_env=False) as client:
            deployed = client.post(
                f"http://127.0.0.1:{api_port}/system/functions",
                json={
                    "service": "Echo",
                    "code": "def handle(event, context):\n    return event\n",
                    "public": True,
                },
                auth=ADMIN,
            )
            assert deployed.status_code == 202, deployed.text
            answer = client.get(f"http://127.0.0.5:{service_port}/hello?x=1")
            assert answer.status_code == 200, answer.text
            assert (answer.json()["function"], answer.json()["path"]) == ("Echo", "/hello")
            assert client.get(f"http://127.0.0.1:{api_port}/healthz").text == "OK"
        # What the switch's announcer reads from this gateway.
        probe = GatewayProbe(api_port)
        assert probe.healthy() == (True, "")
        assert probe.served() == {"Echo": 1}
    finally:
        server.should_exit = True
        thread.join(15)
        for sock in sockets:
            sock.close()
