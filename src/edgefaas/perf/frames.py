"""The benchmark frame: a picture letterboxed to WIDTHxHEIGHT, as JPEG and as perf_analyzer input.

The Triton bench, its locust users and the face-detection bench all send this same frame, so
the model sees identical pixels whichever path a call takes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgefaas.perf.bench import BenchError

DEFAULT_FRAME = (640, 480)  # width, height


def parse_frame_size(text: str) -> tuple[int, int]:
    """'640x480' -> (640, 480); ValueError for anything else."""
    parts = text.lower().replace(" ", "").split("x")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise ValueError(f"frame size must be WIDTHxHEIGHT, e.g. 640x480, not {text!r}")
    width, height = int(parts[0]), int(parts[1])
    if width < 1 or height < 1:
        raise ValueError(f"frame size must be positive, not {text!r}")
    return width, height


def letterbox(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`image` scaled to fit `size` (width, height) keeping its aspect, centred on black."""
    import cv2

    width, height = size
    h, w = image.shape[:2]
    scale = min(width / w, height / h)
    new_w, new_h = min(width, max(1, round(w * scale))), min(height, max(1, round(h * scale)))
    if (new_w, new_h) != (w, h):
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        image = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    top, left = (height - new_h) // 2, (width - new_w) // 2
    out = np.zeros((height, width, *image.shape[2:]), dtype=image.dtype)
    out[top : top + new_h, left : left + new_w] = image
    return out


def sample_photo() -> Path:
    """matplotlib's grace_hopper.jpg (600x512, one frontal face)."""
    from matplotlib import cbook

    return Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def frame_jpeg(source: Path | None, size: tuple[int, int] = DEFAULT_FRAME, quality: int = 90) -> bytes:
    """The benchmark frame as JPEG bytes: `source` (default the sample photo) letterboxed to `size`.

    A picture already of that size is sent as it is, so a camera's own JPEG stays untouched.
    """
    import cv2

    from edgefaas.vision.images import decode_image

    data = (source or sample_photo()).read_bytes()
    rgb = decode_image(data)
    if rgb.shape[1] == size[0] and rgb.shape[0] == size[1] and data.startswith(b"\xff\xd8\xff"):
        return data
    framed = letterbox(rgb, size)
    ok, encoded = cv2.imencode(
        ".jpg", cv2.cvtColor(framed, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise BenchError("OpenCV could not encode the frame as JPEG")
    return encoded.tobytes()


def input_data_json(image: np.ndarray, name: str = "IMAGE") -> dict[str, Any]:
    """perf_analyzer's --input-data document sending `image` (HxWx3 uint8) as the `name` tensor."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        raise ValueError(f"expected an HxWx3 uint8 image, got {getattr(image, 'dtype', type(image))} {shape}")
    content = np.ascontiguousarray(image).reshape(-1).tolist()
    return {"data": [{name: {"content": content, "shape": [int(d) for d in image.shape]}}]}
