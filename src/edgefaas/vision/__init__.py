"""Computer-vision models that EdgeFaaS serves on edge devices (the `vision` extra).

`FaceExpressionRecognizer` (faces.py) is the face + facial-expression model that the Triton
model `face_expression` (templates/triton/models) runs; `LargeFaceExpressionRecognizer`
(large.py) the larger one that `face_expression_large` runs in the cloud for joint
inference; `decode_image` (images.py) turns
request bytes into the RGB arrays it takes. They need OpenCV and tflite-runtime, which only
the `vision` extra installs, so they are imported on first use: importing a submodule that
needs neither does not load them.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgefaas.vision.faces import EMOTIONS, Face, FaceExpressionRecognizer, default_model_path
    from edgefaas.vision.images import check_image, decode_image
    from edgefaas.vision.large import LargeFaceExpressionRecognizer, default_large_model_path

_WHERE = {
    "EMOTIONS": "faces",
    "Face": "faces",
    "FaceExpressionRecognizer": "faces",
    "default_model_path": "faces",
    "LargeFaceExpressionRecognizer": "large",
    "default_large_model_path": "large",
    "check_image": "images",
    "decode_image": "images",
}
__all__ = [
    "EMOTIONS",
    "Face",
    "FaceExpressionRecognizer",
    "LargeFaceExpressionRecognizer",
    "check_image",
    "decode_image",
    "default_large_model_path",
    "default_model_path",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'edgefaas.vision' has no attribute {name!r}")
    return getattr(import_module(f"edgefaas.vision.{_WHERE[name]}"), name)
