"""Joint-inference figures: edge only, cloud only and joint, side by side in one run.

    .venv/bin/python -m edgefaas.perf.joint --edge-url http://EDGE:8000 --cloud-url http://CLOUD:8000
        [--images DIR] [--threshold 0.6] [--rounds 3] [--out DIR]
    .venv/bin/python -m edgefaas.perf.joint --inventory inventories/lab.py

Every picture is sent, round after round, the three ways in turn (the order rotates each round
so drifting load falls on all three alike): edge only (face_expression on the edge's Triton),
cloud only (face_expression_large on the cloud's Triton, which finds the faces itself) and
joint (edgefaas.triton.joint: the edge answers the faces it scores at or above --threshold,
the cloud classifies the rest). A first untimed pass loads both models.

Per way: accuracy (labelled set only: the largest face's expression against the picture's
folder; a picture with no face found counts as wrong), agreement with cloud only in the same
round (the largest face's expression), the share of faces answered at the edge, the share of
pictures that needed the cloud, p50/p95 latency per picture as the caller waits for it, and
bytes sent to the cloud. With a labelled set (--images, laid out <label>/<picture>) accuracy is
measured; without one the sample set is used and accuracy is "-" (edgefaas.perf.face_sets).

Servers: --edge-url and --cloud-url, or from the inventory: the cloud is a `cloud` group host
with triton_server data, the edge the first other host with it (http://<ssh_hostname>:
<triton_http_port>). Writes OUT/joint_bench.json (default tests/perf/out/joint-<time>), which
`edgefaas perf --suites joint` puts in the perf report. Exit status 2 when the benchmark
broke (a server unreachable, more than 5% failed calls), else 0.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgefaas.perf.bench import BenchError, out_root, repo_root
from edgefaas.perf.face_sets import SAMPLE_SET_SOURCE, FaceSetError, Picture, load_labelled, sample_set
from edgefaas.perf.stats import percentile
from edgefaas.triton.joint import DEFAULT_THRESHOLD, MODES, JointAnswer, JointInference, check_threshold

MAX_ERROR_SHARE = 0.05
# Thresholds the sweep table shows (joint inference's edge share and agreement at each).
SWEEP = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
DEFAULT_HTTP_PORT = 8000


def urls_from_inventory(inventory: Iterable[Any]) -> tuple[str, str]:
    """(edge URL, cloud URL): the first `cloud` host serving Triton and the first other one."""
    edge = cloud = None
    for host in inventory:
        data = host.data
        if not data.get("triton_server"):
            continue
        address = data.get("ssh_hostname") or host.name
        url = f"http://{address}:{int(data.get('triton_http_port') or DEFAULT_HTTP_PORT)}"
        if "cloud" in host.groups:
            cloud = cloud or url
        else:
            edge = edge or url
    if cloud is None:
        raise BenchError("no host of the inventory's cloud group has triton_server data: pass --cloud-url")
    if edge is None:
        raise BenchError("no edge host (outside the cloud group) has triton_server data: pass --edge-url")
    return edge, cloud


def largest(answer: JointAnswer | None) -> str | None:
    """The expression of the answer's largest face (the picture's subject), None when no face."""
    if answer is None or not answer.faces:
        return None
    return max(answer.faces, key=lambda f: f.box[2] * f.box[3]).expression


def sweep_record(joint: JointInference, picture: Picture, edge: JointAnswer, cloud_said: str | None) -> dict:
    """What joint inference would answer for `picture` at any threshold: the edge's faces with
    their scores, and the cloud's answer for each of them (one untimed call)."""
    boxes = np.array([f.box for f in edge.faces], dtype=np.int32).reshape(-1, 4)
    cloud_faces, _ = joint.cloud.recognize(picture.image, boxes) if len(boxes) else ([], 0.0)
    return {
        "picture": picture.name,
        "label": picture.label,
        "cloud_said": cloud_said,
        "faces": [
            {"area": f.box[2] * f.box[3], "edge": f.expression, "score": f.score, "cloud": c.expression}
            for f, c in zip(edge.faces, cloud_faces, strict=True)
        ],
    }


def sweep(pictures: Sequence[dict[str, Any]], thresholds: Sequence[float] = SWEEP) -> list[dict[str, Any]]:
    """Joint inference's figures at each threshold, from sweep_record()s (no latency: not timed)."""
    rows = []
    for threshold in thresholds:
        faces = at_edge = agree = compared = right = labelled = 0
        for record in pictures:
            said = None
            if record["faces"]:
                face = max(record["faces"], key=lambda f: f["area"])
                said = face["edge"] if face["score"] >= threshold else face["cloud"]
            faces += len(record["faces"])
            at_edge += sum(1 for f in record["faces"] if f["score"] >= threshold)
            compared += 1  # a picture where neither finds a face is agreement, as in summarize()
            agree += said == record["cloud_said"]
            if record["label"] is not None:
                labelled += 1
                right += said == record["label"]
        rows.append(
            {
                "threshold": threshold,
                "edge_share": _share(at_edge, faces),
                "agreement_with_cloud": _share(agree, compared),
                "accuracy": _share(right, labelled),
            }
        )
    return rows


