"""Locust users calling one EdgeFaaS function through the gateway, and the same function directly.

    # through the gateway (a license's token, or none for a public function), verified by the
    # blueprint's CA (`edgefaas lab ca --out ca.pem` for the lab's)
    locust -f src/edgefaas/perf/locustfile_functions.py GatewayUser --host https://10.77.0.11:8080 \\
        --ca-file ca.pem --function FuncC --license-token "$TOKEN" --headless -u 16 -r 16 -t 30s
    # the function's own runtime, skipping the gateway (e.g. a pod's address, or a local replica's port)
    locust -f src/edgefaas/perf/locustfile_functions.py DirectUser --host http://10.42.1.7:8080 \\
        --headless -u 16 -r 16 -t 30s

Pick the side with the user class's name and point it with --host. With both classes and
no --host (which would send both to one address), each uses its own URL: --gateway-url and
--function-url (or LOCUST_GATEWAY_URL / LOCUST_FUNCTION_URL). Every custom option also
reads LOCUST_<NAME> from the environment, as locust's own do.

HTTPS is always verified (locust's FastHttpUser would skip that by default): by --ca-file
(env EDGEFAAS_CA_FILE) alone when given, else by the system's store. A deployed gateway serves
HTTPS with a certificate from the blueprint's CA; a function's runtime serves plain HTTP.

Both sides send the same request (POST, JSON --payload) and count an answer as a success
only if it is a 2xx. Users wait for nothing between calls (closed loop): N users keep N
calls in flight. FastHttpUser (geventhttpclient) keeps the client's own cost low, which
matters when the load generator shares the machine with what it measures.

Locust's statistics round response times to whole milliseconds below 100 ms, too coarse for
a gateway's sub-millisecond overhead. --samples-file writes every call's own figures
instead, as JSON when the test stops: ``{"t": seconds since the test started, "ms": response
time, "ok": 2xx, "name": user class}`` (a worker of a distributed run adds its pid to the
file's name). This is what edgefaas.perf.gateway reads.
"""

from __future__ import annotations

import time
from typing import Any

from locust import FastHttpUser, events, task

from edgefaas.perf.locust_run import (
    add_ca_file_option,
    add_license_token_option,
    answer_problem,
    locust_option,
    verify_gateway_by_ca,
    write_samples,
)

DEFAULT_PAYLOAD = '{"message": "bench"}'


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument(
        "--function", default="FuncC", env_var="LOCUST_FUNCTION", help="function name (default FuncC)"
    )
    add_license_token_option(
        parser, "a license token for GatewayUser (Authorization: Bearer); empty for a public function"
    )
    parser.add_argument(
        "--gateway-url",
        default="",
        env_var="LOCUST_GATEWAY_URL",
        help="GatewayUser's base URL when --host is not given",
    )
    add_ca_file_option(parser)
    parser.add_argument(
        "--function-url",
        default="",
        env_var="LOCUST_FUNCTION_URL",
        help="DirectUser's base URL (the function's runtime) when --host is not given",
    )
    parser.add_argument(
        "--function-path",
        default="/",
        env_var="LOCUST_FUNCTION_PATH",
        help="path DirectUser calls on the runtime (default /, which is what the gateway forwards to)",
    )
    parser.add_argument(
        "--payload", default=DEFAULT_PAYLOAD, env_var="LOCUST_PAYLOAD", help="the JSON body of every call"
    )
    parser.add_argument(
        "--samples-file",
        default="",
        env_var="LOCUST_SAMPLES_FILE",
        include_in_web_ui=False,
        help="write every call's time and response time (float ms) here as JSON when the test stops",
    )


class _Samples:
    """Every call's own response time, unrounded: (seconds since start, ms, ok, user class)."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.rows: list[tuple[float, float, bool, str]] = []

    def on_request(self, name: str, response_time: float, exception: BaseException | None, **_: Any) -> None:
        self.rows.append((time.perf_counter() - self.started, response_time, exception is None, name))


_samples: _Samples | None = None


@events.test_start.add_listener
def _start(environment: Any, **_: Any) -> None:
    global _samples
    if environment.parsed_options and environment.parsed_options.samples_file:
        _samples = _Samples()
        environment.events.request.add_listener(_samples.on_request)


@events.test_stop.add_listener
def _stop(environment: Any, **_: Any) -> None:
    if _samples is None or not environment.parsed_options:
        return
    rows = [
        {"t": round(t, 6), "ms": round(ms, 4), "ok": ok, "name": name} for t, ms, ok, name in _samples.rows
    ]
    write_samples(environment, environment.parsed_options.samples_file, rows)


class _FunctionCaller(FastHttpUser):
    abstract = True
    # A lost call shows as a failure quickly instead of holding a user for locust's default minute.
    network_timeout = 30.0
    connection_timeout = 5.0

    def __init__(self, environment: Any) -> None:
        verify_gateway_by_ca(self, environment)
        super().__init__(environment)

    def _call(self, path: str, headers: dict[str, str]) -> None:
        options = self.environment.parsed_options
        payload = options.payload if options else DEFAULT_PAYLOAD
        with self.client.post(
            path, data=payload, headers=headers, name=self.label, catch_response=True
        ) as response:
            if not 200 <= (response.status_code or 0) < 300:
                response.failure(answer_problem(response))

    @property
    def label(self) -> str:
        return type(self).__name__


_option = locust_option


class GatewayUser(_FunctionCaller):
    """Calls POST /function/<name> on the gateway, with the license's token if one is given."""

    def __init__(self, environment: Any) -> None:
        if not type(self).host:
            type(self).host = _option(environment, "gateway_url") or None
        super().__init__(environment)
        self.path = f"/function/{_option(environment, 'function', 'FuncC')}"
        token = _option(environment, "license_token")
        self.headers = {"Content-Type": "application/json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"

    @task
    def call(self) -> None:
        self._call(self.path, self.headers)


class DirectUser(_FunctionCaller):
    """Calls the function's runtime itself (no gateway, no license): the baseline."""

    def __init__(self, environment: Any) -> None:
        if not type(self).host:
            type(self).host = _option(environment, "function_url") or None
        super().__init__(environment)
        self.path = _option(environment, "function_path", "/") or "/"
        self.headers = {"Content-Type": "application/json"}

    @task
    def call(self) -> None:
        self._call(self.path, self.headers)
