"""Post-processing of generated video: denoising and frame interpolation.

The method vidgen implements names two optional steps after generation;
both take and return float32 clips (T, H, W, C) in [0, 1]:

- `denoise(clip, method)`: "nlmeans" (OpenCV non-local means across
  neighbouring frames), "median" (3x3x3 space-time median) or "learned" (a
  `ResidualDenoiser` trained on the run's own data, `vidgen postprocess
  train-denoiser`).
- `interpolate(clip, k, method)`: K - 1 new frames between each pair,
  "flow" (optical flow, occlusion-aware) or "linear" (cross-fade).

`vidgen generate --denoise ... --interpolate K` applies them to generated
frames; `vidgen evaluate --postprocess ...` measures what each one changes.

Example:

    from vidgen.postprocess import denoise, interpolate
    frames = interpolate(denoise(prediction, "nlmeans"), 2, "flow")
"""

from vidgen.postprocess.denoise import DENOISERS, denoise
from vidgen.postprocess.interpolate import INTERPOLATORS, interpolate
from vidgen.postprocess.residual_denoiser import ResidualDenoiser

__all__ = ["DENOISERS", "INTERPOLATORS", "ResidualDenoiser", "denoise", "interpolate"]
