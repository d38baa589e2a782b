"""A TFLite step model against the Keras model it came from, and the report of the comparison.

For each variant (float32, float16, dynamic, int8) of the step model: the
largest absolute difference of its streamed rollouts from the Keras
rollouts, PSNR/SSIM of its predictions against the true frames (and the
drop against float Keras), file size, and the LiteRT interpreter's time per
step with 1 and 2 threads. Targets checked: float32 within 1e-4 of Keras;
int8 loses at most 0.01 SSIM and is at most 30% of the float32 size.
`export.tflite.export_variants` runs the comparison for every export.

Example:

    reference = keras_rollouts(model, clips, context, rollout_noise(model, clips, context))
    variant = variant_report(model, "step_int8.tflite", clips, context, reference)
"""

from __future__ import annotations

import os
import platform
import time
from typing import Optional

import numpy as np
import tensorflow as tf

from export.runner import StepRunner
from vidgen import fileio
from vidgen import metrics as M

TARGETS = {"float32_max_abs_diff": 1e-4, "int8_ssim_drop": 0.01, "int8_size_ratio": 0.30}


def step_latency_ms(path: str, num_threads: int, steps: int = 30) -> float:
    """Median wall time of one step of the LiteRT interpreter, in milliseconds."""
    runner = StepRunner(path, num_threads=num_threads)
    states = runner.initial_states()
    frame = np.zeros(runner.frame_shape, np.float32)
    times = []
    for _ in range(steps + 3):
        start = time.perf_counter()
        frame, states = runner.step(frame, states)
        times.append(time.perf_counter() - start)
    return float(np.median(times[3:]) * 1000.0)


def rollout_noise(model, clips: np.ndarray, context: int) -> Optional[np.ndarray]:
    """Fixed standard normal draws (clips, steps, *noise_shape) for a stochastic model."""
    if not model.noise_shape:
        return None
    steps = clips.shape[1] - 1
    rng = np.random.default_rng(0)
    return rng.standard_normal((len(clips), steps) + model.noise_shape).astype(np.float32)


def keras_rollouts(model, clips: np.ndarray, context: int,
                   noise: Optional[np.ndarray] = None) -> np.ndarray:
    """Float Keras predictions of clips[:, context:] from clips[:, :context].

    With `noise` (clips, steps, *noise_shape) a stochastic model uses these
    draws, the ones the TFLite runner is given, so the two can be compared.
    """
    horizon = clips.shape[1] - context
    if noise is None:
        rollout = tf.function(lambda x: model.rollout(x, horizon))
        return np.asarray(rollout(clips[:, :context]))

    rollout_with = tf.function(lambda x, draws: model.unrolled_rollout(x, horizon, draws))
    return np.asarray(rollout_with(clips[:, :context], noise))


def variant_report(model, step_path: str, clips: np.ndarray, context: int,
                   reference: Optional[np.ndarray] = None, threads=(1, 2)) -> dict:
    """Parity, quality, size and latency of one TFLite step model.

    Args:
        model: the Keras VideoPredictor the file was exported from.
        step_path: the .tflite step model.
        clips: held-out clips (N, context + horizon, H, W, C) float32.
        context: frames observed before predicting.
        reference: the Keras rollouts of `clips` (computed when None).
        threads: interpreter thread counts to time.
    """
    truth = clips[:, context:]
    noise = rollout_noise(model, clips, context)
    if reference is None:
        reference = keras_rollouts(model, clips, context, noise)
    runner = StepRunner(step_path, num_threads=1)
    # The step model streams unfloored frames; floored as the Keras rollout floors them.
    predicted = np.stack([
        runner.rollout(clip[:context], truth.shape[1], None if noise is None else noise[i],
                       floor=model.output_floor)
        for i, clip in enumerate(clips)])
    ours, keras_metrics = M.MetricAccumulator(), M.MetricAccumulator()
    ours.update(predicted, truth)
    keras_metrics.update(reference, truth)
    ours, keras_metrics = ours.result(), keras_metrics.result()
    return {
        "file": os.path.basename(step_path),
        "size_bytes": os.path.getsize(step_path),
        "clips": int(len(clips)),
        "max_abs_diff": float(np.max(np.abs(predicted - reference))),
        "mean_abs_diff": float(np.mean(np.abs(predicted - reference))),
        "first_step_max_abs_diff": float(np.max(np.abs(predicted[:, 0] - reference[:, 0]))),
        "psnr": ours["psnr"]["mean"],
        "ssim": ours["ssim"]["mean"],
        "keras_psnr": keras_metrics["psnr"]["mean"],
        "keras_ssim": keras_metrics["ssim"]["mean"],
        "psnr_drop": keras_metrics["psnr"]["mean"] - ours["psnr"]["mean"],
        "ssim_drop": keras_metrics["ssim"]["mean"] - ours["ssim"]["mean"],
        "step_ms": {str(n): step_latency_ms(step_path, n) for n in threads},
    }


