"""The two Triton test cases of SoW Task 4.3, each run as a K3S Job on its own device.

    python -m edgefaas.triton.testcases http-face --url http://10.77.0.13:8000 --photo grace_hopper.jpg
    python -m edgefaas.triton.testcases grpc-numeric --url 10.77.0.11:8001

`http-face`: over HTTP with binary tensors, face_expression finds exactly one face in a
real photo and none in a blank frame. `grpc-numeric`: over gRPC, the server is live and
ready, face_expression's metadata declares the tensors clients rely on, and add_sub adds
and subtracts random vectors correctly. Each prints one JSON line with what it checked and
exits 0 only if every check passed, so the Job's success is the verdict; `--report FILE`
writes the same JSON line to FILE.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from edgefaas.triton import FACE_MODEL, NUMERIC_MODEL
from edgefaas.triton.client import FaceExpressionClient, http_url


def http_face(url: str, photo: Path) -> dict:
    import cv2

    bgr = cv2.imread(str(photo), cv2.IMREAD_COLOR)
    if bgr is None:
        raise SystemExit(f"http-face: cannot read the photo {photo}")
    image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    client = FaceExpressionClient(url)
    faces, photo_ms = client.recognize(image)
    blank, blank_ms = client.recognize(np.zeros_like(image))
    return {
        "case": "http-face",
        "server": url,
        "photo": photo.name,
        "faces": [f.as_dict() for f in faces],
        "blank_faces": len(blank),
        "latency_ms": {"photo": round(photo_ms, 1), "blank": round(blank_ms, 1)},
        "passed": len(faces) == 1 and not blank,
    }


def grpc_numeric(url: str) -> dict:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(http_url(url))
    checks: dict[str, bool] = {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "face_expression_ready": client.is_model_ready(FACE_MODEL),
        "add_sub_ready": client.is_model_ready(NUMERIC_MODEL),
    }
    meta = client.get_model_metadata(FACE_MODEL, as_json=True)
    inputs = {t["name"]: t["datatype"] for t in meta.get("inputs", [])}
    outputs = {t["name"]: t["datatype"] for t in meta.get("outputs", [])}
    checks["face_expression_metadata"] = inputs == {"IMAGE": "UINT8"} and outputs == {
        "BOXES": "INT32",
        "LABELS": "BYTES",
        "SCORES": "FP32",
    }
    rng = np.random.default_rng()
    a, b = rng.random(4, dtype=np.float32), rng.random(4, dtype=np.float32)
    tensors = [grpcclient.InferInput("INPUT0", [4], "FP32"), grpcclient.InferInput("INPUT1", [4], "FP32")]
    tensors[0].set_data_from_numpy(a)
    tensors[1].set_data_from_numpy(b)
    started = time.perf_counter()
    result = client.infer(NUMERIC_MODEL, tensors)
    elapsed = (time.perf_counter() - started) * 1000
    checks["add_sub_sum"] = bool(np.allclose(result.as_numpy("OUTPUT0"), a + b))
    checks["add_sub_difference"] = bool(np.allclose(result.as_numpy("OUTPUT1"), a - b))
    return {
        "case": "grpc-numeric",
        "server": url,
        "checks": checks,
        "latency_ms": round(elapsed, 2),
        "passed": all(checks.values()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m edgefaas.triton.testcases",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the server [60]")
    common.add_argument(
        "--report", type=Path, help="also write the JSON verdict here (a pod: /dev/termination-log)"
    )
    cases = parser.add_subparsers(dest="case", required=True)
    face = cases.add_parser(
        "http-face", parents=[common], help="face_expression over HTTP on a real photo and a blank frame"
    )
    face.add_argument("--url", required=True, help="Triton's HTTP endpoint, e.g. http://10.77.0.13:8000")
    face.add_argument("--photo", type=Path, required=True, help="a photo with exactly one face")
    numeric = cases.add_parser(
        "grpc-numeric", parents=[common], help="liveness, metadata and add_sub over gRPC"
    )
    numeric.add_argument("--url", required=True, help="Triton's gRPC endpoint, e.g. 10.77.0.11:8001")
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.wait
    while True:
        try:
            report = http_face(args.url, args.photo) if args.case == "http-face" else grpc_numeric(args.url)
            break
        except Exception as exc:  # the server may still be starting: the Job retries until --wait
            if time.monotonic() > deadline:
                report = {"case": args.case, "server": args.url, "error": str(exc), "passed": False}
                break
            time.sleep(2)
    line = json.dumps(report)
    print(line, flush=True)
    if args.report:
        # In a pod: the termination message, which the API keeps in the pod's status after
        # the container and its log are gone.
        args.report.write_text(line)
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
