"""The WAN load (tests/integration/wan_load.py) against a real HTTP server on loopback: it
counts what the WAN suite asserts on (a call fails only when its retry fails too, a replay is
seen as one), so those counts must be right."""

from __future__ import annotations

import http.server
import json
import threading
from collections import Counter
from pathlib import Path

import pytest

from tests.integration.wan_load import Load

pytestmark = pytest.mark.unit


class Gateway:
    """Answers POST /function/<name>: `first` to a key's first try, 200 (a replay) to its retry."""

    def __init__(self, first: int) -> None:
        self.tries: Counter[str] = Counter()
        lock = threading.Lock()
        tries = self.tries

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                key = self.headers["X-Call-Id"]
                with lock:
                    tries[key] += 1
                    retry = tries[key] > 1
                status = 200 if retry or first == 200 else first
                body = json.dumps({"key": key}).encode()
                self.send_response(status)
                self.send_header("X-Call-Id", key)
                if retry and status == 200:
                    self.send_header("X-Idempotent-Replay", "true")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"OK")

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _run(url: str, tmp_path: Path, seconds: float = 0.6) -> dict:
    config = {
        "url": url,
        "function": "FuncC",
        "token": "t",
        "threads": 3,
        "timeout": 2.0,
        "retry_delay": 0.01,
        "probe_interval": 0.05,
        "limit_s": seconds,
        "stop_file": str(tmp_path / "stop"),
        "progress_file": str(tmp_path / "progress.json"),
    }
    return Load(config).run()


def test_every_call_answered_counts_as_succeeded_once(tmp_path):
    gateway = Gateway(first=200)
    try:
        result = _run(gateway.url, tmp_path)
    finally:
        gateway.close()
    assert result["calls"] > 0
    assert result["succeeded"] == result["calls"] == len(gateway.tries)
    assert (result["failed"], result["retried"], result["replayed"]) == (0, 0, 0)
    assert json.loads((tmp_path / "progress.json").read_text())["succeeded"] == result["succeeded"]


def test_a_failed_first_try_is_retried_with_its_key_and_its_replay_counts_once(tmp_path):
    gateway = Gateway(first=503)
    try:
        result = _run(gateway.url, tmp_path)
    finally:
        gateway.close()
    assert result["calls"] > 0
    assert set(gateway.tries.values()) == {2}, "every key tried exactly twice"
    assert result["succeeded"] == result["retried"] == result["retried_ok"] == result["replayed"]
    assert result["succeeded"] == result["calls"] and result["failed"] == 0


def test_a_call_whose_retry_fails_too_is_failed_with_both_reasons(tmp_path):
    gateway = Gateway(first=200)
    gateway.close()  # nothing listens: every try is refused
    result = _run(gateway.url, tmp_path, seconds=0.3)
    assert result["calls"] > 0 and result["succeeded"] == 0
    assert result["failed"] == result["calls"] == len(result["failures"])
    assert all(f["first"] and f["retry"] for f in result["failures"])
    assert result["probe_failures"] > 0
