"""The output floor on its own: numpy only, so the LiteRT runner applies it without TensorFlow.

`VideoPredictor.output_floor` sets the values below it to 0 in the frames the
model returns (`vidgen.calibration` explains why and picks the value).
"""

from __future__ import annotations

import numpy as np

from vidgen.errors import VidgenError


def floored(frames: np.ndarray, floor: float) -> np.ndarray:
    """`frames` with every value below `floor` set to 0 (what `apply_floor` does)."""
    return np.where(frames < floor, 0.0, frames).astype(frames.dtype) if floor else frames


def check_floor(floor: float, name: str = "floor") -> float:
    """`floor` as a float in [0, 1); a VidgenError naming `name` otherwise."""
    try:
        value = float(floor)
    except (TypeError, ValueError):
        raise VidgenError(f"{name} must be a number in [0, 1). Received: {floor!r}") from None
    if not 0.0 <= value < 1.0:
        raise VidgenError(f"{name} must be in [0, 1). Received: {floor}")
    return value
