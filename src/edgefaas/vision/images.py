"""Turning untrusted request bytes into the RGB arrays the models take.

Functions receive photos from callers the gateway does not trust, so decoding accepts only
the two formats cameras and browsers send (JPEG and PNG, recognised by their signature)
instead of every format OpenCV can parse: fewer decoders exposed, and a clear error for
anything else rather than a `None` from cv2.imdecode surfacing later as a shape error.
"""

from __future__ import annotations

import cv2
import numpy as np

_SIGNATURES = {b"\xff\xd8\xff": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG"}


def check_image(image: object) -> np.ndarray:
    """Return `image` if it is an HxWx3 uint8 array with H, W >= 1; otherwise raise ValueError.

    Models check this first so a malformed request gets a message naming what was sent
    instead of an OpenCV assertion from deep inside detection.
    """
    if not isinstance(image, np.ndarray):
        raise ValueError(f"expected an HxWx3 uint8 image array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"expected an HxWx3 uint8 image, got shape {list(image.shape)}")
    if image.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 image, got dtype {image.dtype}")
    return image


def decode_image(data: bytes) -> np.ndarray:
    """Decode JPEG or PNG bytes to an RGB uint8 HxWx3 array (EXIF orientation applied).

    Raises ValueError for empty input, other formats and corrupt files.
    """
    if not data:
        raise ValueError("empty image: expected JPEG or PNG bytes")
    kind = next((name for magic, name in _SIGNATURES.items() if data.startswith(magic)), None)
    if kind is None:
        raise ValueError(f"not a JPEG or PNG image ({len(data)} bytes starting {bytes(data[:8])!r})")
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"corrupt or truncated {kind} image ({len(data)} bytes)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
