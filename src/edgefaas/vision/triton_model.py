"""What the Triton Python-backend models of faces share (templates/triton/models/*/1/model.py).

The backend's utilities module exists only inside Triton's stub, so each model passes it in.
Both face models read their detection settings from the config's parameters and answer each
request alone: a request the model cannot use gets its own INVALID_ARG response naming the
input, and the other requests of the same call still get answers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

# Detection settings a config may give; any not given keeps edgefaas.vision's default.
DETECTION: dict[str, Callable[[str], Any]] = {
    "detect_max_side": int,
    "scale_factor": float,
    "min_neighbors": int,
    "min_face": int,
}


def parameter(model_config: dict, key: str) -> str | None:
    """A string parameter of the model's config; None when absent or empty."""
    return model_config.get("parameters", {}).get(key, {}).get("string_value") or None


def settings(model_config: dict, casts: dict[str, Callable[[str], Any]] = DETECTION) -> dict[str, Any]:
    """The parameters named in `casts` that the config gives, each cast to its type."""
    return {k: cast(v) for k, cast in casts.items() if (v := parameter(model_config, k)) is not None}


def faces_response(pb_utils: Any, model: str, recognize: Callable[[], Sequence[Any]]) -> Any:
    """Triton's response for the faces `recognize()` finds: BOXES, LABELS, SCORES; or its error."""
    try:
        faces = recognize()
    except ValueError as exc:
        error = pb_utils.TritonError(f"{model}: {exc}", pb_utils.TritonError.INVALID_ARG)
        return pb_utils.InferenceResponse(error=error)
    except Exception as exc:  # one bad request must not fail the others or the stub
        return pb_utils.InferenceResponse(error=pb_utils.TritonError(f"{model}: {type(exc).__name__}: {exc}"))
    return pb_utils.InferenceResponse(
        output_tensors=[
            pb_utils.Tensor("BOXES", np.array([face.box for face in faces], dtype=np.int32).reshape(-1, 4)),
            pb_utils.Tensor("LABELS", np.array([face.label.encode() for face in faces], dtype=np.object_)),
            pb_utils.Tensor("SCORES", np.array([face.score for face in faces], dtype=np.float32)),
        ]
    )
