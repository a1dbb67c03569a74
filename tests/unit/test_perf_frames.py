"""edgefaas.perf.frames: the benchmark frame and perf_analyzer's input data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgefaas.perf import frames

pytestmark = pytest.mark.unit

# -- the frame and perf_analyzer's input data ----------------------------------------------------


def test_input_data_json_carries_every_pixel_with_its_shape():
    rng = np.random.default_rng(7)
    image = rng.integers(0, 256, size=(480, 640, 3), dtype=np.uint8)
    document = frames.input_data_json(image)
    tensor = document["data"][0]["IMAGE"]
    assert tensor["shape"] == [480, 640, 3]
    assert len(tensor["content"]) == 480 * 640 * 3
    # row-major HWC order, exactly the values (perf_analyzer packs them as UINT8 in this order)
    assert np.array_equal(np.array(tensor["content"], dtype=np.uint8).reshape(480, 640, 3), image)
    again = json.loads(json.dumps(document))
    assert again["data"][0]["IMAGE"]["content"][:5] == image.reshape(-1)[:5].tolist()


def test_input_data_json_names_the_tensor():
    image = np.zeros((2, 3, 3), dtype=np.uint8)
    assert list(frames.input_data_json(image, name="FRAME")["data"][0]) == ["FRAME"]


@pytest.mark.parametrize(
    "bad",
    [np.zeros((4, 4, 3), dtype=np.float32), np.zeros((4, 4), dtype=np.uint8), np.zeros((4, 4, 4), np.uint8)],
    ids=["float", "grey", "rgba"],
)
def test_input_data_json_refuses_what_the_model_refuses(bad):
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        frames.input_data_json(bad)


@pytest.mark.parametrize(
    ("text", "size"), [("640x480", (640, 480)), ("320X240", (320, 240)), (" 1280 x 720", (1280, 720))]
)
def test_frame_size(text, size):
    assert frames.parse_frame_size(text) == size


@pytest.mark.parametrize("text", ["640", "640x", "x480", "640x480x3", "0x480", "-1x4", "axb"])
def test_frame_size_refused(text):
    with pytest.raises(ValueError):
        frames.parse_frame_size(text)


def test_letterbox_keeps_the_aspect_and_centres_on_black():
    tall = np.full((600, 512, 3), 200, dtype=np.uint8)  # the sample photo's shape
    framed = frames.letterbox(tall, (640, 480))
    assert framed.shape == (480, 640, 3)
    assert framed.dtype == np.uint8
    columns = np.flatnonzero(framed[240, :, 0])
    # 512 * 480/600 = 409.6 -> 410 columns of picture, centred: 115 black each side
    assert len(columns) == 410
    assert columns[0] == 115
    assert (framed[:, :115] == 0).all()
    assert (framed[:, 525:] == 0).all()


def test_letterbox_upscales_a_small_picture_to_fill_one_side():
    small = np.full((10, 40, 3), 9, dtype=np.uint8)
    framed = frames.letterbox(small, (640, 480))
    rows = np.flatnonzero(framed[:, 320, 0])
    assert framed.shape == (480, 640, 3)
    assert len(rows) == 160  # 10 * 640/40
    assert rows[0] == 160


def test_frame_of_the_sample_photo_is_a_640x480_jpeg():
    pytest.importorskip("matplotlib")
    from edgefaas.vision.images import decode_image

    jpeg = frames.frame_jpeg(None)
    assert jpeg.startswith(b"\xff\xd8\xff")
    assert decode_image(jpeg).shape == (480, 640, 3)


def test_frame_of_the_right_size_is_sent_untouched(tmp_path):
    import cv2

    picture = np.random.default_rng(1).integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
    ok, encoded = cv2.imencode(".jpg", picture)
    assert ok
    path = tmp_path / "camera.jpg"
    path.write_bytes(encoded.tobytes())
    assert frames.frame_jpeg(path, (64, 48)) == encoded.tobytes()
    assert frames.frame_jpeg(path, (128, 96)) != encoded.tobytes()
