"""face-expression (Demo 3): faces and their expressions in an image, inferred by Triton.

POST a JPEG or PNG as the body, or call with `?source=camera` to use the camera
function's current frame. Inference runs on a Triton server chosen per request among
TRITON_URLS (comma-separated HTTP endpoints): this device's own server unless another
one is measurably faster (edgefaas.triton.offload); the answer says which ran it.

Smart monitor: GET .../monitor starts (once) a loop that analyses the camera at
MONITOR_FPS frames per second and answers the latest result; .../monitor/frame answers
the JPEG that result was computed on, with the faces in the X-Faces header.

Answers 400 for a body that is not a JPEG or PNG, and 503 (with Triton's reason) when no
Triton server could run the inference.
"""

import json
import os
import threading
import time

from edgefaas.runtime import BadRequest, Context
from edgefaas.triton import HTTP_PORT
from edgefaas.triton.client import InferenceError
from edgefaas.triton.offload import Offloader
from edgefaas.vision.images import decode_image

INPUT_SCHEMA = {
    "type": "string",
    "contentMediaType": "image/jpeg",
    "description": "a JPEG or PNG image; or no body and ?source=camera",
}
OUTPUT_SCHEMA = {
    "type": "object",
    "required": ["faces", "latency_ms", "served_by"],
    "properties": {
        "faces": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "box": {"type": "array", "items": {"type": "integer"}, "description": "x, y, w, h"},
                    "expression": {"type": "string"},
                    "score": {"type": "number"},
                },
            },
        },
        "latency_ms": {"type": "number"},
        "served_by": {"type": "string", "description": "the Triton server that ran the inference"},
        "reason": {"type": "string"},
    },
}

_lock = threading.Lock()
_offloader = None
_monitor = None


def offloader():
    global _offloader
    with _lock:
        if _offloader is None:
            urls = [u.strip() for u in os.environ.get("TRITON_URLS", "").split(",") if u.strip()]
            node_ip = os.environ.get("EDGEFAAS_NODE_IP")
            local = f"http://{node_ip}:{HTTP_PORT}" if node_ip else None
            _offloader = Offloader(urls, local_url=local if local in urls else None)
        return _offloader


def analyse(image):
    started = time.perf_counter()
    faces, served = offloader().recognize(image)
    return {
        "faces": [f.as_dict() for f in faces],
        "latency_ms": round((time.perf_counter() - started) * 1000, 2),
        "image": {"width": int(image.shape[1]), "height": int(image.shape[0])},
        **served,
    }


class Monitor:
    """Analyses the camera continuously; keeps the latest frame and its result."""

    def __init__(self, fps: float) -> None:
        self.period = 1.0 / fps
        self.context = Context(function_name="face-expression")
        self.latest = None
        self.frame = b""
        self.frames = 0
        self.errors = 0
        self.last_error = ""
        self.started = time.time()
        threading.Thread(target=self._run, name="smart-monitor", daemon=True).start()

    def _run(self) -> None:
        while True:
            began = time.monotonic()
            try:
                jpeg = self.context.call("camera", method="GET", timeout=10).body
                result = analyse(decode_image(jpeg))
                result["at"] = time.time()
                self.latest, self.frame = result, jpeg
                self.frames += 1
            except Exception as exc:  # keep watching: the camera or a server may come back
                self.errors += 1
                self.last_error = str(exc)
            time.sleep(max(0.0, self.period - (time.monotonic() - began)))

    def status(self):
        elapsed = max(time.time() - self.started, 1e-9)
        return {
            "latest": self.latest,
            "frames": self.frames,
            "rate_fps": round(self.frames / elapsed, 2),
            "errors": self.errors,
            "last_error": self.last_error,
        }


def monitor():
    global _monitor
    with _lock:
        if _monitor is None:
            _monitor = Monitor(float(os.environ.get("MONITOR_FPS", "2")))
        return _monitor


def handle(event, context):
    route = event.path.strip("/")
    if route == "monitor":
        return monitor().status()
    if route == "monitor/frame":
        current = monitor()
        if not current.frame:
            return {"error": "no frame analysed yet"}, 503, {"Retry-After": "1"}
        faces = json.dumps((current.latest or {}).get("faces", []))
        return current.frame, 200, {"Content-Type": "image/jpeg", "X-Faces": faces}
    if route == "servers":
        return offloader().snapshot()
    if route:
        raise BadRequest(f"unknown path /{route}: use /, /monitor, /monitor/frame or /servers")
    if event.query.get("source") == "camera":
        body = context.call("camera", method="GET", timeout=10).body
    elif event.body:
        body = event.body
    else:
        raise BadRequest("send a JPEG or PNG image as the body, or call with ?source=camera")
    try:
        image = decode_image(body)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    try:
        return analyse(image)
    except InferenceError as exc:  # no server answered: the caller may retry, it sent nothing wrong
        return {"error": f"no Triton server could run the inference: {exc}"}, 503, {"Retry-After": "5"}
