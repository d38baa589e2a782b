"""Denoising of generated frames: classical filters and a learned refiner.

Methods, by name in `DENOISERS`:

- `nlmeans`: OpenCV's non-local means across neighbouring frames
  (`fastNlMeansDenoisingMulti`, a temporal window of 3; the first and last
  frame, which lack a neighbour on one side, per frame with
  `fastNlMeansDenoising`); colour clips through the `Colored` variants.
- `median`: a 3x3x3 median over space and time, the cheap classical option.
- `learned`: a `ResidualDenoiser` trained on the run's own data (`vidgen
  postprocess train-denoiser`), passed as `model=`.

Every function takes and returns float32 clips (T, H, W, C) in [0, 1].

Example:

    from vidgen.postprocess import denoise
    clean = denoise(frames, "nlmeans")
    clean = denoise(frames, "learned", model=keras.saving.load_model("runs/quick/denoiser.keras"))

Reference:
    Buades, Coll and Morel, "A non-local algorithm for image denoising",
    CVPR 2005.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage

from vidgen.errors import VidgenError
from vidgen.postprocess.checks import check_clip, to_uint8
from vidgen.postprocess.residual_denoiser import ResidualDenoiser, neighbour_stack

# Filter strength on the uint8 scale, chosen on 32 validation clips of the synthetic digits:
# 10 gains 3.4 dB on frames with sigma = 0.1 noise and leaves the SSIM of the quick model's
# predictions as it was (15 gains 0.8 dB more on noise but costs 0.015 SSIM on predictions).
NLMEANS_H = 10.0
NLMEANS_TEMPLATE = 5
NLMEANS_SEARCH = 15
NLMEANS_TEMPORAL_WINDOW = 3


def nlmeans(clip, h: float = NLMEANS_H, temporal_window: int = NLMEANS_TEMPORAL_WINDOW
            ) -> np.ndarray:
    """Non-local means over each frame and its neighbours.

    Args:
        clip: float frames (T, H, W, C) in [0, 1], C = 1 or 3.
        h: filter strength on the uint8 scale (larger removes more noise and detail).
        temporal_window: odd number of frames searched for similar patches.

    Returns:
        float32 (T, H, W, C) in [0, 1].
    """
    clip = check_clip(clip, "The clip to denoise")
    if temporal_window < 1 or temporal_window % 2 == 0:
        raise VidgenError(
            f"temporal_window must be a positive odd number. Received: {temporal_window}")
    frames = to_uint8(clip)
    color = frames.shape[-1] == 3
    if color:
        frames = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2BGR) for f in frames])
    else:
        frames = frames[..., 0]
    frames = np.ascontiguousarray(frames)
    half = temporal_window // 2
    out = []
    for i in range(len(frames)):
        if half and half <= i < len(frames) - half:
            if color:
                f = cv2.fastNlMeansDenoisingColoredMulti(
                    list(frames), i, temporal_window, None, h, h, NLMEANS_TEMPLATE,
                    NLMEANS_SEARCH)
            else:
                f = cv2.fastNlMeansDenoisingMulti(list(frames), i, temporal_window, None, h,
                                                  NLMEANS_TEMPLATE, NLMEANS_SEARCH)
        elif color:
            f = cv2.fastNlMeansDenoisingColored(frames[i], None, h, h, NLMEANS_TEMPLATE,
                                                NLMEANS_SEARCH)
        else:
            f = cv2.fastNlMeansDenoising(frames[i], None, h, NLMEANS_TEMPLATE, NLMEANS_SEARCH)
        out.append(cv2.cvtColor(f, cv2.COLOR_BGR2RGB) if color else f[..., None])
    return np.stack(out).astype(np.float32) / 255.0


def median(clip, size: int = 3) -> np.ndarray:
    """The median of each size x size x size neighbourhood in time and space, per channel."""
    clip = check_clip(clip, "The clip to denoise")
    return ndimage.median_filter(clip, size=(size, size, size, 1), mode="nearest")


def learned(clip, model, batch_size: int = 32) -> np.ndarray:
    """Runs a `ResidualDenoiser` over every frame with its neighbours.

    Args:
        clip: float frames (T, H, W, C) in [0, 1] with the model's channels.
        model: a `ResidualDenoiser` (e.g. loaded from RUN/denoiser.keras).
        batch_size: frames per model call.

    Returns:
        float32 (T, H, W, C) in [0, 1].
    """
    clip = check_clip(clip, "The clip to denoise")
    if not isinstance(model, ResidualDenoiser):
        raise VidgenError("The learned denoiser needs a ResidualDenoiser model (see `vidgen "
                          f"postprocess train-denoiser`). Received {type(model).__name__}")
    if clip.shape[-1] != model.channels:
        raise VidgenError(
            f"The denoiser was trained on frames with {model.channels} channel(s); the clip "
            f"has {clip.shape[-1]}.")
    inputs = neighbour_stack(clip[None], model.window)
    out = [np.asarray(model(inputs[i:i + batch_size], training=False))
           for i in range(0, len(inputs), batch_size)]
    return np.concatenate(out).astype(np.float32)


DENOISERS = {"nlmeans": nlmeans, "median": median, "learned": learned}


def denoise(clip, method: str = "nlmeans", model=None) -> np.ndarray:
    """Denoises a clip with the named method.

    Args:
        clip: float frames (T, H, W, C) in [0, 1].
        method: "nlmeans", "median", "learned" (needs `model`) or "none".
        model: the `ResidualDenoiser` for "learned".

    Returns:
        float32 (T, H, W, C) in [0, 1].
    """
    if method == "none":
        return check_clip(clip, "The clip to denoise").copy()
    if method not in DENOISERS:
        raise VidgenError(f"Unknown denoising method {method!r}: expected one of none, "
                          f"{', '.join(DENOISERS)}.")
    if method == "learned":
        if model is None:
            raise VidgenError("Denoising method 'learned' needs a trained denoiser model "
                              "(RUN/denoiser.keras, made by `vidgen postprocess "
                              "train-denoiser RUN`).")
        return learned(clip, model)
    return DENOISERS[method](clip)
