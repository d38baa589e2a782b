"""Measuring post-processing: PSNR / SSIM with and without each step, and its cost.

`vidgen evaluate RUN --postprocess denoise:nlmeans,interpolate:flow` feeds
every held-out batch (context, truth, the model's prediction) to a
`PostprocessEvaluator`, which adds a "postprocess" section to metrics.json.
Each step is scored where it can be judged against the truth:

- `denoise:METHOD` on the model's generated frames (the use it is for:
  "without" is the raw prediction) and on true frames with Gaussian noise
  of sigma 0.1 added (clipped to [0, 1]; "without" is the noisy frame).
- `interpolate:METHOD[:K]` (K = 2 by default) on real clips (context +
  truth): every K-th frame is kept, the others interpolated back and
  compared with the dropped true frames; "without" is what a K-times frame
  rate shows with no interpolation, the previous kept frame repeated. And on
  generated frames: every K-th predicted frame kept and the rest
  interpolated, against the true frames ("without" is the model's own
  prediction of those frames).

Costs are wall-clock milliseconds per frame produced (denoised or
inserted), one clip at a time, on the machine that runs the evaluation.

Example:

    steps = parse_steps("denoise:nlmeans,interpolate:flow:4")
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Optional

import numpy as np

from vidgen import metrics as M
from vidgen.errors import ArgumentError, VidgenError
from vidgen.postprocess.denoise import DENOISERS, denoise
from vidgen.postprocess.interpolate import INTERPOLATORS, drop_and_interpolate
from vidgen.postprocess.training import load_denoiser

KINDS = {"denoise": DENOISERS, "interpolate": INTERPOLATORS}
NOISE_SIGMA = 0.1
SYNTAX = ("a comma-separated list of KIND:METHOD, e.g. denoise:nlmeans,interpolate:flow "
          "(interpolate:METHOD:K for a factor other than 2), or 'all'")


@dataclasses.dataclass(frozen=True)
class Step:
    """One post-processing step to measure: `denoise:nlmeans`, `interpolate:flow:2`, ..."""

    kind: str
    method: str
    k: int = 2

    @property
    def name(self) -> str:
        if self.kind == "interpolate" and self.k != 2:
            return f"{self.kind}:{self.method}:{self.k}"
        return f"{self.kind}:{self.method}"


def parse_steps(spec: str) -> list[Step]:
    """Parses `--postprocess`: "denoise:nlmeans,interpolate:flow:3" or "all".

    Raises:
        VidgenError: for an unknown kind or method, a bad factor or an empty list.
    """
    spec = (spec or "").strip()
    if spec == "all":
        return [Step(kind, method) for kind, methods in KINDS.items() for method in methods]
    steps: list[Step] = []
    for item in spec.split(","):
        parts = item.strip().split(":")
        if len(parts) not in (2, 3) or parts[0] not in KINDS:
            raise ArgumentError(f"{{postprocess}} expects {SYNTAX}. Received item "
                                f"{item.strip()!r}", "postprocess")
        kind, method = parts[0], parts[1]
        if method not in KINDS[kind]:
            raise ArgumentError(f"Unknown {kind} method {method!r} in {{postprocess}}: "
                                f"expected one of {', '.join(KINDS[kind])}.", "postprocess")
        k = 2
        if len(parts) == 3:
            if kind != "interpolate" or not parts[2].isdigit() or int(parts[2]) < 2:
                raise ArgumentError(f"{{postprocess}}: only interpolation takes a factor, an "
                                    f"integer >= 2 (interpolate:flow:3). Received item "
                                    f"{item.strip()!r}", "postprocess")
            k = int(parts[2])
        step = Step(kind, method, k)
        if step not in steps:
            steps.append(step)
    return steps


class _Scores:
    """Sums of per-frame PSNR and SSIM, without and with a step."""

    def __init__(self):
        self.sums = {"without": np.zeros(2), "with": np.zeros(2)}
        self.frames = 0

    def update(self, without: np.ndarray, with_: np.ndarray, truth: np.ndarray) -> None:
        for key, frames in (("without", without), ("with", with_)):
            pred, true = frames[None], truth[None]
            self.sums[key] += [M.psnr_frames(pred, true).sum(), M.ssim_frames(pred, true).sum()]
        self.frames += len(truth)

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = {"frames": self.frames}
        for key, (psnr, ssim) in self.sums.items():
            out[key] = {"psnr": psnr / self.frames, "ssim": ssim / self.frames}
        out["change"] = {m: out["with"][m] - out["without"][m] for m in ("psnr", "ssim")}
        return out


class PostprocessEvaluator:
    """Accumulates the with / without scores and the cost of each step over batches.

    Args:
        steps: the steps to measure (`parse_steps`).
        denoiser: the `ResidualDenoiser` for `denoise:learned`.
        noise_sigma: standard deviation of the noise added to true frames.
        seed: seed of that noise.
    """

    def __init__(self, steps: list[Step], denoiser=None, noise_sigma: float = NOISE_SIGMA,
                 seed: int = 0):
        if denoiser is None and any(s.kind == "denoise" and s.method == "learned"
                                    for s in steps):
            raise VidgenError("denoise:learned needs the run's trained denoiser "
                              "(RUN/denoiser.keras, `vidgen postprocess train-denoiser RUN`).")
        self.steps = steps
        self.denoiser = denoiser
        self.noise_sigma = noise_sigma
        self.rng = np.random.default_rng(seed)
        self.scores = {s: {} for s in steps}
        self.seconds = {s: 0.0 for s in steps}
        self.produced = {s: 0 for s in steps}

    def _score(self, step: Step, where: str, without, with_, truth) -> None:
        self.scores[step].setdefault(where, _Scores()).update(without, with_, truth)

    def update(self, context: np.ndarray, target: np.ndarray, pred: np.ndarray) -> None:
        """Scores every step on a batch: context (B, c, ...), target and pred (B, h, ...)."""
        noisy = np.clip(target + self.rng.normal(0.0, self.noise_sigma, target.shape), 0.0, 1.0
                        ).astype(np.float32)
        for step in self.steps:
            for i in range(len(target)):
                if step.kind == "denoise":
                    self._denoise(step, pred[i], noisy[i], target[i])
                else:
                    self._interpolate(step, np.concatenate([context[i], target[i]]), pred[i],
                                      target[i])

    def _denoise(self, step: Step, pred, noisy, truth) -> None:
        start = time.perf_counter()
        cleaned = denoise(pred, step.method, model=self.denoiser)
        self.seconds[step] += time.perf_counter() - start
        self.produced[step] += len(pred)
        self._score(step, "generated", pred, cleaned, truth)
        self._score(step, "noisy_truth", noisy, denoise(noisy, step.method, self.denoiser),
                    truth)

    def _interpolate(self, step: Step, real, pred, truth) -> None:
        k = step.k
        start = time.perf_counter()
        filled, dropped = drop_and_interpolate(real, k, step.method)
        self.seconds[step] += time.perf_counter() - start
        self.produced[step] += len(filled)
        self._score(step, "real", _held(real, k, len(filled)), filled, dropped)
        if len(pred) > k:
            filled, _ = drop_and_interpolate(pred, k, step.method)
            positions = _dropped_positions(len(pred), k)
            self._score(step, "generated", pred[positions], filled, truth[positions])

    def result(self) -> dict[str, Any]:
        """The "postprocess" section of metrics.json."""
        out: dict[str, Any] = {"conventions": {
            "denoise generated": "the model's predicted frames vs truth; without = raw",
            "denoise noisy_truth": f"true frames + Gaussian noise sigma {self.noise_sigma} "
                                   "(clipped) vs truth; without = noisy",
            "interpolate real": "every K-th frame of real clips kept, the rest interpolated "
                                "back vs the dropped frames; without = previous kept frame "
                                "repeated",
            "interpolate generated": "every K-th predicted frame kept, the rest interpolated "
                                     "vs truth; without = the model's own frames",
            "ms_per_frame": "wall-clock per frame denoised or inserted",
        }}
        for step in self.steps:
            entry: dict[str, Any] = {"kind": step.kind, "method": step.method}
            if step.kind == "interpolate":
                entry["k"] = step.k
            for where, scores in self.scores[step].items():
                entry[where] = scores.result()
            produced = self.produced[step]
            entry["ms_per_frame"] = 1000.0 * self.seconds[step] / produced if produced else None
            out[step.name] = entry
        return out


def _dropped_positions(length: int, k: int) -> np.ndarray:
    span = (length - 1) // k * k + 1
    return np.array([i for i in range(span) if i % k])


def _held(clip: np.ndarray, k: int, count: int) -> np.ndarray:
    """Sample-and-hold: each dropped frame shown as the kept frame before it."""
    positions = _dropped_positions(len(clip), k)[:count]
    return clip[positions // k * k]


def table(section: dict[str, Any]) -> str:
    """A plain-text table of a "postprocess" section: change in PSNR / SSIM and ms per frame."""
    lines = [f"{'step':22s} {'on':12s} {'PSNR':>15s} {'SSIM':>15s} {'ms/frame':>9s}"]
    for name, entry in section.items():
        if name == "conventions":
            continue
        for where in ("generated", "noisy_truth", "real"):
            if where not in entry:
                continue
            r = entry[where]
            psnr = f"{r['without']['psnr']:.2f}->{r['with']['psnr']:.2f}"
            ssim = f"{r['without']['ssim']:.3f}->{r['with']['ssim']:.3f}"
            cost = entry["ms_per_frame"]
            lines.append(f"{name:22s} {where:12s} {psnr:>15s} {ssim:>15s} "
                         f"{'' if cost is None else f'{cost:9.2f}':>9s}")
    return "\n".join(lines)


def load_step_models(run_dir: str, steps: list[Step]) -> Optional[Any]:
    """The run's trained denoiser when a step needs it, else None."""
    if any(s.kind == "denoise" and s.method == "learned" for s in steps):
        return load_denoiser(run_dir)
    return None
