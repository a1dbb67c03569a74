"""Locust users for Triton inference: straight to a Triton server, and through the EdgeFaaS function.

    # direct: tritonclient.http against one server (each user its own client and connection)
    TRITON_URL=http://10.77.0.12:8000 locust -f src/edgefaas/perf/locustfile_triton.py TritonUser \\
        --headless -u 2 -r 2 -t 30s
    # the function path: POST the same frame, as JPEG, to /function/face-expression on the gateway
    # (the gateway's HTTPS verified by the blueprint's CA: `edgefaas lab ca --out ca.pem` on the lab)
    locust -f src/edgefaas/perf/locustfile_triton.py FunctionUser --host https://10.77.0.11:8080 \\
        --ca-file ca.pem --headless -u 2 -r 2 -t 30s

Both users send the same picture: --frame-image (a JPEG or PNG; default matplotlib's sample
photo of Grace Hopper) letterboxed to --frame-size (default 640x480). TritonUser decodes it
once and sends the RGB pixels as a binary UINT8 tensor (JSON tensors are ~16x slower at this
size); FunctionUser posts the JPEG bytes, which the function decodes to the same pixels. So
the model sees identical input on both paths, and the function path's extra cost (gateway,
pod network, JPEG decoding, the offloader's choice) is what the two differ by.

TritonUser is a plain locust `User`: tritonclient's HTTP client is built on geventhttpclient,
so it yields to locust's gevent loop like FastHttpUser does. Every inference fires locust's
request event (request_type "triton-http", name "<model> <W>x<H>"), so locust's statistics,
CSV files and web UI show it like any HTTP request. --triton-model add_sub sends two FP32[4]
tensors instead (the numeric model), to measure the protocol without the vision work.

Targets: TritonUser calls --triton-url (env TRITON_URL), else --host. FunctionUser calls
--host, else --gateway-url (env GATEWAY_URL); --function names the function (default
face-expression); --license-token (env LOCUST_LICENSE_TOKEN) for a function that is not public;
--ca-file (env EDGEFAAS_CA_FILE) the CA FunctionUser verifies the gateway's HTTPS by, alone (else
the system's store; never unverified). Triton's own endpoint is plain HTTP.
Users wait for nothing between calls (closed loop): N users keep N requests in flight; only
after a failed call does a user pause (0.2 s), so a server that is down is not hammered.

--samples-file writes every call's own figures when the test stops, as JSON:
``{"t": seconds since start, "ms": response time, "ok": bool, "served_by": Triton URL}``
(for FunctionUser, served_by is what the function's answer names: its offloader may pick any
device's server; and "inference_ms", the function's own round trip to Triton, so the path's
overhead outside inference is ms - inference_ms). edgefaas.perf.triton reads these;
locust's own statistics round to whole milliseconds.
"""

from __future__ import annotations

import json
import os
import time
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from locust import FastHttpUser, User, events, task

from edgefaas.perf.frames import DEFAULT_FRAME, frame_jpeg, parse_frame_size
from edgefaas.perf.locust_run import (
    add_ca_file_option,
    add_license_token_option,
    answer_problem,
    locust_option,
    verify_gateway_by_ca,
    write_samples,
)
from edgefaas.triton import FACE_MODEL, NUMERIC_MODEL

REQUEST_TYPE = "triton-http"
FACE_OUTPUTS = ("BOXES", "LABELS", "SCORES")
# After a failed call a user pauses this long: a refused connection fails in microseconds, and a
# closed loop would otherwise spin thousands of failures a second against a restarting server.
FAILURE_BACKOFF_S = 0.2


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument(
        "--triton-url", default="", env_var="TRITON_URL", help="TritonUser's server, http://host:port"
    )
    parser.add_argument(
        "--triton-model",
        default=FACE_MODEL,
        choices=[FACE_MODEL, NUMERIC_MODEL],
        env_var="TRITON_MODEL",
        help=f"the model TritonUser calls (default {FACE_MODEL})",
    )
    parser.add_argument(
        "--gateway-url",
        default="",
        env_var="GATEWAY_URL",
        help="FunctionUser's gateway when --host is not given",
    )
    parser.add_argument(
        "--function", default="face-expression", env_var="LOCUST_FUNCTION", help="default face-expression"
    )
    add_license_token_option(parser, "Bearer token for FunctionUser; empty for a public function")
    add_ca_file_option(parser)
    parser.add_argument(
        "--frame-image",
        default="",
        env_var="TRITON_FRAME_IMAGE",
        help="a JPEG or PNG to send (default: matplotlib's grace_hopper.jpg)",
    )
    parser.add_argument(
        "--frame-size",
        default="{}x{}".format(*DEFAULT_FRAME),
        env_var="TRITON_FRAME_SIZE",
        help="letterbox the picture to WIDTHxHEIGHT (default 640x480)",
    )
    parser.add_argument(
        "--samples-file",
        default="",
        env_var="LOCUST_SAMPLES_FILE",
        include_in_web_ui=False,
        help="write every call's time, response time (float ms), success and served_by here as JSON",
    )


_option = locust_option


@cache
def _frame(image: str, size: str) -> tuple[bytes, np.ndarray]:
    """The frame both users send: JPEG bytes, and the RGB pixels those bytes decode to."""
    from edgefaas.vision.images import decode_image

    jpeg = frame_jpeg(Path(image) if image else None, parse_frame_size(size))
    return jpeg, decode_image(jpeg)


def _frame_for(environment: Any) -> tuple[bytes, np.ndarray]:
    return _frame(_option(environment, "frame_image"), _option(environment, "frame_size") or "640x480")


# -- every call's own figures ------------------------------------------------------------------------


def _closed_loop(user: Any) -> float:
    """locust wait_time: none, except a short pause after a failed call."""
    return FAILURE_BACKOFF_S if getattr(user, "last_failed", False) else 0.0


