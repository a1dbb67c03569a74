"""Triton Python-backend model: the cloud's larger expression model, for joint inference.

The work is edgefaas.vision's LargeFaceExpressionRecognizer (facex's classifier); this file
only adapts it to Triton, like face_expression's model.py (same PATH rule for the stub).
Inputs: IMAGE (RGB uint8 HxWx3) and the optional FACES (N x [x, y, w, h] int32): given, the
model classifies those boxes, as joint inference sends the faces the edge was unsure of;
absent, it finds the faces itself (cloud-only inference). Outputs as face_expression's.

Model config parameters: `tflite_model` (default: see edgefaas.vision.large), `num_threads`,
and the detection settings of face_expression. A request the model cannot use (boxes outside
the picture, an empty picture) gets its own INVALID_ARG response naming the input.
"""

import json

import numpy as np
import triton_python_backend_utils as pb_utils

from edgefaas.vision.large import LargeFaceExpressionRecognizer


def _parameter(config: dict, key: str) -> str | None:
    return config.get("parameters", {}).get(key, {}).get("string_value") or None


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        casts = {
            "detect_max_side": int,
            "scale_factor": float,
            "min_neighbors": int,
            "min_face": int,
            "num_threads": int,
        }
        settings = {k: cast(v) for k, cast in casts.items() if (v := _parameter(config, k)) is not None}
        self.recognizer = LargeFaceExpressionRecognizer(_parameter(config, "tflite_model"), **settings)

    def _infer(self, request) -> "pb_utils.InferenceResponse":
        try:
            image = pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy()
            boxes = pb_utils.get_input_tensor_by_name(request, "FACES")
            if boxes is None:
                faces = self.recognizer(image)
            else:
                faces = self.recognizer.faces_at(image, boxes.as_numpy())
        except ValueError as exc:
            return pb_utils.InferenceResponse(
                error=pb_utils.TritonError(f"face_expression_large: {exc}", pb_utils.TritonError.INVALID_ARG)
            )
        except Exception as exc:  # one bad request must not fail the others or the stub
            return pb_utils.InferenceResponse(
                error=pb_utils.TritonError(f"face_expression_large: {type(exc).__name__}: {exc}")
            )
        boxes_out = np.array([face.box for face in faces], dtype=np.int32).reshape(-1, 4)
        labels = np.array([face.label.encode() for face in faces], dtype=np.object_)
        scores = np.array([face.score for face in faces], dtype=np.float32)
        return pb_utils.InferenceResponse(
            output_tensors=[
                pb_utils.Tensor("BOXES", boxes_out),
                pb_utils.Tensor("LABELS", labels),
                pb_utils.Tensor("SCORES", scores),
            ]
        )

    def execute(self, requests: list) -> list:
        return [self._infer(request) for request in requests]
