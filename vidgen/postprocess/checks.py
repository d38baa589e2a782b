"""Input checks shared by the post-processing steps: one clear sentence per mistake."""

from __future__ import annotations

import numbers

import numpy as np

from vidgen.errors import VidgenError

# A model's frames are in [0, 1] up to float rounding (a convex combination of pixels can
# land a few ULPs outside): that much is clipped, anything more is a mistake.
RANGE_TOLERANCE = 1e-5


def check_clip(clip, name: str = "clip", min_frames: int = 1) -> np.ndarray:
    """Returns `clip` as float32 (T, H, W, C) after checking rank, dtype, values and length.

    Args:
        clip: frames shaped (time, height, width, channels), float in [0, 1].
        name: what to call the clip in an error.
        min_frames: the fewest frames the caller can work with.

    Raises:
        VidgenError: for a clip of the wrong rank, channels, dtype or range
            (values within `RANGE_TOLERANCE` of [0, 1] are clipped), with NaN
            or Inf values, or with fewer than `min_frames` frames.
    """
    array = np.asarray(clip)
    if array.ndim != 4 or array.shape[-1] not in (1, 3) or 0 in array.shape[1:3]:
        raise VidgenError(
            f"{name} must be shaped (time, height, width, 1 or 3). Received shape {array.shape}")
    if not np.issubdtype(array.dtype, np.floating):
        raise VidgenError(
            f"{name} must hold float frames in [0, 1] (divide uint8 frames by 255). Received "
            f"dtype {array.dtype}")
    if len(array) < min_frames:
        raise VidgenError(
            f"{name} must have at least {min_frames} frame{'s' if min_frames > 1 else ''}. "
            f"Received {len(array)}")
    if not np.isfinite(array).all():
        raise VidgenError(f"{name} contains NaN or Inf values.")
    low, high = (float(array.min()), float(array.max())) if array.size else (0.0, 1.0)
    if low < -RANGE_TOLERANCE or high > 1.0 + RANGE_TOLERANCE:
        raise VidgenError(
            f"{name} must lie in [0, 1]. Received values in [{low:.3g}, {high:.3g}]")
    array = array.astype(np.float32, copy=False)
    if low < 0.0 or high > 1.0:
        array = np.clip(array, 0.0, 1.0)
    return array


def check_factor(k) -> int:
    """Returns the interpolation factor `k` as an int after checking it is an integer >= 1."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise VidgenError(
            f"The interpolation factor K must be an integer >= 1 (K - 1 frames are inserted "
            f"between each pair). Received: {k!r}")
    return int(k)


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """float32 frames in [0, 1] -> uint8 (rounded), the format OpenCV's filters take."""
    return (frames * 255.0 + 0.5).astype(np.uint8)
