"""Reconstruction losses for video prediction."""

from __future__ import annotations

import math

import keras
from keras import ops

_C1 = 0.01**2
_C2 = 0.03**2


def _gaussian_1d(size: int = 11, sigma: float = 1.5) -> list[float]:
    coords = [i - (size - 1) / 2.0 for i in range(size)]
    g = [math.exp(-(c * c) / (2 * sigma * sigma)) for c in coords]
    total = sum(g)
    return [v / total for v in g]


def ssim(y_true, y_pred, size: int = 11, sigma: float = 1.5):
    """Mean SSIM per clip of frames (batch, time, H, W, C) in [0, 1], Gaussian window.

    Valid-window SSIM (no padding), as in Wang et al. 2004 and `tf.image.ssim`.
    The Gaussian window is separable: a column pass, then a row pass.
    """
    shape = ops.shape(y_true)
    h, w = y_true.shape[2], y_true.shape[3]

    # Fold batch, time and channels into the batch: one single-channel conv.
    def fold(x):
        x = ops.transpose(x, (0, 1, 4, 2, 3))
        return ops.reshape(x, (-1, h, w, 1))

    x, y = fold(y_true), fold(y_pred)
    g = ops.convert_to_tensor(_gaussian_1d(size, sigma), dtype=x.dtype)
    column = ops.reshape(g, (size, 1, 1, 1))
    row = ops.reshape(g, (1, size, 1, 1))

    def filt(a):
        return ops.conv(ops.conv(a, column, padding="valid"), row, padding="valid")

    mu_x, mu_y = filt(x), filt(y)
    sxx = filt(x * x) - mu_x * mu_x
    syy = filt(y * y) - mu_y * mu_y
    sxy = filt(x * y) - mu_x * mu_y
    m = ((2 * mu_x * mu_y + _C1) * (2 * sxy + _C2)) / (
        (mu_x * mu_x + mu_y * mu_y + _C1) * (sxx + syy + _C2))
    per_image = ops.mean(m, axis=(1, 2, 3))
    return ops.mean(ops.reshape(per_image, (shape[0], -1)), axis=1)


@keras.saving.register_keras_serializable(package="vidgen")
class ReconstructionLoss(keras.losses.Loss):
    """Weighted sum of MSE, L1, binary cross-entropy and (1 - SSIM) between clips.

    Returns one value per clip; the `keras.losses.Loss` reduction averages
    over the batch and, under `tf.distribute`, scales per replica.

    Args:
        mse_weight, l1_weight, bce_weight, ssim_weight: weights of the terms.
            BCE is the Bernoulli likelihood of near-binary frames (digits);
            MSE or L1 suit natural video.
    """

    def __init__(self, mse_weight: float = 0.0, l1_weight: float = 0.0,
                 bce_weight: float = 1.0, ssim_weight: float = 0.0,
                 name: str = "reconstruction", **kwargs):
        super().__init__(name=name, **kwargs)
        weights = dict(mse_weight=mse_weight, l1_weight=l1_weight, bce_weight=bce_weight,
                       ssim_weight=ssim_weight)
        for key, value in weights.items():
            if value < 0:
                raise ValueError(f"{key} must be >= 0. Received: {key}={value}")
        if not any(weights.values()):
            raise ValueError("At least one loss weight must be positive. Received all zeros.")
        self.mse_weight = mse_weight
        self.l1_weight = l1_weight
        self.bce_weight = bce_weight
        self.ssim_weight = ssim_weight

    def call(self, y_true, y_pred):
        axes = tuple(range(1, len(y_true.shape)))
        total = 0.0
        if self.mse_weight:
            total = total + self.mse_weight * ops.mean(ops.square(y_pred - y_true), axis=axes)
        if self.l1_weight:
            total = total + self.l1_weight * ops.mean(ops.abs(y_pred - y_true), axis=axes)
        if self.bce_weight:
            p = ops.clip(y_pred, 1e-6, 1.0 - 1e-6)
            bce = -(y_true * ops.log(p) + (1.0 - y_true) * ops.log(1.0 - p))
            total = total + self.bce_weight * ops.mean(bce, axis=axes)
        if self.ssim_weight:
            total = total + self.ssim_weight * (1.0 - ssim(y_true, y_pred))
        return total

    def get_config(self):
        return {**super().get_config(), "mse_weight": self.mse_weight,
                "l1_weight": self.l1_weight, "bce_weight": self.bce_weight,
                "ssim_weight": self.ssim_weight}
