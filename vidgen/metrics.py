"""Video prediction metrics, per frame and per predicted step.

Conventions follow OpenSTL so that numbers can be set beside its tables:

- MSE and MAE are per-frame *sums* over channels x height x width of frames
  in [0, 1], averaged over frames and clips.
- PSNR is computed per frame (max value 1) and averaged.
- SSIM uses a Gaussian window of 11 with sigma 1.5 (Wang et al. 2004),
  averaged over channels and frames. `ssim_uniform7` is scikit-image's
  default variant (7x7 uniform window, sample covariance), the one OpenSTL
  publishes.
- Sharpness is the ratio of the mean gradient magnitude of predicted frames
  to that of the true frames: 1 is as sharp as reality, a blurred
  prediction scores below 1, the all-black frame 0.
- For a stochastic model, best-of-N PSNR/SSIM takes per clip the best of N
  sampled futures (the SAVP protocol); diversity is the mean per-frame MSE
  between pairs of samples of one clip.

All functions take numpy arrays shaped (clips, time, height, width,
channels), float in [0, 1], and return per-step arrays of length `time`.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from vidgen.errors import DataError

_C1 = 0.01**2
_C2 = 0.03**2


def _check(pred: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, np.float64)
    true = np.asarray(true, np.float64)
    if pred.shape != true.shape or pred.ndim != 5:
        raise DataError(
            "Metrics expect prediction and truth shaped (clips, time, height, width, channels) "
            f"alike. Received {pred.shape} and {true.shape}")
    return pred, true


def mse_per_step(pred, true) -> np.ndarray:
    """Per-frame sum of squared errors, averaged over clips: shape (time,)."""
    pred, true = _check(pred, true)
    return ((pred - true) ** 2).sum(axis=(2, 3, 4)).mean(axis=0)


def mae_per_step(pred, true) -> np.ndarray:
    """Per-frame sum of absolute errors, averaged over clips: shape (time,)."""
    pred, true = _check(pred, true)
    return np.abs(pred - true).sum(axis=(2, 3, 4)).mean(axis=0)


def psnr_frames(pred, true) -> np.ndarray:
    """PSNR of every frame (max value 1): shape (clips, time). Identical frames give 100 dB."""
    pred, true = _check(pred, true)
    mse = ((pred - true) ** 2).mean(axis=(2, 3, 4))
    return np.where(mse > 0, 10.0 * np.log10(1.0 / np.maximum(mse, 1e-10)), 100.0)


def psnr_per_step(pred, true) -> np.ndarray:
    """Mean per-frame PSNR per step: shape (time,)."""
    return psnr_frames(pred, true).mean(axis=0)


def _ssim_map(x: np.ndarray, y: np.ndarray, filt, cov_norm: float) -> np.ndarray:
    mu_x, mu_y = filt(x), filt(y)
    sxx = cov_norm * (filt(x * x) - mu_x * mu_x)
    syy = cov_norm * (filt(y * y) - mu_y * mu_y)
    sxy = cov_norm * (filt(x * y) - mu_x * mu_y)
    num = (2 * mu_x * mu_y + _C1) * (2 * sxy + _C2)
    den = (mu_x**2 + mu_y**2 + _C1) * (sxx + syy + _C2)
    return num / den


def _ssim_frames(pred, true, filt, crop: int, cov_norm: float = 1.0) -> np.ndarray:
    pred, true = _check(pred, true)
    n, t, h, w, c = pred.shape
    out = np.empty((n, t))
    for i in range(n):
        for j in range(t):
            values = []
            for k in range(c):
                m = _ssim_map(pred[i, j, :, :, k], true[i, j, :, :, k], filt, cov_norm)
                values.append(m[crop:h - crop, crop:w - crop].mean())
            out[i, j] = np.mean(values)
    return out


def ssim_frames(pred, true) -> np.ndarray:
    """SSIM of every frame, Gaussian window 11, sigma 1.5: shape (clips, time).

    Matches `skimage.metrics.structural_similarity(..., gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, data_range=1)`.
    """
    def filt(a):
        return ndimage.gaussian_filter(a, sigma=1.5, truncate=3.5, mode="reflect")

    return _ssim_frames(pred, true, filt, crop=(11 - 1) // 2)


def ssim_uniform7_frames(pred, true) -> np.ndarray:
    """SSIM with scikit-image's defaults (7x7 uniform window, sample covariance).

    The variant OpenSTL reports.
    """
    win = 7

    def filt(a):
        return ndimage.uniform_filter(a, size=win, mode="reflect")

    return _ssim_frames(pred, true, filt, crop=(win - 1) // 2,
                        cov_norm=win * win / (win * win - 1.0))


def ssim_per_step(pred, true) -> np.ndarray:
    return ssim_frames(pred, true).mean(axis=0)


def gradient_magnitude_frames(frames) -> np.ndarray:
    """Mean gradient magnitude (central differences) of every frame: shape (clips, time)."""
    frames = np.asarray(frames, np.float64)
    dy = np.gradient(frames, axis=2)
    dx = np.gradient(frames, axis=3)
    return np.sqrt(dx**2 + dy**2).mean(axis=(2, 3, 4))


def best_of_n(samples, true) -> dict[str, float]:
    """Best-of-N and mean-of-N PSNR/SSIM, and diversity, of sampled futures.

    Args:
        samples: (clips, N, time, H, W, C) sampled futures.
        true: (clips, time, H, W, C).

    Returns:
        {"psnr_best", "psnr_mean", "ssim_best", "ssim_mean", "diversity_mse"},
        each averaged over clips.
    """
    samples = np.asarray(samples, np.float64)
    if samples.ndim != 6 or samples.shape[:1] + samples.shape[2:] != np.shape(true):
        raise DataError("best_of_n expects samples (clips, N, time, H, W, C) matching the truth "
                        f"(clips, time, H, W, C). Received {samples.shape} and {np.shape(true)}")
    n = samples.shape[1]
    psnr = np.stack([psnr_frames(samples[:, i], true).mean(axis=1) for i in range(n)], axis=1)
    ssim = np.stack([ssim_frames(samples[:, i], true).mean(axis=1) for i in range(n)], axis=1)
    pairs = [((samples[:, i] - samples[:, j]) ** 2).sum(axis=(2, 3, 4)).mean(axis=1)
             for i in range(n) for j in range(i + 1, n)]
    return {"psnr_best": float(psnr.max(axis=1).mean()), "psnr_mean": float(psnr.mean()),
            "ssim_best": float(ssim.max(axis=1).mean()), "ssim_mean": float(ssim.mean()),
            "diversity_mse": float(np.mean(pairs)) if pairs else 0.0}


class MetricAccumulator:
    """Accumulates per-step sums over batches; `result()` gives overall and per-step values."""

    NAMES = ("mse", "mae", "psnr", "ssim", "ssim_uniform7")

    def __init__(self):
        self.sums: dict[str, np.ndarray] = {}
        self.count = 0

    def update(self, pred, true) -> None:
        pred, true = _check(pred, true)
        n = pred.shape[0]
        values = {
            "mse": mse_per_step(pred, true) * n,
            "mae": mae_per_step(pred, true) * n,
            "psnr": psnr_frames(pred, true).sum(axis=0),
            "ssim": ssim_frames(pred, true).sum(axis=0),
            "ssim_uniform7": ssim_uniform7_frames(pred, true).sum(axis=0),
            "gradient_pred": gradient_magnitude_frames(pred).sum(axis=0),
            "gradient_true": gradient_magnitude_frames(true).sum(axis=0),
        }
        for name, v in values.items():
            self.sums[name] = self.sums.get(name, 0.0) + v
        self.count += n

    def result(self) -> dict[str, dict]:
        if not self.count:
            raise DataError("No clips were scored: the evaluation split is empty.")
        out = {}
        for name in self.NAMES:
            per_step = self.sums[name] / self.count
            out[name] = {"mean": float(per_step.mean()),
                         "per_step": [float(v) for v in per_step]}
        pred, true = self.sums["gradient_pred"], self.sums["gradient_true"]
        ratio = pred / np.maximum(true, 1e-12)
        out["sharpness"] = {"mean": float(pred.sum() / max(true.sum(), 1e-12)),
                            "per_step": [float(v) for v in ratio]}
        out["clips"] = self.count
        return out
