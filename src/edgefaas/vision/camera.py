"""Camera sources for the smart monitor (Demo 4): a real /dev/video* device, or a replay.

A Jetson with a camera gets frames from V4L2 through OpenCV. Devices without one (the
virtual lab, a switch) replay a directory of photos interleaved with synthetic frames
(a moving test pattern, no face), so the face detector sees both cases. The replay picks
its frame from the clock, not from a counter: every replica of the camera function shows
the same frame at the same moment, as one physical camera would.
"""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np

FRAMES_DIR = os.environ.get("EDGEFAAS_FRAMES_DIR", "/opt/edgefaas/frames")
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")


class CameraError(RuntimeError):
    """No frame could be had (device gone, empty replay directory)."""


class Camera(Protocol):
    description: str

    def read(self) -> np.ndarray:
        """The current frame, RGB uint8 HxWx3."""
        ...


class DeviceCamera:
    """A V4L2 camera through OpenCV; reopened once if a read fails (USB cameras drop out)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.description = f"device {path}"
        self._capture = self._open()

    def _open(self):
        import cv2

        capture = cv2.VideoCapture(self.path)
        if not capture.isOpened():
            raise CameraError(f"cannot open camera {self.path}")
        return capture

    def read(self) -> np.ndarray:
        import cv2

        for attempt in range(2):
            ok, frame = self._capture.read()
            if ok and frame is not None:
                return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            if attempt == 0:
                self._capture.release()
                self._capture = self._open()
        raise CameraError(f"camera {self.path} gave no frame")


def synthetic_frame(index: int, width: int = 640, height: int = 480) -> np.ndarray:
    """A test pattern with a bar that moves with `index`: clearly a frame, clearly no face."""
    x = np.linspace(0, 255, width, dtype=np.float32)
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    frame = np.empty((height, width, 3), np.uint8)
    frame[..., 0] = x[None, :].astype(np.uint8)
    frame[..., 1] = y.astype(np.uint8)
    frame[..., 2] = 96
    left = (index * 40) % width
    frame[:, left : left + 24] = 255
    return frame


class ReplayCamera:
    """Photos from `directory` and synthetic frames in turn, each held for `hold` seconds."""

    def __init__(
        self, directory: str | Path = FRAMES_DIR, hold: float = 2.0, clock: Callable[[], float] = time.time
    ) -> None:
        import cv2

        self.directory = Path(directory)
        self.hold = hold
        self.clock = clock
        photos = sorted(p for p in self.directory.glob("*") if p.suffix.lower() in PHOTO_SUFFIXES)
        self._frames: list[np.ndarray] = []
        for photo in photos:
            bgr = cv2.imread(str(photo), cv2.IMREAD_COLOR)
            if bgr is not None:  # a file that is not an image is skipped, not fatal
                self._frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        self.photos = len(self._frames)
        self.description = f"replay of {self.photos} photos in {self.directory} and synthetic frames"

    def read(self) -> np.ndarray:
        tick = int(self.clock() / self.hold)
        # Each photo, then one synthetic frame: a face most of the time, and none in between.
        cycle = self.photos + 1
        slot = tick % cycle
        if slot < self.photos:
            return self._frames[slot]
        return synthetic_frame(tick)


def open_camera(device: str | None = None, frames_dir: str | Path = FRAMES_DIR) -> Camera:
    """The named device, else the first /dev/video* that opens, else a replay of `frames_dir`."""
    candidates = [device] if device else sorted(glob.glob("/dev/video*"))
    for path in candidates:
        try:
            return DeviceCamera(path)
        except CameraError:
            if device:
                raise
    return ReplayCamera(frames_dir)
