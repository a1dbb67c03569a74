"""The camera replay and the camera / face-expression functions, with Triton replaced by a fake."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgefaas.runtime import BadRequest, Context, Event
from edgefaas.triton.client import Face
from edgefaas.vision.camera import ReplayCamera, open_camera, synthetic_frame

pytestmark = pytest.mark.unit
FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"fn_{name}", FUNCTIONS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def jpeg(image: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))[1].tobytes()


@pytest.fixture
def frames(tmp_path: Path) -> Path:
    photo = np.full((60, 80, 3), (200, 30, 30), np.uint8)
    (tmp_path / "a.jpg").write_bytes(jpeg(photo))
    (tmp_path / "notes.txt").write_text("not a frame")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnope")
    return tmp_path


def test_replay_alternates_photos_and_synthetic_frames_by_the_clock(frames: Path):
    now = [0.0]
    camera = ReplayCamera(frames, hold=2.0, clock=lambda: now[0])
    assert camera.photos == 1  # the text file and the broken PNG are skipped
    photo = camera.read()
    assert photo.shape == (60, 80, 3) and photo[0, 0, 0] > 150  # RGB order: red stays first
    now[0] = 2.5
    synthetic = camera.read()
    assert synthetic.shape == (480, 640, 3)
    now[0] = 4.1
    assert np.array_equal(camera.read(), photo)


def test_synthetic_frames_move():
    assert not np.array_equal(synthetic_frame(1), synthetic_frame(2))


def test_without_a_video_device_the_camera_is_a_replay(frames: Path, monkeypatch):
    monkeypatch.setattr("glob.glob", lambda pattern: [])
    camera = open_camera(frames_dir=frames)
    assert isinstance(camera, ReplayCamera) and "replay" in camera.description


def test_a_named_device_that_does_not_open_is_an_error(frames: Path):
    from edgefaas.vision.camera import CameraError

    with pytest.raises(CameraError, match="/dev/video99"):
        open_camera("/dev/video99", frames_dir=frames)


def test_the_camera_function_answers_a_jpeg_and_says_where_it_came_from(frames: Path, monkeypatch):
    camera = load("camera")
    monkeypatch.setattr(camera, "open_camera", lambda: ReplayCamera(frames, clock=lambda: 0.0))
    body, status, headers = camera.handle(Event(method="GET"), Context("camera"))
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    assert body.startswith(b"\xff\xd8\xff") and "replay" in headers["X-Camera-Source"]


class FakeOffloader:
    def __init__(self) -> None:
        self.images: list[np.ndarray] = []

    def recognize(self, image):
        self.images.append(image)
        return [Face((1, 2, 3, 4), "happy", 0.8)], {"served_by": "http://x:8000", "reason": "test"}


def test_face_expression_sends_the_decoded_image_to_triton_and_reports_the_server(monkeypatch):
    fn = load("face_expression")
    fake = FakeOffloader()
    monkeypatch.setattr(fn, "offloader", lambda: fake)
    image = np.zeros((30, 40, 3), np.uint8)
    answer = fn.handle(Event(body=jpeg(image)), Context("face-expression"))
    assert fake.images[0].shape == (30, 40, 3)
    assert answer["faces"] == [{"box": [1, 2, 3, 4], "expression": "happy", "score": 0.8}]
    assert answer["served_by"] == "http://x:8000" and answer["image"] == {"width": 40, "height": 30}
    json.dumps(answer)  # the runtime must be able to send it


@pytest.mark.parametrize(
    ("body", "path", "message"),
    [
        (b"", "/", "send a JPEG or PNG"),
        (b"GIF89a....", "/", "not a JPEG or PNG"),
        (b"\xff\xd8\xff\xe0broken", "/", "corrupt"),
        (b"", "/nowhere", "unknown path"),
    ],
)
def test_face_expression_bad_input_is_a_400_naming_the_problem(monkeypatch, body, path, message):
    fn = load("face_expression")
    fake = FakeOffloader()
    monkeypatch.setattr(fn, "offloader", lambda: fake)
    with pytest.raises(BadRequest, match=message):
        fn.handle(Event(body=body, path=path), Context("face-expression"))
    assert fake.images == []


def test_face_expression_answers_503_with_the_reason_when_no_triton_server_answers(monkeypatch):
    from edgefaas.triton.client import InferenceError

    fn = load("face_expression")

    class Down:
        def recognize(self, image):
            raise InferenceError("http://10.0.0.9:8000: connection refused")

    monkeypatch.setattr(fn, "offloader", lambda: Down())
    body, status, headers = fn.handle(
        Event(body=jpeg(np.zeros((8, 8, 3), np.uint8))), Context("face-expression")
    )
    assert status == 503 and "connection refused" in body["error"] and headers["Retry-After"]