def measure(
    joint: JointInference,
    pictures: Sequence[Picture],
    rounds: int,
    log: Any = print,
    sweeps: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Every picture `rounds` times each way; one record per call (an error is a record too).

    `sweeps`, when given, gets a sweep_record per picture from the first round.
    """
    records: list[dict[str, Any]] = []
    for picture in pictures[:1]:
        for mode in MODES:  # untimed: the first call of a model pays for loading it
            try:
                joint.infer(picture.image, mode)
            except Exception as exc:
                log(f"joint: warm-up {mode} call failed: {exc}")
    for round_number in range(rounds):
        for index, picture in enumerate(pictures):
            shift = (round_number + index) % len(MODES)
            answers: dict[str, JointAnswer | None] = {}
            for mode in MODES[shift:] + MODES[:shift]:
                try:
                    answers[mode] = joint.infer(picture.image, mode)
                except Exception as exc:
                    answers[mode] = None
                    records.append(
                        {
                            "round": round_number,
                            "picture": picture.name,
                            "mode": mode,
                            "ok": False,
                            "error": str(exc),
                        }
                    )
            reference = largest(answers.get("cloud"))
            edge_answer = answers.get("edge")
            if sweeps is not None and round_number == 0 and edge_answer and answers.get("cloud"):
                try:
                    sweeps.append(sweep_record(joint, picture, edge_answer, reference))
                except Exception as exc:
                    log(f"joint: no sweep figures for {picture.name}: {exc}")
            for mode, answer in answers.items():
                if answer is None:
                    continue
                said = largest(answer)
                records.append(
                    {
                        "round": round_number,
                        "picture": picture.name,
                        "label": picture.label,
                        "mode": mode,
                        "ok": True,
                        "said": said,
                        "cloud_said": reference,
                        "correct": None if picture.label is None else said == picture.label,
                        "agrees": None if answers.get("cloud") is None else said == reference,
                        **answer.as_dict(),
                        "answered_at_edge": answer.answered_at_edge,
                    }
                )
        log(f"joint: round {round_number + 1}/{rounds} done")
    return records


def _share(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(part / whole, 4)


def summarize(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per way: calls, errors, accuracy, agreement, edge share, latency percentiles."""
    out: dict[str, dict[str, Any]] = {}
    for mode in MODES:
        mine = [r for r in records if r["mode"] == mode]
        done = [r for r in mine if r["ok"]]
        times = [r["latency_ms"] for r in done]
        faces = sum(len(r["faces"]) for r in done)
        labelled = [r for r in done if r["correct"] is not None]
        compared = [r for r in done if r["agrees"] is not None]
        out[mode] = {
            "calls": len(mine),
            "errors": len(mine) - len(done),
            "pictures_without_face": sum(1 for r in done if not r["faces"]),
            "faces": faces,
            "accuracy": _share(sum(1 for r in labelled if r["correct"]), len(labelled)),
            "labelled_calls": len(labelled),
            "agreement_with_cloud": _share(sum(1 for r in compared if r["agrees"]), len(compared)),
            "edge_share": _share(sum(r["answered_at_edge"] for r in done), faces),
            "pictures_to_cloud": _share(
                sum(1 for r in done if r["sent_to_cloud"] or r["cloud_error"]), len(done)
            ),
            "cloud_errors": sum(1 for r in done if r["cloud_error"]),
            "p50_ms": round(percentile(times, 50), 2),
            "p95_ms": round(percentile(times, 95), 2),
            "mean_cloud_kb": round(sum(r["cloud_bytes"] for r in done) / len(done) / 1024, 1)
            if done
            else math.nan,
        }
    return out


def problems_of(summary: dict[str, dict[str, Any]]) -> list[str]:
    problems = []
    for mode, figures in summary.items():
        if figures["calls"] == 0:
            problems.append(f"{mode}: no call made")
        elif figures["errors"] / figures["calls"] > MAX_ERROR_SHARE:
            problems.append(f"{mode}: {figures['errors']} of {figures['calls']} calls failed")
    return problems


def _cell(value: Any, percent: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.0%}" if percent else f"{value:.1f}"


def table(result: dict[str, Any]) -> str:
    """The figures as the terminal shows them."""
    lines = [
        f"joint inference: edge {result['edge_url']}, cloud {result['cloud_url']}, threshold "
        f"{result['threshold']:g}, {result['set']['pictures']} pictures x {result['rounds']} rounds",
        f"set: {result['set']['source']}",
        "",
        f"{'way':<6} {'accuracy':>8} {'agrees':>7} {'at edge':>8} {'to cloud':>9} "
        f"{'p50 ms':>8} {'p95 ms':>8} {'cloud KB':>9} {'faces':>6} {'errors':>6}",
    ]
    for mode, f in result["modes"].items():
        lines.append(
            f"{mode:<6} {_cell(f['accuracy'], True):>8} {_cell(f['agreement_with_cloud'], True):>7} "
            f"{_cell(f['edge_share'], True):>8} {_cell(f['pictures_to_cloud'], True):>9} "
            f"{_cell(f['p50_ms']):>8} {_cell(f['p95_ms']):>8} {_cell(f['mean_cloud_kb']):>9} "
            f"{f['faces']:>6} {f['errors']:>6}"
        )
    if result.get("sweep"):
        lines += ["", "joint at other thresholds (same pictures, from the first round; not timed)"]
        lines.append(f"{'threshold':>9} {'at edge':>8} {'agrees':>7} {'accuracy':>8}")
        for row in result["sweep"]:
            lines.append(
                f"{row['threshold']:>9g} {_cell(row['edge_share'], True):>8} "
                f"{_cell(row['agreement_with_cloud'], True):>7} {_cell(row['accuracy'], True):>8}"
            )
    lines += [
        "",
        "accuracy: the largest face against the picture's label (labelled sets only); agrees: with cloud "
        "only in the same round; at edge: faces answered by the edge model; to cloud: pictures that "
        "needed the cloud; latency per picture as the caller waits for it",
    ]
    return "\n".join(lines)


def bench(args: argparse.Namespace, log: Any = print) -> dict[str, Any]:
    edge_url, cloud_url = args.edge_url, args.cloud_url
    if not (edge_url and cloud_url):
        from edgefaas.deploy.inventory import InventoryError, load_inventory

        try:
            inventory = load_inventory(args.inventory, cwd=str(repo_root()))
        except InventoryError as exc:
            raise BenchError(f"inventory {args.inventory}: {exc}") from None
        found_edge, found_cloud = urls_from_inventory(inventory)
        edge_url, cloud_url = edge_url or found_edge, cloud_url or found_cloud
    if args.images:
        try:
            pictures = load_labelled(args.images, args.limit)
        except FaceSetError as exc:
            raise BenchError(str(exc)) from None
        source, labelled = f"labelled set {args.images}", True
    else:
        pictures, source, labelled = sample_set()[: args.limit], SAMPLE_SET_SOURCE, False
    joint = JointInference(edge_url, cloud_url, args.threshold, timeout=args.timeout)
    started = time.monotonic()
    sweeps: list[dict[str, Any]] = []
    records = measure(joint, pictures, args.rounds, log, sweeps)
    summary = summarize(records)
    return {
        "edge_url": edge_url,
        "cloud_url": cloud_url,
        "threshold": args.threshold,
        "rounds": args.rounds,
        "set": {"source": source, "labelled": labelled, "pictures": len(pictures)},
        "modes": summary,
        "sweep": sweep(sweeps),
        "problems": problems_of(summary),
        "elapsed_s": round(time.monotonic() - started, 1),
        "calls": records,
    }


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {text}")
    return value


def seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, not {text}")
    return value


def threshold_arg(text: str) -> float:
    try:
        return check_threshold(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m edgefaas.perf.joint",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--edge-url", help="the edge's Triton (HTTP), e.g. http://10.77.0.13:8000")
    parser.add_argument("--cloud-url", help="the cloud's Triton (HTTP), serving face_expression_large")
    parser.add_argument(
        "--inventory", default="inventories/lab.py", help="where the URLs come from when not given"
    )
    parser.add_argument(
        "--images", type=Path, help="a labelled set, <label>/<picture> (default: the sample set)"
    )
    parser.add_argument("--limit", type=positive, help="at most this many pictures (labels taken in turn)")
    parser.add_argument(
        "--threshold", type=threshold_arg, default=DEFAULT_THRESHOLD,
        help=f"edge confidence at or above which the edge answers alone [{DEFAULT_THRESHOLD}]",
    )  # fmt: skip
    parser.add_argument("--rounds", type=positive, default=3, help="times each picture is sent each way [3]")
    parser.add_argument("--timeout", type=seconds, default=30.0, help="seconds per call [30]")
    parser.add_argument("--out", type=Path, help="default: tests/perf/out/joint-<time>")
    args = parser.parse_args(argv)
    out = args.out or out_root() / time.strftime("joint-%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    try:
        result = bench(args, log=lambda line: print(line, file=sys.stderr))
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 2
    (out / "joint_bench.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(table(result))
    print(f"figures: {out / 'joint_bench.json'}")
    if result["problems"]:
        print("NOT TRUSTED, the benchmark broke while measuring:", file=sys.stderr)
        for problem in result["problems"]:
            print(f"  {problem}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
