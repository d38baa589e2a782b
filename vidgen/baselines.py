"""Classical next-frame predictors: the references a learned model has to beat.

Every predictor maps float32 context clips (N, T, H, W, C) in [0, 1] to
(N, horizon, H, W, C) and is found by name in `BASELINES`:

- `copy_last`: the last context frame, repeated. Hard to beat on footage,
  where most of a frame does not move from one frame to the next.
- `flow`: dense optical flow between the last two context frames (OpenCV's
  Farneback), extrapolated at constant velocity and used to warp the last
  frame. The classical motion extrapolation: it wins wherever the motion is
  smooth, e.g. a panning camera.
- `linear`: per-pixel linear extrapolation `last + k * (last - previous)`,
  clipped to [0, 1]. Cheap; overshoots on noise, so it is not reported by
  `vidgen evaluate`.
- `black`: the all-black frame. Meaningful only on mostly dark data such as
  moving digits, where it is the "predict the background" reference
  (`black_frame_meaningful`).

Example:

    from vidgen import baselines
    future = baselines.predict("flow", context, horizon=10)   # (N, 10, H, W, C)

Reference:
    Farneback, "Two-frame motion estimation based on polynomial expansion",
    SCIA 2003 (the optical flow of `flow`).
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

# Farneback parameters (tuned at 64x64, see `flow_extrapolation`): the error of the
# extrapolation is within 1% of the one made with the true motion on translating
# textures up to 10 px per frame, and hardly changes with winsize 11-21 or poly_n 5-7.
FARNEBACK = dict(pyr_scale=0.5, levels=3, winsize=15, iterations=3, poly_n=5, poly_sigma=1.1)
# OpenCV stops its pyramid before a level smaller than 32 pixels, so a 64x64 frame gets
# 2 levels whatever `levels` says and the flow loses track beyond ~6 px per frame.
# Frames are padded (edges replicated) to this side first: 3 levels, ~10 px per frame.
FLOW_MIN_SIDE = 128
# The all-black frame is reported only on data whose context frames have a mean pixel
# below this: on the digits (about 0.05-0.1) "predict the background" is a reference a
# model that only blurs can lose to; on footage (0.3-0.6) it is no reference at all.
BLACK_FRAME_MAX_MEAN = 0.2

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)   # ITU-R BT.601, as cv2.COLOR_RGB2GRAY


def _check_context(context, horizon: int, min_frames: int = 1) -> np.ndarray:
    array = np.asarray(context)
    if array.ndim != 5 or array.shape[-1] not in (1, 3) or 0 in array.shape[2:4]:
        raise ValueError(
            "context must be shaped (clips, time, height, width, 1 or 3). Received shape "
            f"{array.shape}")
    if array.shape[1] < min_frames:
        raise ValueError(f"context must have at least {min_frames} frames. Received "
                         f"{array.shape[1]}")
    if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 1:
        raise ValueError(f"horizon must be a positive integer. Received: horizon={horizon!r}")
    return array.astype(np.float32, copy=False)


def copy_last(context, horizon: int) -> np.ndarray:
    """Repeats the last context frame.

    Args:
        context: float32 (N, T, H, W, C) in [0, 1].
        horizon: frames to predict.

    Returns:
        float32 (N, horizon, H, W, C).
    """
    context = _check_context(context, horizon)
    return np.repeat(context[:, -1:], horizon, axis=1)


def black(context, horizon: int) -> np.ndarray:
    """The all-black frame (zeros), `horizon` times.

    Args:
        context: float32 (N, T, H, W, C) in [0, 1]; only its shape is used.
        horizon: frames to predict.

    Returns:
        float32 zeros (N, horizon, H, W, C).
    """
    context = _check_context(context, horizon)
    return np.zeros((context.shape[0], horizon) + context.shape[2:], np.float32)


def linear_extrapolation(context, horizon: int) -> np.ndarray:
    """Per-pixel linear extrapolation of the last two frames, clipped to [0, 1].

    Step k is `last + k * (last - previous)`. With one context frame it is copy-last.

    Args:
        context: float32 (N, T, H, W, C) in [0, 1].
        horizon: frames to predict.

    Returns:
        float32 (N, horizon, H, W, C).
    """
    context = _check_context(context, horizon)
    if context.shape[1] < 2:
        return copy_last(context, horizon)
    last, prev = context[:, -1:], context[:, -2:-1]
    steps = np.arange(1, horizon + 1, dtype=np.float32)[None, :, None, None, None]
    return np.clip(last + steps * (last - prev), 0.0, 1.0)


def gray_uint8(frames) -> np.ndarray:
    """float (..., H, W, 1 or 3) in [0, 1] -> uint8 luma (..., H, W), like cv2.COLOR_RGB2GRAY."""
    frames = np.asarray(frames, np.float32)
    luma = frames[..., 0] if frames.shape[-1] == 1 else frames @ _LUMA
    return np.clip(np.rint(luma * 255.0), 0, 255).astype(np.uint8)


def velocity(previous: np.ndarray, last: np.ndarray) -> np.ndarray:
    """Per-pixel motion of the last frame, in pixels per frame: float32 (H, W, 2), (dx, dy).

    The Farneback flow is computed from the last frame back to the previous one,
    B with last(p) ~ previous(p + B(p)), so that it lives on the last frame's pixel
    grid: the pixel at p of the last frame moved by -B(p) since the previous frame.
    Both frames are first padded to `FLOW_MIN_SIDE` (edges replicated).

    Args:
        previous: uint8 grayscale frame (H, W), the second-to-last.
        last: uint8 grayscale frame (H, W).

    Returns:
        float32 (H, W, 2): v with last(p) ~ previous(p - v(p)).
    """
    h, w = last.shape
    pad_y, pad_x = max(0, -(-(FLOW_MIN_SIDE - h) // 2)), max(0, -(-(FLOW_MIN_SIDE - w) // 2))
    a, b = (cv2.copyMakeBorder(x, pad_y, pad_y, pad_x, pad_x, cv2.BORDER_REPLICATE)
            for x in (last, previous))
    f = FARNEBACK
    backward = cv2.calcOpticalFlowFarneback(
        a, b, None, f["pyr_scale"], f["levels"], f["winsize"], f["iterations"], f["poly_n"],
        f["poly_sigma"], 0)
    return -backward[pad_y:pad_y + h, pad_x:pad_x + w]


def flow_extrapolation(context, horizon: int) -> np.ndarray:
    """Warps the last frame along its optical flow, extrapolated at constant velocity.

    The flow v between the last two context frames (`velocity`, on grayscale uint8)
    says the pixel at p of the last frame moves by v(p) per frame. At constant
    velocity, step k at pixel q is the last frame sampled (bilinear, edges
    replicated: `cv2.remap` with `BORDER_REPLICATE`) at q - k v(q): the backward
    approximation, which takes the motion of the pixel that lands on q to be the
    motion found at q. A translation by d pixels per frame is predicted exactly,
    up to the flow's error, as last(q - k d); content that enters the frame is the
    replicated edge. (Inverting p + k v(p) = q by fixed-point iteration was tried:
    it oscillates at the edges of moving objects and scored worse on digits.)

    Farneback parameters (`FARNEBACK`): pyr_scale 0.5, levels 3, winsize 15,
    iterations 3, poly_n 5, poly_sigma 1.1, no flags, frames padded to 128x128
    (`FLOW_MIN_SIDE`). Tuned at 64x64 on smooth random RGB textures translating
    by 1-10 px per frame (with and without noise) and on moving digits.
    Clips are looped over for the flow (OpenCV computes one pair at a time);
    the grayscale conversion is vectorised and each clip's whole horizon is
    one `cv2.remap` call.

    Args:
        context: float32 (N, T, H, W, C) in [0, 1]. With T = 1 there is no
            motion to measure and the prediction is copy-last.
        horizon: frames to predict.

    Returns:
        float32 (N, horizon, H, W, C) in [0, 1].

    Reference:
        Farneback, "Two-frame motion estimation based on polynomial expansion",
        SCIA 2003.
    """
    context = _check_context(context, horizon)
    n, t, h, w, c = context.shape
    if t < 2:
        return copy_last(context, horizon)
    gray = gray_uint8(context[:, -2:])
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    steps = np.arange(1, horizon + 1, dtype=np.float32)[:, None, None]
    out = np.empty((n, horizon, h, w, c), np.float32)
    for i in range(n):
        v = velocity(gray[i, 0], gray[i, 1])
        # All steps in one remap: the horizon's sampling grids stacked along the rows.
        map_x = (xs - steps * v[..., 0]).reshape(horizon * h, w)
        map_y = (ys - steps * v[..., 1]).reshape(horizon * h, w)
        warped = cv2.remap(np.ascontiguousarray(context[i, -1]), map_x, map_y, cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
        out[i] = warped.reshape(horizon, h, w, c)
    return np.clip(out, 0.0, 1.0, out=out)


BASELINES: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "copy_last": copy_last,
    "flow": flow_extrapolation,
    "linear": linear_extrapolation,
    "black": black,
}


def predict(name: str, context, horizon: int) -> np.ndarray:
    """Predicts `horizon` frames after `context` with the baseline called `name`.

    Args:
        name: a key of `BASELINES` ("copy_last", "flow", "linear", "black").
        context: float32 (N, T, H, W, C) in [0, 1].
        horizon: frames to predict.

    Returns:
        float32 (N, horizon, H, W, C).

    Example:

        future = predict("flow", context, 10)
    """
    if name not in BASELINES:
        raise ValueError(f"Unknown baseline {name!r}; expected one of {sorted(BASELINES)}")
    return BASELINES[name](context, horizon)


def black_frame_meaningful(context_mean: float) -> bool:
    """Whether the all-black frame is a meaningful reference for data of this mean pixel.

    Args:
        context_mean: the mean pixel value, in [0, 1], of the evaluated context frames.

    Returns:
        True below `BLACK_FRAME_MAX_MEAN` (mostly dark data such as moving digits).
    """
    return float(context_mean) < BLACK_FRAME_MAX_MEAN