class _Samples:
    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.rows: list[dict[str, Any]] = []

    def on_request(
        self, response_time: float, exception: BaseException | None, context: dict | None = None, **_: Any
    ) -> None:
        row = {
            "t": round(time.perf_counter() - self.started, 6),
            "ms": round(response_time, 4),
            "ok": exception is None,
        }
        context = context or {}
        if context.get("served_by"):
            row["served_by"] = context["served_by"]
        if isinstance(context.get("inference_ms"), int | float):
            row["inference_ms"] = context["inference_ms"]
        self.rows.append(row)


_samples: _Samples | None = None


@events.test_start.add_listener
def _start(environment: Any, **_: Any) -> None:
    global _samples
    if _option(environment, "samples_file"):
        _samples = _Samples()
        environment.events.request.add_listener(_samples.on_request)


@events.test_stop.add_listener
def _stop(environment: Any, **_: Any) -> None:
    if _samples is None:
        return
    write_samples(environment, _option(environment, "samples_file"), _samples.rows)


# -- the users ----------------------------------------------------------------------------------------


def _output_bytes(result: Any, names: tuple[str, ...]) -> int:
    """Bytes of the output tensors (BYTES tensors counted by their elements' lengths)."""
    total = 0
    for name in names:
        array = result.as_numpy(name)
        if array is None:
            continue
        if array.dtype == object:
            total += sum(len(x) for x in array.reshape(-1))
        else:
            total += array.nbytes
    return total


class _ClosedLoop:
    """What both users share: no wait but after a failure, and timeouts that fail a lost call fast."""

    wait_time = _closed_loop
    network_timeout = 30.0
    connection_timeout = 5.0
    last_failed = False


class TritonUser(_ClosedLoop, User):
    """Inference with tritonclient.http, binary tensors; one client (one connection) per user."""

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        from edgefaas.triton.client import http_url

        url = _option(environment, "triton_url") or self.host or ""
        if not url:
            raise ValueError("TritonUser needs a server: --triton-url, TRITON_URL or --host")
        self.url = url if "://" in url else f"http://{url}"
        self.address = http_url(self.url)
        self.model = _option(environment, "triton_model", FACE_MODEL) or FACE_MODEL
        self.client: Any = None

    def on_start(self) -> None:
        import tritonclient.http as httpclient

        self.client = httpclient.InferenceServerClient(
            self.address, connection_timeout=self.connection_timeout, network_timeout=self.network_timeout
        )
        if self.model == FACE_MODEL:
            _, pixels = _frame_for(self.environment)
            tensor = httpclient.InferInput("IMAGE", list(pixels.shape), "UINT8")
            tensor.set_data_from_numpy(np.ascontiguousarray(pixels), binary_data=True)
            self.inputs = [tensor]
            self.outputs_named = FACE_OUTPUTS
            self.name = f"{self.model} {pixels.shape[1]}x{pixels.shape[0]}"
        else:
            values = np.arange(4, dtype=np.float32)
            self.inputs = []
            for name in ("INPUT0", "INPUT1"):
                tensor = httpclient.InferInput(name, [4], "FP32")
                tensor.set_data_from_numpy(values, binary_data=True)
                self.inputs.append(tensor)
            self.outputs_named = ("OUTPUT0", "OUTPUT1")
            self.name = self.model
        self.outputs = [httpclient.InferRequestedOutput(n, binary_data=True) for n in self.outputs_named]

    def on_stop(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    @task
    def infer(self) -> None:
        started = time.perf_counter()
        length = 0
        exception: BaseException | None = None
        try:
            result = self.client.infer(self.model, self.inputs, outputs=self.outputs)
            length = _output_bytes(result, self.outputs_named)
        except Exception as exc:  # counted as a failure, like an HTTP error in HttpUser
            exception = exc
        self.last_failed = exception is not None
        self.environment.events.request.fire(
            request_type=REQUEST_TYPE,
            name=self.name,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=length,
            response=None,
            context={"served_by": self.url},
            exception=exception,
            url=f"{self.url}/v2/models/{self.model}/infer",
        )


class FunctionUser(_ClosedLoop, FastHttpUser):
    """POSTs the frame as JPEG to /function/<name> on the gateway (the EdgeFaaS function path)."""

    def __init__(self, environment: Any) -> None:
        if not type(self).host:
            type(self).host = _option(environment, "gateway_url") or os.environ.get("GATEWAY_URL") or None
        verify_gateway_by_ca(self, environment)
        super().__init__(environment)
        self.path = f"/function/{_option(environment, 'function', 'face-expression') or 'face-expression'}"
        self.headers = {"Content-Type": "image/jpeg"}
        token = _option(environment, "license_token")
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        self.body = b""
        self.name = self.path

    def on_start(self) -> None:
        self.body, pixels = _frame_for(self.environment)
        self.name = f"{self.path} {pixels.shape[1]}x{pixels.shape[0]}"

    @task
    def call(self) -> None:
        self.last_failed = True  # until the answer proves otherwise
        with self.client.post(
            self.path, data=self.body, headers=self.headers, name=self.name, catch_response=True
        ) as response:
            if not 200 <= (response.status_code or 0) < 300:
                response.failure(answer_problem(response))
                return
            try:
                answer = json.loads(response.content or b"")
            except ValueError:
                response.failure(f"not JSON: {(response.text or '')[:200]}")
                return
            if not isinstance(answer, dict) or "faces" not in answer:
                response.failure(f"no faces in the answer: {(response.text or '')[:200]}")
                return
            context = response.request_meta["context"]
            context["served_by"] = answer.get("served_by", "")
            context["inference_ms"] = answer.get("inference_ms")
            self.last_failed = False