def check_targets(variants: dict[str, dict]) -> dict[str, dict]:
    """The report's pass/fail lines for the variants present."""
    checks = {}
    if "float32" in variants:
        value = variants["float32"]["max_abs_diff"]
        checks["float32_max_abs_diff"] = {"value": value,
                                          "target": TARGETS["float32_max_abs_diff"],
                                          "pass": value <= TARGETS["float32_max_abs_diff"]}
    if "int8" in variants:
        value = variants["int8"]["ssim_drop"]
        checks["int8_ssim_drop"] = {"value": value, "target": TARGETS["int8_ssim_drop"],
                                    "pass": value <= TARGETS["int8_ssim_drop"]}
        if "float32" in variants:
            ratio = variants["int8"]["size_bytes"] / variants["float32"]["size_bytes"]
            checks["int8_size_ratio"] = {"value": ratio, "target": TARGETS["int8_size_ratio"],
                                         "pass": ratio <= TARGETS["int8_size_ratio"]}
    return checks


def markdown(report: dict) -> str:
    """The report as a Markdown table plus the target checks."""
    lines = [f"TFLite step model vs Keras, {report['clips']} held-out clips "
             f"({report['context']} -> {report['horizon']} frames), machine: {report['machine']}",
             "",
             "| variant | size KB | max abs diff | PSNR | SSIM | SSIM drop | ms/step 1 thr "
             "| ms/step 2 thr |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, v in report["variants"].items():
        lines.append(f"| {name} | {v['size_bytes'] / 1024:.0f} | {v['max_abs_diff']:.2e} | "
                     f"{v['psnr']:.2f} | {v['ssim']:.4f} | {v['ssim_drop']:+.4f} | "
                     f"{v['step_ms']['1']:.2f} | {v['step_ms']['2']:.2f} |")
    lines.append(f"| Keras float32 | | | {report['keras']['psnr']:.2f} | "
                 f"{report['keras']['ssim']:.4f} | | | |")
    lines.append("")
    for name, c in report["targets"].items():
        lines.append(f"- {name}: {c['value']:.4g} (target <= {c['target']:g}): "
                     f"{'pass' if c['pass'] else 'FAIL'}")
    return "\n".join(lines) + "\n"


def summarize(run_dir: str, cfg, clips: np.ndarray, reference: np.ndarray,
              variants: dict[str, dict]) -> dict:
    """The report of `variants` (quantization -> variant_report) with the target checks."""
    context = cfg.data.context
    keras_metrics = M.MetricAccumulator()
    keras_metrics.update(reference, clips[:, context:])
    keras_metrics = keras_metrics.result()
    return {
        "run": os.path.abspath(run_dir),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}",
        "clips": int(len(clips)), "context": context, "horizon": cfg.data.horizon,
        "keras": {"psnr": keras_metrics["psnr"]["mean"], "ssim": keras_metrics["ssim"]["mean"]},
        "variants": variants,
        "targets": check_targets(variants),
    }


def write_report(root: str, report: dict) -> str:
    """Writes ROOT.json and ROOT.md; returns the Markdown."""
    fileio.write_json_atomic(root + ".json", report)
    md = markdown(report)
    fileio.write_bytes_atomic(root + ".md", md.encode())
    return md
