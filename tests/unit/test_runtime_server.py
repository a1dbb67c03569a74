"""The function runtime over real HTTP: answers, limits, timeouts, errors, drain, nested calls."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import httpx
import pytest

from edgefaas.runtime import BadRequest
from edgefaas.runtime.server import (
    REJECTED_HEADER,
    FunctionLoadError,
    RuntimeSettings,
    load_handler,
    main,
    parse_settings,
    serve,
)

pytestmark = pytest.mark.unit


@pytest.fixture
def runtime(tmp_path):
    """Start a runtime around a handler (in this process); yields a function making them."""
    servers, clients = [], []

    def start(handler, **settings):
        server = serve(
            RuntimeSettings(code=tmp_path / "unused.py", port=0, host="127.0.0.1", name="fn", **settings),
            handler,
        )
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        client = httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=10)
        servers.append(server)
        clients.append(client)
        return server, client

    yield start
    for client in clients:
        client.close()
    for server in servers:
        server.shutdown()
        server.server_close()
        server.runner.shutdown()


def test_the_event_carries_the_request(runtime):
    def handler(event, context):
        return {
            "method": event.method,
            "path": event.path,
            "query": event.query,
            "header": event.headers["x-thing"],
            "json": event.json(),
            "call_id": context.call_id,
            "name": context.function_name,
        }

    _, client = runtime(handler)
    answer = client.put("/a/b?x=1&y=two", json={"k": [1, 2]}, headers={"X-Thing": "v", "X-Call-Id": "abc"})
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["x-call-id"] == "abc"
    assert float(answer.headers["x-duration-seconds"]) >= 0
    assert answer.json() == {
        "method": "PUT",
        "path": "/a/b",
        "query": {"x": "1", "y": "two"},
        "header": "v",
        "json": {"k": [1, 2]},
        "call_id": "abc",
        "name": "fn",
    }


@pytest.mark.parametrize(
    ("result", "status", "content_type", "body"),
    [
        ("hello", 200, "text/plain; charset=utf-8", b"hello"),
        (b"\x00\x01", 200, "application/octet-stream", b"\x00\x01"),
        ([1, 2], 200, "application/json", b"[1, 2]"),
        (None, 204, None, b""),
        (("made", 201), 201, "text/plain; charset=utf-8", b"made"),
        (
            ({"e": 1}, 418, {"Content-Type": "application/x-tea", "X-Pot": "yes"}),
            418,
            "application/x-tea",
            b'{"e": 1}',
        ),
    ],
)
def test_return_values_become_answers(runtime, result, status, content_type, body):
    _, client = runtime(lambda event, context: result)
    answer = client.post("/")
    assert answer.status_code == status
    assert answer.headers.get("content-type") == content_type
    assert answer.content == body
    if status == 418:
        assert answer.headers["x-pot"] == "yes"


def test_a_call_id_is_made_when_the_caller_sends_none(runtime):
    _, client = runtime(lambda event, context: context.call_id)
    answer = client.get("/")
    assert len(answer.text) == 32 and answer.headers["x-call-id"] == answer.text


def test_an_exception_is_a_500_with_its_message(runtime):
    def handler(event, context):
        raise ValueError("the sensor is unplugged")

    _, client = runtime(handler)
    answer = client.post("/")
    assert answer.status_code == 500
    assert answer.json() == {"error": "ValueError: the sensor is unplugged"}
    assert REJECTED_HEADER.lower() not in answer.headers  # the function ran: billable


def test_bad_input_is_a_400(runtime):
    def handler(event, context):
        if event.query.get("explicit"):
            raise BadRequest("need a number")
        return event.json()

    _, client = runtime(handler)
    answer = client.post("/", content=b"{not json")
    assert answer.status_code == 400 and "not JSON" in answer.json()["error"]
    assert client.post("/?explicit=1").json() == {"error": "need a number"}


def test_an_unsupported_return_value_is_a_500_that_says_so(runtime):
    _, client = runtime(lambda event, context: object())
    answer = client.post("/")
    assert answer.status_code == 500 and "may return dict, list, str, bytes" in answer.json()["error"]


def test_exec_timeout_answers_504_and_the_call_stays_in_flight_until_it_ends(runtime):
    release = threading.Event()

    def handler(event, context):
        release.wait(5)
        return "late"

    server, client = runtime(handler, exec_timeout=0.2)
    started = time.monotonic()
    answer = client.post("/")
    assert answer.status_code == 504 and "did not answer within 0.2s" in answer.json()["error"]
    assert time.monotonic() - started < 2
    assert server.runner.inflight == 1  # still running: Python cannot stop it, so it still counts
    release.set()
    deadline = time.monotonic() + 2
    while server.runner.inflight and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.runner.inflight == 0


def test_max_inflight_answers_429_marked_as_not_run(runtime):
    entered, release = threading.Event(), threading.Event()

    def handler(event, context):
        entered.set()
        release.wait(5)
        return "done"

    _, client = runtime(handler, max_inflight=1)
    first = {}
    worker = threading.Thread(target=lambda: first.update(answer=client.post("/")))
    worker.start()
    assert entered.wait(5)
    with httpx.Client(base_url=client.base_url) as other:
        busy = other.post("/")
        ready = other.get("/_/ready")
    assert busy.status_code == 429
    assert busy.headers[REJECTED_HEADER] == "max-inflight"
    assert ready.status_code == 429
    release.set()
    worker.join(5)
    assert first["answer"].status_code == 200
    assert client.get("/_/ready").status_code == 200


def test_health_and_ready(runtime):
    server, client = runtime(lambda event, context: "x")
    health = client.get("/_/health")
    assert health.status_code == 200 and health.json()["status"] == "ok" and health.json()["function"] == "fn"
    assert client.get("/_/ready").text == "OK"
    server.runner.draining = True
    assert client.get("/_/ready").status_code == 503


def test_a_body_over_the_limit_is_413(runtime):
    _, client = runtime(lambda event, context: len(event.body), max_body=1000)
    assert client.post("/", content=b"x" * 1000).json() == 1000
    assert client.post("/", content=b"x" * 1001).status_code == 413


def test_a_chunked_body_is_read(runtime):
    _, client = runtime(lambda event, context: event.body.decode())

    def chunks():
        yield b"hello "
        yield b"world"

    assert client.post("/", content=chunks()).text == "hello world"


class _FakeGateway(BaseHTTPRequestHandler):
    seen: list = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        _FakeGateway.seen.append({"path": self.path, "headers": dict(self.headers), "body": body})
        canned = {"Missing": (404, b'{"error": "no such function"}'), "OverQuota": (429, b"{}")}
        status, answer = canned.get(self.path.split("/")[2], (200, b'{"c": 3}'))
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_gateway(monkeypatch):
    _FakeGateway.seen = []
    server = HTTPServer(("127.0.0.1", 0), _FakeGateway)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    monkeypatch.setenv("EDGEFAAS_GATEWAY_URL", f"http://127.0.0.1:{server.server_port}")
    yield _FakeGateway.seen
    server.shutdown()
    server.server_close()


def test_context_call_goes_through_the_gateway_with_license_and_parent(runtime, fake_gateway):
    def handler(event, context):
        return {"below": context.call("FuncC", json={"m": 1}, path="sub", query={"q": "1"}).json()}

    _, client = runtime(handler)
    answer = client.post("/", headers={"Authorization": "Bearer tok", "X-Call-Id": "parent1"})
    assert answer.json() == {"below": {"c": 3}}
    (seen,) = fake_gateway
    assert seen["path"] == "/function/FuncC/sub?q=1"
    assert seen["headers"]["Authorization"] == "Bearer tok"
    assert seen["headers"]["X-Parent-Call-Id"] == "parent1"
    assert json.loads(seen["body"]) == {"m": 1}


def test_a_failed_nested_call_fails_the_caller_with_the_reason(runtime, fake_gateway):
    _, client = runtime(lambda event, context: context.call(event.query["name"]).json())
    answer = client.post("/?name=Missing")
    assert answer.status_code == 502
    assert "call to Missing answered 404" in answer.json()["error"]
    quota = client.post("/?name=OverQuota")
    assert quota.status_code == 429  # the caller's own problem with the nested call keeps its status


def test_settings_come_from_the_environment_with_openfaas_names(tmp_path):
    settings = parse_settings(
        [], {"EDGEFAAS_CODE": str(tmp_path / "f.py"), "exec_timeout": "1500ms", "max_inflight": "4"}
    )
    assert settings.exec_timeout == 1.5 and settings.max_inflight == 4 and settings.name == "f"
    assert parse_settings(["--code", "x.py", "--exec-timeout", "2m"], {}).exec_timeout == 120


def test_a_function_that_fails_to_import_stops_the_runtime_with_status_3(tmp_path, capsys):
    code = tmp_path / "broken.py"
    code.write_text("import not_a_module_anywhere\n\ndef handle(event, context):\n    return 1\n")
    with pytest.raises(FunctionLoadError, match="not_a_module_anywhere"):
        load_handler(code)
    assert main(["--code", str(code), "--port", "0", "--host", "127.0.0.1"]) == 3


def test_sigterm_drains_the_call_in_flight_then_exits(tmp_path):
    code = tmp_path / "slow.py"
    code.write_text(
        "import time\n\ndef handle(event, context):\n    time.sleep(0.6)\n    return 'finished'\n"
    )
    port_file = tmp_path / "port"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    process = subprocess.Popen(
        [sys.executable, "-m", "edgefaas.runtime", "--code", str(code), "--port", "0", "--host", "127.0.0.1",
         "--port-file", str(port_file)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not port_file.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        url = f"http://127.0.0.1:{int(port_file.read_text())}"
        result = {}
        caller = threading.Thread(target=lambda: result.update(answer=httpx.post(url, timeout=10)))
        caller.start()
        time.sleep(0.2)  # the call is in flight
        process.send_signal(signal.SIGTERM)
        caller.join(10)
        assert result["answer"].status_code == 200 and result["answer"].text == "finished"
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
