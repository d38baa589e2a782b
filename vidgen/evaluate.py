"""`vidgen evaluate`: rollout metrics of a trained model next to classical baselines.

For every clip of the held-out split the model sees the context frames and
generates the horizon autoregressively (never a true frame after the
context). The same metrics, overall and per step, are computed for the
baselines of `vidgen.baselines`: copy-last-frame and optical-flow
extrapolation on any data, and the all-black frame on mostly dark data
(`vidgen.baselines.black_frame_meaningful`: mean context pixel below 0.2,
e.g. the digits), so a model that only blurs is visible as such. The report
names the best baseline on each metric and the model's MSE ratio to it.

Example:

    vidgen evaluate runs/quick                       # test split of the run's data
    vidgen evaluate runs/quick --data mnist_test_seq.npy
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any, Optional

import numpy as np
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import (
    convert_variables_to_constants_v2,
)
from tqdm import tqdm

from vidgen import baselines as B
from vidgen import fileio, viz
from vidgen import metrics as M
from vidgen.calibration import floored
from vidgen.config import apply_overrides
from vidgen.data.pipeline import make_dataset
from vidgen.data.sources import BUILTIN_SOURCES
from vidgen.errors import ArgumentError, VidgenError
from vidgen.fileio import read_json, write_json_atomic
from vidgen.postprocess import evaluation as post_eval
from vidgen.run_dir import RunPaths, load_run

# Every baseline that `evaluate` scores; "black" is reported only where it is meaningful.
BASELINES = ("copy_last", "flow", "black")
# Metrics on which the best baseline is named, and whether higher is better.
BEST_BASELINE_METRICS = {"mse": False, "mae": False, "psnr": True, "ssim": True,
                         "ssim_uniform7": True}


def graph_flops(fn, input_specs) -> int:
    """Floating-point operations of one call of `fn`, counted by TF's profiler on its frozen graph.

    Args:
        fn: a Python function of tensors (traced with `tf.function`).
        input_specs: a `tf.TensorSpec` per positional argument, with static shapes.

    Returns:
        The total float operations (a multiply-add counts as two).
    """
    concrete = tf.function(fn).get_concrete_function(*input_specs)
    graph = convert_variables_to_constants_v2(concrete).graph
    opts = (tf.compat.v1.profiler.ProfileOptionBuilder(
        tf.compat.v1.profiler.ProfileOptionBuilder.float_operation())
        .with_empty_output().build())
    return int(tf.compat.v1.profiler.profile(graph=graph, options=opts).total_float_ops)


def count_flops(model, context: int, horizon: int) -> int:
    """Floating-point operations of one sequence: context + horizon recurrent steps, batch 1."""
    s, c = model.frame_size, model.channels

    def sequence(ctx):
        # A static Python loop (not the while loop of `observe`) so that the profiler
        # counts every step, not the loop body once. Explicit noise: a seed
        # generator's state update cannot be frozen to constants.
        noise = None
        if model.noise_shape:
            noise = tf.zeros((1, context + horizon - 1) + model.noise_shape)
        return model.unrolled_rollout(ctx, horizon, noise)

    return graph_flops(sequence, [tf.TensorSpec([1, context, s, s, c], tf.float32)])


def evaluate(run_dir: str, data: Optional[str] = None, split: str = "test",
             batch_size: Optional[int] = None, max_clips: int = 0, samples: int = 4,
             progress: bool = True, num_samples: Optional[int] = None,
             postprocess: Optional[str] = None,
             out_dir: Optional[str] = None, floor: Optional[float] = None) -> dict[str, Any]:
    """Scores a run's model on held-out clips; writes metrics.json, plots and GIFs.

    Args:
        run_dir: a run directory with config.json and model.keras.
        data: another source to evaluate on (same frame size and channels).
        split: the split to score ("test" by default).
        batch_size: evaluation batch size (default: the run's).
        max_clips: score at most this many clips (0: all).
        samples: clips drawn in the sample GIF and grid.
        num_samples: futures sampled per clip for best-of-N PSNR/SSIM and
            diversity (default: 10 for a stochastic model, 0 otherwise).
        postprocess: post-processing steps to measure, e.g.
            "denoise:nlmeans,interpolate:flow" or "all"
            (`vidgen.postprocess.evaluation`); adds a "postprocess" section.
        out_dir: where metrics.json, plots/ and samples/ go (default: the run
            directory; another folder leaves a finished run as it was).
        floor: score with this output floor instead of the model's own
            `output_floor` (the model file is not changed).

    Returns:
        The metrics dictionary written to OUT/metrics.json.

    Raises:
        VidgenError: the results go into the run directory (no `out_dir`)
            while another vidgen process writes it (its folder lock is taken
            first, so nothing is written).
    """
    # Into the run folder: one writer at a time, as training (`fileio.exclusive_lock`).
    # Elsewhere the run is only read.
    into_run = os.path.isdir(run_dir) and fileio.inside(out_dir or run_dir, run_dir)
    lock = (fileio.exclusive_lock(run_dir, flag="--out", what="vidgen evaluate",
                                  instead="pass --out DIR to write the evaluation elsewhere")
            if into_run else contextlib.nullcontext())
    with lock:
        return _evaluate(run_dir, data, split, batch_size, max_clips, samples, progress,
                         num_samples, postprocess, out_dir, floor)


def _evaluate(run_dir: str, data: Optional[str], split: str, batch_size: Optional[int],
              max_clips: int, samples: int, progress: bool, num_samples: Optional[int],
              postprocess: Optional[str], out_dir: Optional[str],
              floor: Optional[float]) -> dict[str, Any]:
    """`evaluate`, its arguments checked and the run folder locked if it writes there."""
    cfg, model = load_run(run_dir)
    if not data:
        _check_run_source(cfg.data.source)   # before loading anything else for the run
    # A model with an output floor (VideoPredictor) is scored with and without it; other
    # Keras models (bench's tutorial ConvLSTM) have none unless `floor` gives one.
    # The loaded model is never changed: rollouts run unfloored and `floor` is applied here.
    flooring = hasattr(model, "apply_floor")
    if floor is not None and not 0.0 <= floor < 1.0:
        raise ArgumentError(f"{{floor}} must be in [0, 1). Received: {floor}", "floor")
    floor = float(floor if floor is not None else getattr(model, "output_floor", 0.0))
    post = None
    if postprocess:
        # Parsed and loaded before the rollouts: a typo or a missing denoiser fails at once.
        steps = post_eval.parse_steps(postprocess)
        post = post_eval.PostprocessEvaluator(
            steps, denoiser=post_eval.load_step_models(run_dir, steps))
    if data:
        cfg = apply_overrides(cfg, [f"data.source={data}"])
    horizon = cfg.data.horizon
    # Unfloored rollouts; the output floor (if any) is applied below, so the report can
    # show the model both ways.
    unfloored = {"floor": False} if flooring else {}
    rollout = tf.function(lambda x: model.rollout(x, horizon, **unfloored),
                          reduce_retracing=True)
    if num_samples is None:
        num_samples = 10 if model.latent_dim else 0
    sampled = None
    if num_samples:
        def sample_futures(x):
            # One fixed seed: reproducible metrics and a single trace (a Python seed
            # that changed per batch would retrace the rollout every batch).
            return model.rollout(x, horizon, num_samples, seed=0, **unfloored)

        sampled = tf.function(sample_futures, reduce_retracing=True)
    stochastic = []
    ds = make_dataset(cfg, split, batch_size=batch_size)
    rows = ("model",) + (("model_unfloored",) if floor else ()) + BASELINES
    accumulators = {name: M.MetricAccumulator() for name in rows}
    baseline_seconds = dict.fromkeys(BASELINES, 0.0)
    context_sum = 0.0
    sample = None
    scored = 0
    for context, target in tqdm(ds, desc=f"evaluate {split}", unit="batch",
                                disable=not progress, leave=False):
        if max_clips and scored >= max_clips:
            break
        context, target = np.asarray(context), np.asarray(target)
        if max_clips:
            context, target = context[:max_clips - scored], target[:max_clips - scored]
        raw = np.asarray(rollout(context))
        pred = floored(raw, floor)
        accumulators["model"].update(pred, target)
        if floor:
            accumulators["model_unfloored"].update(raw, target)
        # "black" is scored on every batch: whether it is reported depends on the mean of
        # all the context frames, known only at the end.
        context_sum += float(context.mean(dtype=np.float64)) * len(context)
        for name in BASELINES:
            start = time.perf_counter()
            prediction = B.predict(name, context, horizon)
            baseline_seconds[name] += time.perf_counter() - start
            accumulators[name].update(prediction, target)
        if post is not None:
            post.update(context, target, pred)
        if sampled is not None:
            futures = floored(np.asarray(sampled(context)), floor)
            stochastic.append((len(context), M.best_of_n(futures, target)))
        if sample is None:
            sample = (context[:samples], target[:samples], pred[:samples])
        scored += len(context)
    if not scored:
        raise VidgenError(f"The {split} split of {cfg.data.source!r} has no clips to score.")
    context_mean = context_sum / scored
    black_included = B.black_frame_meaningful(context_mean)
    reported = tuple(b for b in BASELINES if b != "black" or black_included)
    results = {name: acc.result() for name, acc in accumulators.items()
               if name not in BASELINES or name in reported}
    best = best_baselines(results, reported)
    best_mse = results[best["mse"]]["mse"]["mean"]
    model_mse = results["model"]["mse"]["mean"]
    report: dict[str, Any] = {
        "split": split,
        "data": cfg.data.source,
        "clips": scored,
        "context": cfg.data.context,
        "horizon": horizon,
        "frame_size": cfg.data.frame_size,
        "conventions": {
            "mse/mae": "per-frame sum over H*W*C of frames in [0,1] (OpenSTL)",
            "psnr": "per frame, max value 1",
            "ssim": "Gaussian window 11, sigma 1.5",
            "ssim_uniform7": "scikit-image defaults, 7x7 uniform window (OpenSTL's tables)",
        },
        "results": results,
        "baselines": list(reported),
        "best_baseline": best,
        "best_baseline_per_step": best_baselines_per_step(results, reported),
        "black_frame": {
            "included": black_included,
            "context_mean": context_mean,
            "max_context_mean": B.BLACK_FRAME_MAX_MEAN,
            "rule": "the all-black frame is reported when the mean pixel of the evaluated "
                    f"context frames is below {B.BLACK_FRAME_MAX_MEAN} (mostly dark data "
                    "such as the digits)",
        },
        "baseline_seconds_per_clip": {name: baseline_seconds[name] / scored
                                      for name in reported},
        "baseline_parameters": {"flow": {"method": "Farneback 2003, backward warp of the "
                                                   "last frame at constant velocity",
                                         "min_side": B.FLOW_MIN_SIDE, **B.FARNEBACK}},
        "model_vs_best_baseline": {
            # Against the best reported baseline on MSE (named in "best_baseline").
            "mse_reduction": 1.0 - model_mse / best_mse if best_mse else 0.0,
            "mse_ratio": model_mse / best_mse if best_mse else None,
            "baseline": best["mse"],
            # Historical name: above every reported baseline.
            "ssim_above_both": all(results["model"]["ssim"]["mean"] > results[b]["ssim"]["mean"]
                                   for b in reported),
            "ssim_above_all": all(results["model"]["ssim"]["mean"] > results[b]["ssim"]["mean"]
                                  for b in reported),
        },
        "output_floor": floor,
        "parameters": int(model.count_params()),
        "flops_per_sequence": count_flops(model, cfg.data.context, horizon),
    }
    if stochastic:
        total = sum(n for n, _ in stochastic)
        report["stochastic"] = {"samples": num_samples, **{
            key: sum(n * values[key] for n, values in stochastic) / total
            for key in stochastic[0][1]}}
    if post is not None:
        report["postprocess"] = post.result()
    training = read_json(RunPaths(run_dir).training)
    if training is not None:
        report["training"] = training
    _write_outputs(out_dir or run_dir, report, sample)
    return report


def best_baselines(results: dict[str, dict], names) -> dict[str, str]:
    """The name of the best of the baselines `names` on each of `BEST_BASELINE_METRICS`.

    Args:
        results: rows of metrics.json's "results" ({name: {metric: {"mean": ...}}}).
        names: the baselines to choose among.

    Returns:
        {metric: baseline name}, e.g. {"mse": "flow", "ssim": "copy_last", ...}.
    """
    def pick(metric, higher):
        def key(name):
            value = results[name][metric]["mean"]
            return -value if higher else value
        return min(names, key=key)

    return {metric: pick(metric, higher) for metric, higher in BEST_BASELINE_METRICS.items()}


def best_baselines_per_step(results: dict[str, dict], names) -> dict[str, list[str]]:
    """Like `best_baselines`, step by step: {metric: [baseline name per predicted step]}."""
    out = {}
    for metric, higher in BEST_BASELINE_METRICS.items():
        values = np.array([results[n][metric]["per_step"] for n in names])
        winners = values.argmax(axis=0) if higher else values.argmin(axis=0)
        out[metric] = [names[int(i)] for i in winners]
    return out


def _check_run_source(source: str) -> None:
    """A clear error when a run's relative data path is not found from here."""
    if source in BUILTIN_SOURCES or os.path.isabs(source) or os.path.exists(source):
        return
    raise VidgenError(
        f"The run's data source {source!r} is not found from {os.getcwd()!r}: it is a path "
        "relative to the folder `vidgen train` ran in. Run `vidgen evaluate` from that "
        "folder, or pass --data PATH.")


def _write_outputs(out_dir: str, report: dict, sample) -> None:
    paths = RunPaths(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    write_json_atomic(paths.metrics, report)
    plots = paths.plots
    labels = {"psnr": "PSNR (dB)", "ssim": "SSIM", "mse": "MSE per frame"}
    for metric, label in labels.items():
        curves = {name: r[metric]["per_step"] for name, r in report["results"].items()}
        viz.plot_curves(os.path.join(plots, f"{metric}_per_step.png"), curves,
                        title=f"{label} per predicted frame ({report['split']})", ylabel=label)
    context, target, pred = sample
    samples = paths.samples
    viz.write_gif(os.path.join(samples, f"{report['split']}.gif"),
                  viz.sample_video(context, target, pred))
    rows = []
    for c, t, p in zip(context, target, pred):
        rows += [np.concatenate([c, t]), np.concatenate([c, p])]
    viz.write_png(os.path.join(samples, f"{report['split']}_grid.png"), viz.filmstrip(rows))


def summary_table(report: dict) -> str:
    """A plain-text table of overall metrics for model and baselines.

    A `*` marks the best baseline on each metric; the lines below the table name
    them, give the model's MSE as a ratio of the best baseline's, and say why the
    all-black frame is missing when it is.
    """
    results = report["results"]
    names = report.get("baselines") or [n for n in BASELINES if n in results]
    best = report.get("best_baseline") or best_baselines(results, names)
    columns = (("MSE", "mse", 8, 1), ("MAE", "mae", 8, 1), ("PSNR", "psnr", 7, 2),
               ("SSIM", "ssim", 6, 3), ("SSIM7", "ssim_uniform7", 6, 3),
               ("sharp", "sharpness", 6, 3))
    lines = [f"{'':15s}" + "".join(f" {title:>{width}s} " for title, _, width, _ in columns)]
    for name, r in results.items():
        cells = []
        for _, key, width, digits in columns:
            mark = "*" if best.get(key) == name else " "
            cells.append(f" {r[key]['mean']:{width}.{digits}f}{mark}")
        lines.append(f"{name:15s}" + "".join(cells))
    lines.append("* best baseline: " + ", ".join(
        f"{title} {best[key]}" for title, key, _, _ in columns if key in best))
    if best.get("mse") in results and results[best["mse"]]["mse"]["mean"]:
        ratio = results["model"]["mse"]["mean"] / results[best["mse"]]["mse"]["mean"]
        lines.append(f"model MSE / best baseline MSE ({best['mse']}): {ratio:.3f}")
    black = report.get("black_frame")
    if black and not black["included"]:
        lines.append(f"all-black frame not reported: mean context pixel "
                     f"{black['context_mean']:.2f} >= {black['max_context_mean']}")
    if "stochastic" in report:
        s = report["stochastic"]
        lines.append(f"best of {s['samples']} samples: PSNR {s['psnr_best']:.2f} (mean "
                     f"{s['psnr_mean']:.2f}), SSIM {s['ssim_best']:.3f} (mean "
                     f"{s['ssim_mean']:.3f}), diversity (MSE between samples) "
                     f"{s['diversity_mse']:.1f}")
    return "\n".join(lines)
