"""The runtime's HTTP server: one warm function, its limits, and a graceful drain.

Threads, not asyncio: a handler is ordinary blocking Python (it may call other functions
or run a model), so each call runs on a worker thread, and the request thread waits for
it at most ``exec_timeout`` seconds. A call that outlives its timeout answers 504 but
still counts as in flight until it really ends (Python cannot stop a thread), so
``max_inflight`` protects the process from piling up runaway calls.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
import urllib.parse
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from .event import CALL_ID_HEADER, PARENT_CALL_ID_HEADER, BadRequest, CallError, Context, Event, Headers

# Marks answers the runtime gave without running the function (in-flight limit, draining):
# the gateway neither bills them nor counts them as the function's answer.
REJECTED_HEADER = "X-Edgefaas-Rejected"
HEALTH_PATH = "/_/health"
READY_PATH = "/_/ready"
# Statuses of a failed nested call that are the original caller's to fix, so passed on as they are.
_CALLER_STATUSES = frozenset({401, 403, 413, 429})

log = logging.getLogger("edgefaas.runtime")

Handler = Callable[[Event, Context], Any]


@dataclass(frozen=True)
class RuntimeSettings:
    code: Path
    port: int = 8080
    host: str = "0.0.0.0"
    name: str = ""
    exec_timeout: float = 30.0  # seconds; 0 means no limit
    max_inflight: int = 0  # 0 means no limit
    max_body: int = 16 * 1024 * 1024
    port_file: Path | None = None  # written once listening: lets a supervisor use --port 0
    exit_with_parent: bool = False  # drain and exit when the supervising process dies
    drain_quiet: float = 0.5  # while draining, wait for this long without new calls


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


class FunctionLoadError(RuntimeError):
    pass


def load_handler(code: Path) -> Handler:
    """Import the function file and return its ``handle``; FunctionLoadError if it cannot."""
    if not code.is_file():
        raise FunctionLoadError(f"no function file at {code}")
    # The file's own folder goes first on sys.path, so a function may ship helper modules.
    sys.path.insert(0, str(code.parent.resolve()))
    spec = importlib.util.spec_from_file_location("edgefaas_function", code)
    if spec is None or spec.loader is None:
        raise FunctionLoadError(f"cannot load {code}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["edgefaas_function"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        raise FunctionLoadError(f"importing {code} failed: {type(exc).__name__}: {exc}") from exc
    handler = getattr(module, "handle", None)
    if not callable(handler):
        raise FunctionLoadError(f"{code} defines no handle(event, context)")
    return handler


def to_answer(result: Any) -> Answer:
    """Turn a handler's return value into an HTTP answer.

    dict/list/number/bool -> JSON; str -> text; bytes -> octet-stream; None -> 204;
    a tuple (body, status) or (body, status, headers) sets the status and headers.
    """
    status = 200
    extra: Mapping[str, str] = {}
    if isinstance(result, tuple):
        if len(result) not in (2, 3) or not isinstance(result[1], int) or isinstance(result[0], tuple):
            raise TypeError("a tuple answer must be (body, status) or (body, status, headers)")
        status = result[1]
        if not 100 <= status <= 599:
            raise TypeError(f"status {status} is not an HTTP status")
        if len(result) == 3:
            if not isinstance(result[2], Mapping):
                raise TypeError("the headers of a tuple answer must be a dict")
            extra = result[2]
        result = result[0]
    if result is None:
        body, content_type = b"", None
        status = 204 if status == 200 else status
    elif isinstance(result, bytes | bytearray | memoryview):
        body, content_type = bytes(result), "application/octet-stream"
    elif isinstance(result, str):
        body, content_type = result.encode(), "text/plain; charset=utf-8"
    elif isinstance(result, dict | list | int | float | bool):
        try:
            body = json.dumps(result).encode()
        except (TypeError, ValueError) as exc:
            raise TypeError(f"the handler's answer is not JSON-serialisable: {exc}") from None
        content_type = "application/json"
    else:
        kind = type(result).__name__
        raise TypeError(f"a handler may return dict, list, str, bytes or a tuple, not {kind}")
    headers = {str(k): str(v) for k, v in extra.items()}
    if content_type and not any(k.lower() == "content-type" for k in headers):
        headers["Content-Type"] = content_type
    return Answer(status, headers, body)


def _error(status: int, message: str, **headers: str) -> Answer:
    body = json.dumps({"error": message}).encode()
    return Answer(status, {"Content-Type": "application/json", **headers}, body)


class FunctionRunner:
    """Runs calls of one handler with an in-flight limit and an execution timeout."""

    def __init__(
        self, handler: Handler, name: str, exec_timeout: float = 30.0, max_inflight: int = 0
    ) -> None:
        self.handler = handler
        self.name = name
        self.exec_timeout = exec_timeout
        self.max_inflight = max_inflight
        self.inflight = 0
        self.draining = False
        self.last_call = time.monotonic()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=max_inflight or 256, thread_name_prefix="call")

    def at_capacity(self) -> bool:
        return bool(self.max_inflight) and self.inflight >= self.max_inflight

    def _admit(self) -> bool:
        with self._lock:
            self.last_call = time.monotonic()
            if self.max_inflight and self.inflight >= self.max_inflight:
                return False
            self.inflight += 1
            return True

    def _done(self, _future: object) -> None:
        with self._lock:
            self.inflight -= 1

    def run(self, event: Event, context: Context) -> Answer:
        if not self._admit():
            return _error(
                429,
                f"{self.name} is at its limit of {self.max_inflight} calls in flight",
                **{REJECTED_HEADER: "max-inflight"},
            )
        future = self._pool.submit(self._call, event, context)
        future.add_done_callback(self._done)
        try:
            return future.result(timeout=self.exec_timeout or None)
        except FutureTimeout:
            log.warning("%s %s timed out after %ss", self.name, context.call_id, self.exec_timeout)
            return _error(504, f"{self.name} did not answer within {self.exec_timeout:g}s")

    def _call(self, event: Event, context: Context) -> Answer:
        try:
            result = self.handler(event, context)
            if inspect.iscoroutine(result):
                import asyncio  # only async handlers pay for importing it

                result = asyncio.run(result)
            return to_answer(result)
        except BadRequest as exc:
            return _error(400, str(exc))
        except CallError as exc:
            # A nested call failed and the handler let it through. The caller's own problems with
            # it (license, quota, size) keep their status; anything else is a bad gateway.
            log.warning("%s %s: %s", self.name, context.call_id, exc)
            return _error(exc.status if exc.status in _CALLER_STATUSES else 502, str(exc))
        except Exception as exc:
            # The traceback goes to the log (stdout); the caller gets the message only.
            log.error("%s %s raised:\n%s", self.name, context.call_id, traceback.format_exc().rstrip())
            return _error(500, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: RuntimeServer
    # Idle keep-alive connections are closed after this long, so their threads end.
    timeout = 120
    # Headers and body leave in separate writes; with Nagle on, a keep-alive peer's delayed ACK
    # would hold the body back ~40 ms on every call.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        # One line per call is logged by _dispatch; the stdlib's stderr access log is noise.
        pass

    def _dispatch(self) -> None:
        started = time.perf_counter()
        split = urllib.parse.urlsplit(self.path)
        runner = self.server.runner
        call_id = self.headers.get(CALL_ID_HEADER) or uuid.uuid4().hex
        if split.path == HEALTH_PATH:
            answer = Answer(
                200,
                {"Content-Type": "application/json"},
                json.dumps(
                    {
                        "status": "ok",
                        "function": runner.name,
                        "inflight": runner.inflight,
                        "draining": runner.draining,
                    }
                ).encode(),
            )
            self._send(answer, call_id, started, log_it=False)
            return
        if split.path == READY_PATH:
            if runner.draining:
                answer = _error(503, "draining")
            elif runner.at_capacity():
                answer = _error(429, "at max in-flight")
            else:
                answer = Answer(200, {"Content-Type": "text/plain"}, b"OK")
            self._send(answer, call_id, started, log_it=False)
            return
        try:
            body = self._read_body()
        except _BodyError as exc:
            self.close_connection = True
            self._send(_error(exc.status, str(exc)), call_id, started)
            return
        event = Event(
            body=body,
            headers=Headers(list(self.headers.items())),
            method=self.command,
            path=split.path or "/",
            query={k: v for k, v in urllib.parse.parse_qsl(split.query, keep_blank_values=True)},
            query_string=split.query,
        )
        context = Context(
            function_name=runner.name,
            call_id=call_id,
            parent_call_id=self.headers.get(PARENT_CALL_ID_HEADER, ""),
            authorization=self.headers.get("Authorization", ""),
        )
        self._send(runner.run(event, context), call_id, started)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        raw = self.headers.get("Content-Length")
        if raw is None:
            return b""
        try:
            length = int(raw)
        except ValueError:
            raise _BodyError(400, "Content-Length is not a number") from None
        if length < 0:
            raise _BodyError(400, "Content-Length is negative")
        if length > self.server.settings.max_body:
            raise _BodyError(413, f"body over {self.server.settings.max_body} bytes")
        return self.rfile.read(length)

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024).split(b";", 1)[0].strip()
            try:
                size = int(line, 16)
            except ValueError:
                raise _BodyError(400, "malformed chunked body") from None
            if size == 0:
                while self.rfile.readline(1024).strip():  # trailers
                    pass
                return b"".join(parts)
            total += size
            if total > self.server.settings.max_body:
                raise _BodyError(413, f"body over {self.server.settings.max_body} bytes")
            parts.append(self.rfile.read(size))
            self.rfile.readline(8)  # the CRLF after each chunk

    def _send(self, answer: Answer, call_id: str, started: float, log_it: bool = True) -> None:
        elapsed = time.perf_counter() - started
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self.send_header(CALL_ID_HEADER, call_id)
        self.send_header("X-Duration-Seconds", f"{elapsed:.6f}")
        # Draining: close kept-alive connections so callers (the gateway's pool, pinned to
        # this pod through the ClusterIP) reconnect to a new replica and this one goes quiet.
        if self.server.runner.draining:
            self.close_connection = True
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer.body)
        if log_it:
            log.info(
                "%s %s %s %s %d %.1fms",
                self.server.runner.name,
                call_id,
                self.command,
                urllib.parse.urlsplit(self.path).path,
                answer.status,
                elapsed * 1000,
            )


class _BodyError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class RuntimeServer(ThreadingHTTPServer):
    daemon_threads = True  # keep-alive threads must not hold the process open after a drain
    request_queue_size = 256

    def __init__(self, settings: RuntimeSettings, runner: FunctionRunner) -> None:
        self.settings = settings
        self.runner = runner
        super().__init__((settings.host, settings.port), _RequestHandler)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def drain(self, limit: float) -> None:
        """Stop taking calls once none are in flight and none arrived for a quiet moment."""
        self.runner.draining = True
        deadline = time.monotonic() + limit
        quiet = self.settings.drain_quiet
        while time.monotonic() < deadline:
            if self.runner.inflight == 0 and time.monotonic() - self.runner.last_call >= quiet:
                break
            time.sleep(0.05)
        self.shutdown()


def parse_duration(value: str) -> float:
    """Seconds from "10", "10s", "500ms" or "1m" (OpenFaaS settings use Go durations)."""
    text = value.strip().lower()
    for suffix, factor in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def _env(environ: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        if environ.get(name):
            return environ[name]
    return None


def parse_settings(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> RuntimeSettings:
    """Settings from the command line, else the environment (EDGEFAAS_*, or OpenFaaS's names)."""
    env = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(prog="python -m edgefaas.runtime", description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--code", default=_env(env, "EDGEFAAS_CODE"), help="the function file (handle(event, context))")
    add("--port", type=int, default=int(_env(env, "EDGEFAAS_PORT", "PORT") or 8080))
    add("--host", default=_env(env, "EDGEFAAS_HOST") or "0.0.0.0")
    add("--name", default=_env(env, "EDGEFAAS_FUNCTION_NAME") or "")
    add(
        "--exec-timeout",
        type=parse_duration,
        default=parse_duration(_env(env, "EDGEFAAS_EXEC_TIMEOUT", "exec_timeout") or "30"),
    )
    add("--max-inflight", type=int, default=int(_env(env, "EDGEFAAS_MAX_INFLIGHT", "max_inflight") or 0))
    add("--max-body", type=int, default=int(_env(env, "EDGEFAAS_MAX_BODY") or 16 * 1024 * 1024))
    add("--port-file", default=_env(env, "EDGEFAAS_PORT_FILE"))
    add("--exit-with-parent", action="store_true", default=bool(_env(env, "EDGEFAAS_EXIT_WITH_PARENT")))
    args = parser.parse_args(argv)
    if not args.code:
        parser.error("--code (or EDGEFAAS_CODE) is required")
    code = Path(args.code)
    return RuntimeSettings(
        code=code,
        port=args.port,
        host=args.host,
        name=args.name or code.stem,
        exec_timeout=args.exec_timeout,
        max_inflight=args.max_inflight,
        max_body=args.max_body,
        port_file=Path(args.port_file) if args.port_file else None,
        exit_with_parent=args.exit_with_parent,
    )


def serve(settings: RuntimeSettings, handler: Handler | None = None) -> RuntimeServer:
    """Load the function and bind its server (not yet serving: call serve_forever)."""
    runner = FunctionRunner(
        handler or load_handler(settings.code), settings.name, settings.exec_timeout, settings.max_inflight
    )
    server = RuntimeServer(settings, runner)
    if settings.port_file:
        tmp = settings.port_file.with_suffix(".tmp")
        tmp.write_text(f"{server.port}\n")
        os.replace(tmp, settings.port_file)  # atomic: a reader never sees a half-written port
    return server


def _watch_parent(server: RuntimeServer, limit: float) -> None:
    parent = os.getppid()
    while os.getppid() == parent:
        time.sleep(0.5)
    log.warning("supervisor (pid %d) is gone: draining", parent)
    server.drain(limit)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = parse_settings(argv)
    try:
        server = serve(settings)
    except FunctionLoadError as exc:
        log.error("%s", exc)
        if exc.__cause__ is not None:
            traceback.print_exception(exc.__cause__, file=sys.stdout)
        return 3
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", settings.host, settings.port, exc)
        return 2
    drain_limit = (settings.exec_timeout or 30.0) + 5.0

    def on_signal(signum: int, _frame: object) -> None:
        log.info("%s: signal %d, draining", settings.name, signum)
        # shutdown() blocks until serve_forever returns, so it cannot run on this thread.
        threading.Thread(target=server.drain, args=(drain_limit,), daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if settings.exit_with_parent:
        threading.Thread(target=_watch_parent, args=(server, drain_limit), daemon=True).start()
    log.info(
        "%s listening on %s:%d (exec_timeout=%ss, max_inflight=%s)",
        settings.name,
        settings.host,
        server.port,
        settings.exec_timeout,
        settings.max_inflight or "unlimited",
    )
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        server.runner.shutdown()
    log.info("%s stopped", settings.name)
    return 0
