"""Triton Python-backend model: the faces in an RGB picture and each one's expression.

The work is edgefaas.vision's FaceExpressionRecognizer; this file only adapts it to
Triton. The backend stub runs the first `python` on PATH, so the virtualenv holding
edgefaas[vision] must come first on tritonserver's PATH. One recognizer per model instance
(the stub is a process per instance, and a TFLite interpreter is not thread-safe).

Model config parameters: `tflite_model` (the expression model's path; default: see
edgefaas.vision.faces.default_model_path) and `detect_max_side` (default 320).

A request Triton's shape check lets through but the model cannot use (an empty picture)
gets its own error response; the other requests of the same call still get answers.
"""

import json

import numpy as np
import triton_python_backend_utils as pb_utils

from edgefaas.vision.faces import FaceExpressionRecognizer


def _parameter(config: dict, key: str) -> str | None:
    return config.get("parameters", {}).get(key, {}).get("string_value") or None


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        # Detection settings from the config's parameters (deploys/triton.py: triton_models);
        # any not given keeps edgefaas.vision's default.
        casts = {"detect_max_side": int, "scale_factor": float, "min_neighbors": int, "min_face": int}
        settings = {k: cast(v) for k, cast in casts.items() if (v := _parameter(config, k)) is not None}
        self.recognizer = FaceExpressionRecognizer(_parameter(config, "tflite_model"), **settings)

    def _infer(self, request) -> "pb_utils.InferenceResponse":
        try:
            faces = self.recognizer(pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy())
        except ValueError as exc:
            return pb_utils.InferenceResponse(
                error=pb_utils.TritonError(f"face_expression: {exc}", pb_utils.TritonError.INVALID_ARG)
            )
        except Exception as exc:  # one bad request must not fail the others or the stub
            return pb_utils.InferenceResponse(
                error=pb_utils.TritonError(f"face_expression: {type(exc).__name__}: {exc}")
            )
        boxes = np.array([face.box for face in faces], dtype=np.int32).reshape(-1, 4)
        labels = np.array([face.label.encode() for face in faces], dtype=np.object_)
        scores = np.array([face.score for face in faces], dtype=np.float32)
        return pb_utils.InferenceResponse(
            output_tensors=[
                pb_utils.Tensor("BOXES", boxes),
                pb_utils.Tensor("LABELS", labels),
                pb_utils.Tensor("SCORES", scores),
            ]
        )

    def execute(self, requests: list) -> list:
        return [self._infer(request) for request in requests]
