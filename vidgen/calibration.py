"""Calibrating a predictor's output floor on held-out clips.

A model trained on a pixel likelihood (BCE, MSE) spreads a faint haze over
every place an object might go. On black backgrounds that haze costs little
MSE and a lot of SSIM: SSIM's stabilising constants are tiny, so a window of
the black background predicted at 0.02 scores near 0 instead of 1.
`VideoPredictor.output_floor` sets such values to 0 in the frames the model
returns; this module picks the floor on a validation split, trading at most a
given share of MSE for SSIM, and picks 0 when no floor improves SSIM (natural
video with dark regions, for example).

Example:

    from vidgen.calibration import calibrate_output_floor
    result = calibrate_output_floor(predictor, val_dataset, tolerance=0.1)
    predictor.output_floor = result["floor"]
"""

from __future__ import annotations

from typing import Any

import numpy as np
from tqdm import tqdm

from vidgen import metrics as M
from vidgen.errors import VidgenError
from vidgen.floor import floored

__all__ = ["FLOORS", "calibrate_output_floor", "floored"]

FLOORS = tuple(round(0.05 * i, 2) for i in range(11))   # 0, 0.05, ..., 0.5


def calibrate_output_floor(predictor, dataset, tolerance: float, floors=FLOORS,
                           max_clips: int = 256, progress: bool = True) -> dict[str, Any]:
    """Chooses the output floor with the best SSIM within an MSE tolerance.

    Args:
        predictor: a `VideoPredictor` (its current floor is ignored: the
            candidates are applied to its unfloored rollouts).
        dataset: batches of (context, target) clips, e.g. the validation split.
        tolerance: the largest accepted rise of per-frame MSE, as a share of
            the unfloored MSE (0.1: at most 10% higher).
        floors: candidate floors in [0, 1).
        max_clips: score at most this many clips.
        progress: show a progress bar.

    Returns:
        {"floor", "tolerance", "clips", "candidates": [{"floor", "mse", "ssim"}]}:
        the chosen floor (0 when none raises SSIM within the tolerance) and
        every candidate's validation MSE and SSIM.
    """
    import tensorflow as tf

    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0. Received: tolerance={tolerance}")
    floors = sorted({0.0, *(float(f) for f in floors)})
    if floors[0] < 0 or floors[-1] >= 1:
        raise ValueError(f"floors must lie in [0, 1). Received: {floors}")
    rollout = None
    sums = {f: [0.0, 0.0] for f in floors}
    clips = 0
    for context, target in tqdm(dataset, desc="calibrate output floor", unit="batch",
                                disable=not progress, leave=False):
        if clips >= max_clips:
            break
        context = np.asarray(context)[:max_clips - clips]
        target = np.asarray(target)[:max_clips - clips]
        if rollout is None:
            rollout = tf.function(
                lambda x, horizon=target.shape[1]: predictor.rollout(x, horizon, floor=False),
                reduce_retracing=True)
        pred = np.asarray(rollout(context))
        for f in floors:
            out = floored(pred, f)
            sums[f][0] += float(M.mse_per_step(out, target).mean()) * len(context)
            sums[f][1] += float(M.ssim_frames(out, target).mean()) * len(context)
        clips += len(context)
    if not clips:
        raise VidgenError("Calibrating the output floor needs validation clips; the split "
                          "has none.")
    candidates = [{"floor": f, "mse": sums[f][0] / clips, "ssim": sums[f][1] / clips}
                  for f in floors]
    raw = candidates[0]
    allowed = [c for c in candidates if c["mse"] <= raw["mse"] * (1.0 + tolerance)]
    best = max(allowed, key=lambda c: c["ssim"])
    return {"floor": best["floor"] if best["ssim"] > raw["ssim"] else 0.0,
            "tolerance": tolerance, "clips": clips, "candidates": candidates}
