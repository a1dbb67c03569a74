"""Joint inference between edge and cloud (the KubeEdge seed; Sedna's JointInference pattern).

The edge's small model (face_expression: fer's 93 KB classifier) answers every face it is
sure of; a face it scores below `threshold` is a hard example and goes to the cloud's larger
model (face_expression_large: facex's 2.6 MB classifier), whose answer replaces the edge's.
Sedna's ThresholdFilter judges a whole picture by its faces' mean score and sends the whole
picture; here each face is judged on its own and only the hard faces travel: the picture is
cropped to the box around them, and the cloud classifies the edge's boxes (the FACES input)
instead of detecting again, so every edge face keeps exactly one answer and the WAN carries
a fraction of the frame. When the cloud cannot answer, the edge's answers stand and the
answer says why (Sedna does the same: the edge result is the fallback).

Edge-only and cloud-only inference use the same clients, so the three can be measured side by
side (edgefaas.perf.joint).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgefaas.triton import FACE_MODEL, LARGE_FACE_MODEL
from edgefaas.triton.client import Face, FaceExpressionClient, InferenceError

MODES = ("edge", "cloud", "joint")
DEFAULT_THRESHOLD = 0.6


@dataclass(frozen=True)
class JointFace:
    box: tuple[int, int, int, int]
    expression: str
    score: float
    answered_by: str  # "edge" or "cloud"
    edge_expression: str | None = None  # what the edge said, for a face the cloud answered
    edge_score: float | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "box": list(self.box),
            "expression": self.expression,
            "score": round(self.score, 4),
            "answered_by": self.answered_by,
        }
        if self.edge_expression is not None:
            out["edge"] = {"expression": self.edge_expression, "score": round(self.edge_score or 0.0, 4)}
        return out


@dataclass(frozen=True)
class JointAnswer:
    mode: str
    faces: list[JointFace]
    latency_ms: float  # the whole answer, as the caller waits for it
    edge_ms: float | None = None  # the edge server's round trip, when it was asked
    cloud_ms: float | None = None  # the cloud server's round trip, when it was asked
    sent_to_cloud: int = 0  # faces the cloud classified
    cloud_bytes: int = 0  # pixels bytes sent to the cloud
    cloud_error: str | None = None  # why the edge's answers stand for hard faces
    notes: list[str] = field(default_factory=list)

    @property
    def answered_at_edge(self) -> int:
        return sum(1 for face in self.faces if face.answered_by == "edge")

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "faces": [face.as_dict() for face in self.faces],
            "latency_ms": round(self.latency_ms, 2),
            "edge_ms": None if self.edge_ms is None else round(self.edge_ms, 2),
            "cloud_ms": None if self.cloud_ms is None else round(self.cloud_ms, 2),
            "sent_to_cloud": self.sent_to_cloud,
            "cloud_bytes": self.cloud_bytes,
            "cloud_error": self.cloud_error,
        }


def check_threshold(value: float) -> float:
    """`value` if it is a confidence threshold (0..1); ValueError naming it otherwise."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"threshold must be a number between 0 and 1, not {value!r}") from None
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"threshold must be between 0 and 1, not {value!r}")
    return number


def crop_around(image: np.ndarray, boxes: list[tuple[int, int, int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """The smallest part of `image` holding every box, and the boxes in its pixels."""
    x0 = min(x for x, _, _, _ in boxes)
    y0 = min(y for _, y, _, _ in boxes)
    x1 = max(x + w for x, _, w, _ in boxes)
    y1 = max(y + h for _, y, _, h in boxes)
    shifted = np.array([(x - x0, y - y0, w, h) for x, y, w, h in boxes], dtype=np.int32).reshape(-1, 4)
    return np.ascontiguousarray(image[y0:y1, x0:x1]), shifted


class JointInference:
    """Edge-only, cloud-only and joint face-expression inference against two Triton servers."""

    def __init__(
        self,
        edge_url: str,
        cloud_url: str,
        threshold: float = DEFAULT_THRESHOLD,
        *,
        timeout: float = 30.0,
        edge_model: str = FACE_MODEL,
        cloud_model: str = LARGE_FACE_MODEL,
    ) -> None:
        self.threshold = check_threshold(threshold)
        self.edge = FaceExpressionClient(edge_url, timeout, model=edge_model)
        self.cloud = FaceExpressionClient(cloud_url, timeout, model=cloud_model)

    def infer(self, image: np.ndarray, mode: str = "joint") -> JointAnswer:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        return {"edge": self.edge_only, "cloud": self.cloud_only, "joint": self.joint}[mode](image)

    def edge_only(self, image: np.ndarray) -> JointAnswer:
        started = time.perf_counter()
        faces, edge_ms = self.edge.recognize(image)
        return JointAnswer("edge", [_face(f, "edge") for f in faces], _since(started), edge_ms=edge_ms)

    def cloud_only(self, image: np.ndarray) -> JointAnswer:
        started = time.perf_counter()
        faces, cloud_ms = self.cloud.recognize(image)
        return JointAnswer(
            "cloud",
            [_face(f, "cloud") for f in faces],
            _since(started),
            cloud_ms=cloud_ms,
            sent_to_cloud=len(faces),
            cloud_bytes=image.nbytes,
        )

    def joint(self, image: np.ndarray) -> JointAnswer:
        """The edge's answer, with every face it scores below the threshold asked of the cloud."""
        started = time.perf_counter()
        faces, edge_ms = self.edge.recognize(image)
        hard = [i for i, face in enumerate(faces) if face.score < self.threshold]
        answered = [_face(f, "edge") for f in faces]
        if not hard:
            return JointAnswer("joint", answered, _since(started), edge_ms=edge_ms)
        crop, boxes = crop_around(image, [faces[i].box for i in hard])
        try:
            cloud_faces, cloud_ms = self.cloud.recognize(crop, boxes)
            check_cloud_answer(cloud_faces, boxes)
        except InferenceError as exc:
            return JointAnswer(
                "joint",
                answered,
                _since(started),
                edge_ms=edge_ms,
                cloud_bytes=crop.nbytes,
                cloud_error=str(exc),
            )
        for index, cloud in zip(hard, cloud_faces, strict=True):
            edge = faces[index]
            answered[index] = JointFace(
                edge.box, cloud.expression, cloud.score, "cloud", edge.expression, edge.score
            )
        return JointAnswer(
            "joint",
            answered,
            _since(started),
            edge_ms=edge_ms,
            cloud_ms=cloud_ms,
            sent_to_cloud=len(hard),
            cloud_bytes=crop.nbytes,
        )


def check_cloud_answer(faces: list[Face], boxes: np.ndarray) -> None:
    """InferenceError unless the cloud answered exactly the boxes it was asked about, in order."""
    asked = [tuple(int(v) for v in box) for box in boxes.reshape(-1, 4)]
    got = [face.box for face in faces]
    if got != asked:
        raise InferenceError(f"the cloud answered for boxes {got}, not the faces asked about {asked}")


def _face(face: Face, where: str) -> JointFace:
    return JointFace(face.box, face.expression, face.score, where)


def _since(started: float) -> float:
    return (time.perf_counter() - started) * 1000
