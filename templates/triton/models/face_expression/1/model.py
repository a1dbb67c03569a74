"""Triton Python-backend model: the faces in an RGB picture and each one's expression.

The work is edgefaas.vision's FaceExpressionRecognizer; this file only adapts it to
Triton (edgefaas.vision.triton_model). The backend stub runs the first `python` on PATH, so
the virtualenv holding edgefaas[vision] must come first on tritonserver's PATH. One
recognizer per model instance (the stub is a process per instance, and a TFLite interpreter
is not thread-safe).

Model config parameters: `tflite_model` (the expression model's path; default: see
edgefaas.vision.faces.default_model_path) and the detection settings (deploys/triton.py:
triton_models).
"""

import json

import triton_python_backend_utils as pb_utils

from edgefaas.vision.faces import FaceExpressionRecognizer
from edgefaas.vision.triton_model import faces_response, parameter, settings


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        self.recognizer = FaceExpressionRecognizer(parameter(config, "tflite_model"), **settings(config))

    def _recognize(self, request) -> list:
        return self.recognizer(pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy())

    def execute(self, requests: list) -> list:
        return [faces_response(pb_utils, "face_expression", lambda r=r: self._recognize(r)) for r in requests]
