"""Triton Python-backend model: the cloud's larger expression model, for joint inference.

The work is edgefaas.vision's LargeFaceExpressionRecognizer (facex's classifier); this file
only adapts it to Triton, like face_expression's model.py (same PATH rule for the stub).
Inputs: IMAGE (RGB uint8 HxWx3) and the optional FACES (N x [x, y, w, h] int32): given, the
model classifies those boxes, as joint inference sends the faces the edge was unsure of;
absent, it finds the faces itself (cloud-only inference). Outputs as face_expression's.

Model config parameters: `tflite_model` (default: see edgefaas.vision.large), `num_threads`,
and the detection settings of face_expression.
"""

import json

import triton_python_backend_utils as pb_utils

from edgefaas.vision.large import LargeFaceExpressionRecognizer
from edgefaas.vision.triton_model import DETECTION, faces_response, parameter, settings


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        tuning = settings(config, {**DETECTION, "num_threads": int})
        self.recognizer = LargeFaceExpressionRecognizer(parameter(config, "tflite_model"), **tuning)

    def _recognize(self, request) -> list:
        image = pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy()
        boxes = pb_utils.get_input_tensor_by_name(request, "FACES")
        return self.recognizer(image) if boxes is None else self.recognizer.faces_at(image, boxes.as_numpy())

    def execute(self, requests: list) -> list:
        return [
            faces_response(pb_utils, "face_expression_large", lambda r=request: self._recognize(r))
            for request in requests
        ]
