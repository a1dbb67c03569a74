"""camera (Demo 4): the camera's current frame, as JPEG.

Reads /dev/video* through OpenCV where the device has a camera (a Jetson with a CSI or
USB camera); elsewhere, as in the virtual lab, it replays the photos shipped in the
runtime image with synthetic frames between them. The X-Camera-Source header says which.
"""

import threading

import cv2

from edgefaas.vision.camera import open_camera

INPUT_SCHEMA = {"type": "object", "description": "no input; any body is ignored"}
OUTPUT_SCHEMA = {"type": "string", "contentMediaType": "image/jpeg", "description": "the current frame"}

_lock = threading.Lock()
_camera = None


def handle(event, context):
    global _camera
    with _lock:  # one reader at a time: V4L2 devices are not shared between threads
        if _camera is None:
            _camera = open_camera()
        frame = _camera.read()
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return jpeg.tobytes(), 200, {"Content-Type": "image/jpeg", "X-Camera-Source": _camera.description}
