"""Face pictures for the joint-inference figures: a labelled set from a folder, or the sample set.

No labelled facial-expression set can be had from the package registries this project uses
(the public ones, FER-2013, CK+, JAFFE, RAF-DB, AffectNet, are distributed by their authors
or by model hubs, none inside a package), so the figures take any labelled set the operator
has, laid out as <label>/<picture> with labels in fer's names (or common synonyms):

    faces/happy/0001.jpg  faces/sad/0002.png  faces/neutral/...

Without one they run on the sample set: the one real portrait that ships in a package this
project already installs (matplotlib's grace_hopper.jpg, sample data) and fixed variants of it
a camera would also produce (mirrored, darker, brighter, low contrast, blurred, noisy, smaller,
tilted, letterboxed, heavily compressed). It carries no labels: it measures agreement between
the models, edge share and latency, never accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgefaas.vision.faces import EMOTIONS

PICTURE_SUFFIXES = (".jpg", ".jpeg", ".png")
# Folder names other sets use for fer's labels.
SYNONYMS = {
    "anger": "angry",
    "disgusted": "disgust",
    "fearful": "fear",
    "scared": "fear",
    "happiness": "happy",
    "sadness": "sad",
    "surprised": "surprise",
}
SAMPLE_SET_SOURCE = "matplotlib's sample data grace_hopper.jpg and fixed variants of it (no labels)"


@dataclass(frozen=True)
class Picture:
    name: str  # where it came from, for the figures' per-picture rows
    image: np.ndarray  # RGB uint8 HxWx3
    label: str | None = None  # one of EMOTIONS; None in an unlabelled set


class FaceSetError(ValueError):
    """A folder that is not a labelled set (the message names the file or folder)."""


def label_of(folder: str) -> str:
    """fer's name for a label folder; FaceSetError for one that names no expression."""
    name = folder.strip().lower()
    name = SYNONYMS.get(name, name)
    if name not in EMOTIONS:
        raise FaceSetError(
            f"folder {folder!r} names no expression: use one of {', '.join(EMOTIONS)} "
            f"(or {', '.join(sorted(SYNONYMS))})"
        )
    return name


def load_labelled(root: Path, limit: int | None = None) -> list[Picture]:
    """Every picture under `root`/<label>/, sorted; FaceSetError for anything else in the layout.

    `limit`: at most this many pictures, taken round-robin over the labels so a cut set keeps
    every label.
    """
    from edgefaas.vision.images import decode_image

    if not root.is_dir():
        raise FaceSetError(f"{root} is not a folder")
    loose = sorted(p.name for p in root.iterdir() if p.is_file() and p.suffix.lower() in PICTURE_SUFFIXES)
    if loose:
        raise FaceSetError(f"{root}: pictures must be in <label>/ folders, found {', '.join(loose[:3])}")
    by_label: dict[str, list[Picture]] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        label = label_of(folder.name)
        for path in sorted(folder.iterdir()):
            if not path.is_file() or path.suffix.lower() not in PICTURE_SUFFIXES:
                continue
            try:
                image = decode_image(path.read_bytes())
            except ValueError as exc:
                raise FaceSetError(f"{path}: {exc}") from None
            by_label.setdefault(label, []).append(Picture(f"{folder.name}/{path.name}", image, label))
    if not by_label:
        raise FaceSetError(f"{root}: no <label>/<picture> (.jpg, .jpeg, .png) found")
    pictures: list[Picture] = []
    queues = [list(v) for v in by_label.values()]
    while any(queues) and (limit is None or len(pictures) < limit):
        for queue in queues:
            if queue and (limit is None or len(pictures) < limit):
                pictures.append(queue.pop(0))
    return pictures


def sample_set() -> list[Picture]:
    """The unlabelled sample set: the sample portrait and fixed variants of it."""
    import cv2

    from edgefaas.perf.frames import letterbox, sample_photo
    from edgefaas.vision.images import decode_image

    photo = decode_image(sample_photo().read_bytes())
    height, width = photo.shape[:2]
    rng = np.random.default_rng(19)  # fixed: the same set every run

    def tone(gain: float, bias: float = 0.0) -> np.ndarray:
        return np.clip(photo.astype(np.float32) * gain + bias, 0, 255).astype(np.uint8)

    def gamma(value: float) -> np.ndarray:
        table = (255 * (np.arange(256) / 255.0) ** value).astype(np.uint8)
        return table[photo]

    def noisy(sigma: float) -> np.ndarray:
        return np.clip(photo + rng.normal(0, sigma, photo.shape), 0, 255).astype(np.uint8)

    def scaled(factor: float) -> np.ndarray:
        size = (round(width * factor), round(height * factor))
        return cv2.resize(photo, size, interpolation=cv2.INTER_AREA)

    def tilted(degrees: float) -> np.ndarray:
        matrix = cv2.getRotationMatrix2D((width / 2, height / 2), degrees, 1.0)
        return cv2.warpAffine(photo, matrix, (width, height), borderMode=cv2.BORDER_REFLECT)

    def jpeg(quality: int) -> np.ndarray:
        ok, data = cv2.imencode(".jpg", photo, [cv2.IMWRITE_JPEG_QUALITY, quality])
        return cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if ok else photo

    variants = {
        "original": photo,
        "mirrored": np.ascontiguousarray(photo[:, ::-1]),
        "darker": tone(0.55),
        "brighter": tone(1.25, 25),
        "low-contrast": tone(0.5, 64),
        "high-contrast": tone(1.6, -80),
        "gamma-0.6": gamma(0.6),
        "gamma-1.7": gamma(1.7),
        "blur-5": cv2.GaussianBlur(photo, (5, 5), 0),
        "blur-11": cv2.GaussianBlur(photo, (11, 11), 0),
        "noise-10": noisy(10),
        "noise-25": noisy(25),
        "half-size": scaled(0.5),
        "three-quarter-size": scaled(0.75),
        "tilted-left": tilted(8),
        "tilted-right": tilted(-8),
        "letterboxed-640x480": letterbox(photo, (640, 480)),
        "jpeg-q15": jpeg(15),
    }
    return [Picture(name, np.ascontiguousarray(image)) for name, image in variants.items()]
