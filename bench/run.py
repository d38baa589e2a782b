"""`make bench`: our models against the keras-io tutorial and trivial baselines, quality and cost.

One run on this machine, side by side:

1. Quality at equal budget. On the same prepared shards (the embedded
   synthetic digits; Moving MNIST too with --mmnist), `quick`, `quick_gan`
   and the keras-io tutorial's ConvLSTM (bench/baselines.py) are each trained
   for the same wall-clock budget (--budget-min, in separate processes), then
   scored by `vidgen.evaluate` on the same first --test-clips held-out test
   clips (10 context -> 10 predicted frames, 64x64) next to copy-last-frame
   and the all-black frame: MSE/MAE per frame (OpenSTL), PSNR, SSIM,
   sharpness, overall and per step.
2. Speed and cost. Training throughput and FLOPs per sequence, achieved
   GFLOP/s against this machine's matmul rate (measured in the same run, at
   the start and at the end); inference per frame with Keras, the SavedModel
   and the TFLite float32 / int8 step models (LiteRT, 1 and 2 threads); the
   per-frame cost of streaming vs re-running the whole clip at T = 10, 20,
   40, 80; peak memory of training and of inference (separate processes).
3. Output: bench/results.json (every figure, the machine, the versions, the
   commit), bench/REPORT.md with tables and bench/plots/*.png, and the
   README's results table between its bench markers.

    python -m bench.run [--budget-min 7] [--test-clips 64] [--mmnist mnist_test_seq.npy]
    python -m bench.run --runs quick=runs/quick-... gan=runs/quick_gan-...  # reuse finished runs
    python -m bench.run --smoke --out runs/bench-smoke    # tiny budgets and shapes (CI)
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from importlib import metadata
from typing import Any, Optional

import numpy as np
import tensorflow as tf

import bench.baselines  # noqa: F401  (registers TutorialConvLSTM for loading)
from bench import report as R
from bench import speed as S
from bench.data_pipeline import pipeline_throughput
from bench.gan_vs_deterministic import compare
from export.report import build_report
from export.runner import StepRunner
from export.savedmodel import export_savedmodel
from export.tflite import load_clips
from vidgen import __version__, viz
from vidgen.config import Config, apply_overrides
from vidgen.data.prepared import prepare
from vidgen.errors import VidgenError
from vidgen.evaluate import evaluate
from vidgen.fileio import write_json_atomic
from vidgen.presets import get_preset
from vidgen.run_dir import RunPaths, load_run

ROOT = S.ROOT
MODELS = ("quick", "gan", "tutorial")
PRESETS = {"quick": "quick", "gan": "quick_gan"}


class BenchError(RuntimeError):
    """A benchmark step failed; the message says which and why."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything that sizes a benchmark run (full or smoke)."""

    mode: str
    budget_min: float
    test_clips: int
    eval_batch: int = 8
    gan_samples: int = 10
    data_overrides: tuple[str, ...] = ()
    train_overrides: tuple[str, ...] = ()
    tutorial_max_steps: int = 0
    lengths: tuple[int, ...] = (10, 20, 40, 80)
    latency_seconds: float = 1.0
    latency_repeats: int = 10
    tflite_clips: int = 16
    calibration_clips: int = 16
    pipeline_seconds: float = 5.0
    matmul_size: int = 2048
    matmul_seconds: float = 3.0
    sample_clips: int = 2
    # Training-memory probe for reused runs: a few steps of the same training process.
    probe_overrides: tuple[str, ...] = ("train.epochs=1", "train.steps_per_epoch=3",
                                        "train.val_batches=1", "train.sample_clips=1")
    probe_tutorial_steps: int = 2

    def expected_minutes(self, models_to_train: int, extra_datasets: int = 0) -> float:
        """What the run should take on the 2-core development machine, uncontended."""
        if self.mode == "smoke":
            return 3.5
        # Measured on the development machine (lightly shared): about 10 s per training
        # besides its budget (process start, the last validation, saving), 2 min to score
        # 64 clips (mostly the tutorial model and the GAN's 10 futures per clip), 2.5 min
        # for the speed and memory measurements.
        per_model = self.budget_min + 0.2
        evaluation = 0.2 + self.test_clips / 64 * 1.8
        return (0.3 + models_to_train * per_model + evaluation
                + extra_datasets * (len(MODELS) * per_model + evaluation) + 2.5)


def full_settings(budget_min: float, test_clips: int) -> Settings:
    return Settings(mode="full", budget_min=budget_min, test_clips=test_clips)


def smoke_settings() -> Settings:
    """Tiny budgets and shapes: every code path of the full run, in a few minutes."""
    return Settings(
        mode="smoke", budget_min=0.5, test_clips=8, eval_batch=4, gan_samples=2,
        data_overrides=("data.frame_size=32", "data.context=4", "data.horizon=4",
                        "data.train_clips=64", "data.val_clips=16", "data.test_clips=16"),
        train_overrides=("train.epochs=1", "train.steps_per_epoch=2", "train.val_batches=1",
                         "train.sample_clips=1"),
        tutorial_max_steps=2, lengths=(4, 8), latency_seconds=0.0, latency_repeats=3,
        tflite_clips=2, calibration_clips=2, pipeline_seconds=0.5, matmul_size=512,
        matmul_seconds=0.2, sample_clips=1,
        probe_overrides=("train.epochs=1", "train.steps_per_epoch=1", "train.val_batches=1",
                         "train.sample_clips=1"), probe_tutorial_steps=1)


# ------------------------------------------------------------- bookkeeping

def fmt_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


class Phases:
    """Prints each phase with its duration and the time since the start; keeps the record."""

    def __init__(self):
        self.start = time.perf_counter()
        self.records: list[dict[str, Any]] = []

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    @contextlib.contextmanager
    def __call__(self, name: str):
        print(f"\n[{fmt_seconds(self.elapsed())}] {name} ...", flush=True)
        start = time.perf_counter()
        yield
        seconds = time.perf_counter() - start
        self.records.append({"phase": name, "seconds": round(seconds, 1)})
        print(f"[{fmt_seconds(self.elapsed())}] {name}: done in {fmt_seconds(seconds)}",
              flush=True)


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    ram_gb = None
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    ram_gb = round(int(line.split()[1]) / 1024 ** 2, 1)
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gb": ram_gb,
            "platform": platform.platform(), "load_average_at_start": os.getloadavg()}


def versions() -> dict[str, Optional[str]]:
    out = {"python": platform.python_version(), "vidgen": __version__}
    for name in ("tensorflow", "keras", "ai-edge-litert", "numpy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit() -> dict[str, Any]:
    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()

    try:
        changed = [line for line in git("status", "--porcelain").splitlines()
                   if not line[3:].startswith(("bench/results.json", "bench/REPORT.md",
                                               "bench/plots", "README.md"))]
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(changed)}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}


def parse_runs(items: Sequence[str]) -> dict[str, str]:
    """["quick=DIR", "gan=DIR"] -> {"quick": DIR, "gan": DIR}, checked."""
    runs = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or name not in MODELS:
            raise BenchError(f"--runs takes NAME=RUN_DIR with NAME one of {', '.join(MODELS)}. "
                             f"Received: {item!r}")
        if not os.path.isfile(RunPaths(path).model):
            raise BenchError(f"--runs {name}: {path!r} is not a finished run directory "
                             "(no model.keras).")
        runs[name] = path
    return runs


# ------------------------------------------------------------------ phases

def base_config(source: str, settings: Settings):
    return apply_overrides(get_preset("quick"), [f"data.source={source}",
                                                 *settings.data_overrides])


# Moving MNIST's standard protocol has two digits per clip (used when clips are generated
# from an MNIST file; the fixed mnist_test_seq.npy already has them).
DATASET_OVERRIDES = {"moving_mnist": ("data.min_digits=2", "data.max_digits=2")}


def prepare_shards(source: str, shards: str, settings: Settings,
                   dataset: str = "digits") -> dict[str, Any]:
    """`vidgen data prepare SOURCE --preset quick` (reused when already there)."""
    start = time.perf_counter()
    cfg = apply_overrides(base_config(source, settings), list(DATASET_OVERRIDES.get(dataset, ())))
    manifest = prepare(cfg.data, shards, progress=sys.stdout.isatty())
    return {"source": source, "shards": shards,
            "clips": {k: v["clips"] for k, v in manifest["splits"].items()},
            "seconds": round(time.perf_counter() - start, 1)}


def train_command(kind: str, shards: str, run_dir: str, settings: Settings,
                  probe: bool = False) -> list[str]:
    """Python arguments of the training process of one model: `vidgen train` for ours,
    bench.baselines for the tutorial; `probe` trains a few steps only (training memory of a
    reused run)."""
    data_sets = [a for o in settings.data_overrides for a in ("--set", o)]
    budget = settings.budget_min
    if kind == "tutorial":
        steps = settings.probe_tutorial_steps if probe else settings.tutorial_max_steps
        return ["-m", "bench.baselines", "--data", shards, "--run-dir", run_dir,
                "--budget-min", str(0 if probe else budget), "--max-steps", str(steps),
                *data_sets]
    overrides = settings.probe_overrides if probe else (
        f"train.time_budget_minutes={budget}", *settings.train_overrides)
    return ["-m", "vidgen.cli", "train", "--preset", PRESETS[kind], "--data",
            shards, "--run-dir", run_dir, "--no-evaluate", *data_sets,
            *[a for o in overrides for a in ("--set", o)]]


def train(kind: str, shards: str, run_dir: str, settings: Settings,
          probe: bool = False) -> dict[str, Any]:
    os.makedirs(os.path.dirname(run_dir), exist_ok=True)
    log = run_dir + ".log"
    result = S.run_child(train_command(kind, shards, run_dir, settings, probe), log=log)
    if result["returncode"] != 0:
        raise BenchError(f"Training {kind} failed (exit {result['returncode']}); "
                         f"its output is in {log}.")
    return {"process_seconds": round(result["seconds"], 1),
            "peak_rss_mb": result["peak_rss_mb"], "log": log}


def check_compatible(name: str, run_dir: str, settings: Settings, source: str) -> None:
    """A reused run must predict the frames the benchmark scores."""
    cfg = Config.from_json(RunPaths(run_dir).config).data
    want = base_config(source, settings).data
    got_shape = (cfg.frame_size, cfg.channels, cfg.context, cfg.horizon)
    want_shape = (want.frame_size, want.channels, want.context, want.horizon)
    if got_shape != want_shape:
        raise BenchError(f"--runs {name}: {run_dir!r} was trained on (frame size, channels, "
                         f"context, horizon) = {got_shape}; this benchmark scores {want_shape}.")


def evaluate_model(kind: str, run_dir: str, shards: str, out_dir: str,
                   settings: Settings) -> dict[str, Any]:
    return evaluate(run_dir, data=shards, max_clips=settings.test_clips,
                    batch_size=settings.eval_batch, progress=sys.stdout.isatty(),
                    num_samples=settings.gan_samples if kind == "gan" else None,
                    out_dir=out_dir)


def same_clips(reports: dict[str, dict]) -> None:
    """The baselines depend only on the clips: equal figures prove the same clips were scored."""
    values = {k: (r["clips"], r["results"]["copy_last"]["mse"]["mean"],
                  r["results"]["black"]["mse"]["mean"]) for k, r in reports.items()}
    first = next(iter(values.values()))
    for v in values.values():
        if v[0] != first[0] or not np.allclose(v[1:], first[1:], rtol=1e-9, atol=1e-9):
            raise BenchError(f"The models were not scored on the same clips: {values}")


def quality_section(reports: dict[str, dict], trainings: dict[str, dict]) -> dict[str, Any]:
    """Overall and per-step metrics of every model and baseline, and the headline ratios."""
    first = next(iter(reports.values()))
    metrics = ("mse", "mae", "psnr", "ssim", "ssim_uniform7", "sharpness")
    rows: dict[str, dict[str, Any]] = {}
    for kind, report in reports.items():
        r = report["results"]["model"]
        rows[kind] = {m: r[m] for m in metrics}
        rows[kind]["parameters"] = report["parameters"]
        rows[kind]["flops_per_sequence"] = report["flops_per_sequence"]
        rows[kind]["training"] = report.get("training")
        rows[kind]["stochastic"] = report.get("stochastic")
        rows[kind]["run"] = trainings[kind]["run"]
        rows[kind]["trained_in_this_run"] = trainings[kind]["trained_in_this_run"]
        if "model_unfloored" in report["results"]:
            # The same rollouts before the calibrated output floor (vidgen.calibration).
            raw = report["results"]["model_unfloored"]
            rows[f"{kind}_unfloored"] = {m: raw[m] for m in metrics}
            rows[kind]["output_floor"] = report["output_floor"]
    for name in ("copy_last", "black"):
        rows[name] = {m: first["results"][name][m] for m in metrics}
    out = {"clips": first["clips"], "context": first["context"], "horizon": first["horizon"],
           "frame_size": first["frame_size"], "split": first["split"], "data": first["data"],
           "conventions": first["conventions"], "rows": rows}
    if "quick" in reports and "gan" in reports:
        out["gan_vs_deterministic"] = compare(reports["quick"], reports["gan"])["criteria"]
    return out


def quality_ratios(q: dict[str, Any]) -> dict[str, float]:
    rows = q["rows"]
    best = min(rows["copy_last"]["mse"]["mean"], rows["black"]["mse"]["mean"])
    out = {}
    for kind in MODELS:
        if kind in rows:
            out[f"{kind}_mse_vs_best_baseline"] = rows[kind]["mse"]["mean"] / best
    if "quick" in rows and "tutorial" in rows:
        out["quick_mse_vs_tutorial"] = rows["quick"]["mse"]["mean"] / rows["tutorial"]["mse"][
            "mean"]
        out["quick_ssim_minus_tutorial"] = (rows["quick"]["ssim"]["mean"]
                                            - rows["tutorial"]["ssim"]["mean"])
    if "quick" in rows and "gan" in rows:
        out["gan_mse_vs_quick"] = rows["gan"]["mse"]["mean"] / rows["quick"]["mse"]["mean"]
        out["gan_sharpness_vs_quick"] = (rows["gan"]["sharpness"]["mean"]
                                         / max(rows["quick"]["sharpness"]["mean"], 1e-12))
    return {k: round(v, 4) for k, v in out.items()}


def sample_strip(models: dict[str, Any], shards: str, settings: Settings, path: str) -> str:
    """A PNG: per clip, rows truth | quick | gan | tutorial (context then prediction)."""
    cfg = base_config(shards, settings)
    clips = load_clips(cfg, "test", settings.sample_clips)
    context = cfg.data.context
    rows = []
    for clip in clips:
        rows.append(clip)
        for kind in MODELS:
            if kind in models:
                pred = np.asarray(models[kind].rollout(clip[None, :context], cfg.data.horizon))
                rows.append(np.concatenate([clip[:context], pred[0]]))
    return viz.write_png(path, viz.filmstrip(rows))


def training_speed(q: dict[str, Any], step_gflops: dict[str, float],
                   matmul: float) -> dict[str, Any]:
    """seq/s, FLOPs and achieved GFLOP/s of training.

    A training sequence runs every one of its context + horizon - 1 steps in full (each
    step's prediction is scored: the next-frame loss on the context, teacher forcing for
    the tutorial), so its forward FLOPs are that many times one step's. (A 10 -> 10
    rollout, `flops_per_sequence`, costs less: the decoder's output on context frames
    is unused there and TensorFlow prunes it.) Training = 3 x forward (forward +
    backward); achieved GFLOP/s = that x sequences/s.
    """
    steps = q["context"] + q["horizon"] - 1
    out = {}
    for kind in MODELS:
        row = q["rows"].get(kind)
        if not row or not row.get("training") or kind not in step_gflops:
            continue
        t = row["training"]
        seq_s = t.get("sequences_per_second") or 0.0
        forward = steps * step_gflops[kind]
        achieved = 3 * forward * seq_s
        out[kind] = {"sequences_per_second": seq_s, "train_seconds": t.get("train_seconds"),
                     "steps": t.get("steps"), "epochs_run": t.get("epochs_run"),
                     "stopped_by_time_budget": t.get("stopped_by_time_budget"),
                     "step_gflops": step_gflops[kind],
                     "forward_gflops_per_sequence": round(forward, 3),
                     "train_gflops_per_sequence": round(3 * forward, 3),
                     "rollout_gflops_per_sequence": round(row["flops_per_sequence"] / 1e9, 3),
                     "achieved_gflops_per_s": round(achieved, 2),
                     "fraction_of_matmul_rate": round(achieved / matmul, 4) if matmul else None}
    return out


def inference_speed(models: dict[str, Any], runs: dict[str, str], shards: str,
                    settings: Settings, work: str, phases: Phases) -> dict[str, Any]:
    """Per-frame latency: Keras (every model), SavedModel and TFLite (quick)."""
    cfg = base_config(shards, settings)
    context, horizon = cfg.data.context, cfg.data.horizon
    out: dict[str, Any] = {"keras": {}}
    for kind, model in models.items():
        out["keras"][kind] = S.keras_latency(model, context, horizon, settings.latency_repeats,
                                             settings.latency_seconds)
        print(f"  Keras {kind}: {out['keras'][kind]}", flush=True)
    if "tutorial" in models:
        model = models["tutorial"]
        rerun = S.graph_function(lambda x: model.rerun_rollout(x, horizon))
        clip = tf.random.stateless_uniform((1, context) + (cfg.data.frame_size,) * 2
                                           + (cfg.data.channels,), seed=(5, 6))
        ms = S.median_ms(lambda: np.asarray(rerun(clip)), repeats=1)
        out["keras"]["tutorial"]["rerun_rollout_ms_per_predicted_frame"] = round(ms / horizon, 2)
        print(f"  Keras tutorial, re-run rollout (the tutorial's loop): {ms / horizon:.1f} "
              "ms per predicted frame", flush=True)
    if "quick" in runs:
        with phases("export quick: SavedModel"):
            path = export_savedmodel(runs["quick"], os.path.join(work, "export", "savedmodel"),
                                     "vidgen")
            out["savedmodel"] = {"quick": S.savedmodel_latency(
                path, context, horizon, settings.latency_repeats, settings.latency_seconds)}
            out["savedmodel"]["quick"]["path"] = path
            print(f"  SavedModel quick: {out['savedmodel']['quick']}", flush=True)
        with phases("export quick: TFLite float32 and int8, LiteRT parity and latency"):
            report = build_report(runs["quick"], ("float32", "int8"),
                                  out_dir=os.path.join(work, "export", "tflite"), data=shards,
                                  clips=settings.tflite_clips,
                                  calibration_clips=settings.calibration_clips,
                                  progress=sys.stdout.isatty())
            report.pop("markdown", None)
            out["tflite"] = {"quick": report}
            for name, v in report["variants"].items():
                print(f"  TFLite {name}: {v['size_bytes'] / 1024:.0f} KB, step "
                      f"{v['step_ms']['1']:.2f} ms (1 thread) {v['step_ms']['2']:.2f} ms "
                      f"(2 threads), max abs diff {v['max_abs_diff']:.2e}", flush=True)
    return out


def length_scaling(models: dict[str, Any], tflite_step: Optional[str], shards: str,
                   settings: Settings) -> dict[str, Any]:
    """Per-frame cost at clip length T: streaming steps vs re-running the whole clip."""
    cfg = base_config(shards, settings)
    s, c = cfg.data.frame_size, cfg.data.channels
    lengths = settings.lengths
    clip = np.random.default_rng(0).random((1, max(lengths), s, s, c), dtype=np.float32)
    spec = tf.TensorSpec((1, None, s, s, c), tf.float32)
    series = {}

    def streaming(model):
        step = S.graph_function(lambda f, st: model.step(f, st))
        return lambda t: S.streaming_ms_at(step, clip[:, 0], model.initial_states(1), t)

    def rerun(predict_next):
        fn = S.graph_function(predict_next, input_signature=[spec])
        return lambda t: S.rerun_ms_at(fn, clip, t)

    if "quick" in models:
        quick = models["quick"]
        series["quick, streaming (Keras step)"] = streaming(quick)
        if tflite_step:
            runner = StepRunner(tflite_step, num_threads=1)
            series["quick, streaming (TFLite float32, 1 thread)"] = (
                lambda t: S.streaming_ms_at(runner.step, clip[0, 0], runner.initial_states(), t))
        series["quick, re-run (Keras)"] = rerun(lambda x: quick.observe(x)[0])
    if "tutorial" in models:
        tutorial = models["tutorial"]
        series["tutorial, re-run (Keras, the tutorial's loop)"] = rerun(tutorial.predict_next)
        series["tutorial, streaming (Keras step)"] = streaming(tutorial)
    out = {"lengths": list(lengths), "ms_per_frame": {}}
    for name, measure in series.items():
        out["ms_per_frame"][name] = [round(measure(t), 3) for t in lengths]
        print(f"  {name}: " + ", ".join(f"T={t}: {ms:.2f} ms" for t, ms in
                                        zip(lengths, out["ms_per_frame"][name])), flush=True)
    return out


def memory_section(runs: dict[str, str], tflite_dir: Optional[str],
                   train_peaks: dict[str, dict], context: int, horizon: int) -> dict[str, Any]:
    """Peak RSS of training (given) and of inference, each in its own process."""
    out: dict[str, Any] = {"training": train_peaks, "inference": []}
    out["idle_tensorflow_process_mb"] = S.probe_memory("idle")["peak_rss_mb"]
    for kind, run in runs.items():
        out["inference"].append({"model": kind, "runtime": f"Keras, {context} -> {horizon} "
                                 "rollout, batch 1", "peak_rss_mb": S.probe_memory(
                                     "keras", run)["peak_rss_mb"]})
    if tflite_dir:
        for q in ("float32", "int8"):
            path = os.path.join(tflite_dir, f"step_{q}.tflite")
            if os.path.isfile(path):
                out["inference"].append({
                    "model": "quick", "runtime": f"LiteRT {q} step model, no TensorFlow "
                    "imported", "peak_rss_mb": S.probe_memory("litert", path)["peak_rss_mb"]})
    for entry in out["inference"]:
        print(f"  {entry['model']}, {entry['runtime']}: {entry['peak_rss_mb']} MB", flush=True)
    print(f"  a process that imported TensorFlow and vidgen: "
          f"{out['idle_tensorflow_process_mb']} MB", flush=True)
    return out


def headline(results: dict[str, Any]) -> dict[str, Any]:
    """The ratios the report leads with (absolute times are noisy; ratios less so)."""
    h: dict[str, Any] = {}
    digits = results["datasets"].get("digits")
    if digits:
        h.update(digits["ratios"])
    sp = results.get("speed", {})
    tr = sp.get("training", {})
    if "quick" in tr and "tutorial" in tr:
        h["tutorial_flops_vs_quick"] = round(tr["tutorial"]["forward_gflops_per_sequence"]
                                             / tr["quick"]["forward_gflops_per_sequence"], 1)
        if tr["tutorial"]["sequences_per_second"]:
            h["quick_training_throughput_vs_tutorial"] = round(
                tr["quick"]["sequences_per_second"] / tr["tutorial"]["sequences_per_second"], 1)
    scaling = sp.get("cost_vs_length", {}).get("ms_per_frame", {})
    lengths = sp.get("cost_vs_length", {}).get("lengths", [])
    if lengths:
        last = lengths[-1]

        def at(name, i=-1):
            return scaling[name][i] if name in scaling else None

        pairs = {
            "tutorial_rerun_vs_quick_streaming": ("tutorial, re-run (Keras, the tutorial's loop)",
                                                  "quick, streaming (Keras step)"),
            "quick_rerun_vs_quick_streaming": ("quick, re-run (Keras)",
                                               "quick, streaming (Keras step)"),
            "tutorial_rerun_vs_tutorial_streaming": (
                "tutorial, re-run (Keras, the tutorial's loop)",
                "tutorial, streaming (Keras step)"),
        }
        for key, (a, b) in pairs.items():
            if at(a) and at(b):
                h[f"{key}_at_T{last}"] = round(at(a) / at(b), 1)
        name = "quick, re-run (Keras)"
        if name in scaling and scaling[name][0]:
            h[f"quick_rerun_cost_T{last}_vs_T{lengths[0]}"] = round(
                scaling[name][-1] / scaling[name][0], 1)
    variants = sp.get("inference", {}).get("tflite", {}).get("quick", {}).get("variants", {})
    if "float32" in variants and "int8" in variants:
        f, i = variants["float32"], variants["int8"]
        h["tflite_int8_vs_float32_speed_1_thread"] = round(f["step_ms"]["1"] / i["step_ms"]["1"],
                                                           2)
        h["tflite_int8_vs_float32_size"] = round(i["size_bytes"] / f["size_bytes"], 3)
    keras_q = sp.get("inference", {}).get("keras", {}).get("quick")
    if keras_q and "float32" in variants:
        h["tflite_float32_vs_keras_step_speed"] = round(
            keras_q["step_ms"] / variants["float32"]["step_ms"]["1"], 1)
    if "quick" in tr:
        h["quick_training_fraction_of_matmul_rate"] = tr["quick"]["fraction_of_matmul_rate"]
    mm = results.get("matmul", {})
    if "start" in mm and "end" in mm:
        h["matmul_rate_end_vs_start"] = round(mm["end"]["gflops_per_s"]
                                              / mm["start"]["gflops_per_s"], 3)
    return h


# -------------------------------------------------------------------- main

def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = smoke_settings() if args.smoke else full_settings(args.budget_min,
                                                                 args.test_clips)
    reused = parse_runs(args.runs)
    datasets = {"digits": "digits"}
    if args.mmnist:
        if not os.path.exists(args.mmnist):
            raise BenchError(f"--mmnist {args.mmnist!r} does not exist (expected the Moving "
                             "MNIST file mnist_test_seq.npy, or mnist.npz).")
        datasets["moving_mnist"] = args.mmnist
    stamp = time.strftime("%Y%m%d-%H%M%S")
    temporary = None
    if args.work:
        work = args.work
    elif args.smoke:
        work = temporary = tempfile.mkdtemp(prefix="vidgen-bench-smoke-")
    else:
        work = os.path.join(ROOT, "runs", f"bench-{stamp}")
    os.makedirs(work, exist_ok=True)
    out = args.out
    plots = os.path.join(out, "plots")
    os.makedirs(plots, exist_ok=True)
    to_train = len(MODELS) - len(reused)
    expected = settings.expected_minutes(to_train, len(datasets) - 1)
    print(f"vidgen benchmark ({settings.mode}): budget {settings.budget_min:g} min per model, "
          f"{to_train} model(s) to train on {', '.join(datasets)}, {settings.test_clips} test "
          f"clips; expected about {expected:.0f} min on the 2-core development machine. "
          f"Runs and exports go to {work}", flush=True)
    phases = Phases()
    results: dict[str, Any] = {
        "benchmark": "make bench", "mode": settings.mode,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": args.command or ("python -m bench.run " + " ".join(sys.argv[1:])).strip(),
        "machine": machine_info(), "versions": versions(), "git": git_commit(),
        "settings": dataclasses.asdict(settings), "datasets": {}, "speed": {},
        "work_dir": work, "note": args.note,
    }
    with phases("matmul rate (start)"):
        results["matmul"] = {"start": S.matmul_rate(settings.matmul_size,
                                                     settings.matmul_seconds)}
        print(f"  {results['matmul']['start']}", flush=True)
    train_peaks: dict[str, dict] = {}
    digits_runs: dict[str, str] = {}
    for name, source in datasets.items():
        shards = (os.path.join(work, f"data-{name}") if args.smoke else
                  os.path.join(ROOT, "data", "digits-quick" if name == "digits"
                               else f"{name}-quick"))
        with phases(f"{name}: prepare shards ({shards})"):
            results["datasets"][name] = {"data": prepare_shards(source, shards, settings,
                                                                name)}
        runs, trainings = {}, {}
        for kind in MODELS:
            if name == "digits" and kind in reused:
                check_compatible(kind, reused[kind], settings, shards)
                runs[kind] = reused[kind]
                trainings[kind] = {"run": reused[kind], "trained_in_this_run": False}
                continue
            run_dir = os.path.join(work, name, kind)
            with phases(f"{name}: train {kind} ({settings.budget_min:g} min budget)"):
                info = train(kind, shards, run_dir, settings)
            runs[kind] = run_dir
            trainings[kind] = {"run": run_dir, "trained_in_this_run": True, **info}
            if name == "digits":
                train_peaks[kind] = {"peak_rss_mb": info["peak_rss_mb"],
                                     "measured": "the whole training process"}
        reports = {}
        for kind in MODELS:
            with phases(f"{name}: evaluate {kind} on {settings.test_clips} test clips"):
                reports[kind] = evaluate_model(kind, runs[kind], shards,
                                               os.path.join(work, name, "eval", kind), settings)
                r = reports[kind]["results"]["model"]
                print(f"  {kind}: MSE {r['mse']['mean']:.1f}, PSNR {r['psnr']['mean']:.2f}, "
                      f"SSIM {r['ssim']['mean']:.3f}", flush=True)
        same_clips(reports)
        quality = quality_section(reports, trainings)
        quality["ratios"] = quality_ratios(quality)
        quality["data"] = results["datasets"][name]["data"]
        results["datasets"][name] = quality
        models = {kind: load_run(runs[kind])[1] for kind in MODELS}
        with phases(f"{name}: sample predictions"):
            quality["samples_png"] = os.path.relpath(
                sample_strip(models, shards, settings,
                             os.path.join(plots, f"samples_{name}.png")), out)
        if name == "digits":
            digits_runs, digits_models, digits_shards = runs, models, shards
    for kind in MODELS:
        if kind in reused:
            with phases(f"training memory of reused {kind}: a short training process"):
                info = train(kind, digits_shards, os.path.join(work, "memory-probe", kind),
                             settings, probe=True)
                train_peaks[kind] = {"peak_rss_mb": info["peak_rss_mb"],
                                     "measured": "a training process of a few steps (the run "
                                                 "was reused)"}
    digits = results["datasets"]["digits"]
    with phases("training throughput and FLOPs"):
        step_gflops = {kind: round(S.step_flops(model) / 1e9, 4)
                       for kind, model in digits_models.items()}
        results["speed"]["step_gflops"] = step_gflops
        results["speed"]["training"] = training_speed(
            digits, step_gflops, results["matmul"]["start"]["gflops_per_s"])
        for kind, t in results["speed"]["training"].items():
            print(f"  {kind}: {t['sequences_per_second']} seq/s, "
                  f"{t['forward_gflops_per_sequence']} GFLOPs/seq forward, "
                  f"{t['achieved_gflops_per_s']} GFLOP/s achieved", flush=True)
    with phases("inference per frame"):
        results["speed"]["inference"] = inference_speed(digits_models, digits_runs,
                                                        digits_shards, settings, work, phases)
    tflite_dir = os.path.join(work, "export", "tflite")
    tflite_step = os.path.join(tflite_dir, "step_float32.tflite")
    with phases("cost vs clip length: streaming vs re-running"):
        results["speed"]["cost_vs_length"] = length_scaling(
            digits_models, tflite_step if os.path.isfile(tflite_step) else None,
            digits_shards, settings)
    with phases("peak memory (separate processes)"):
        results["speed"]["memory"] = memory_section(
            digits_runs, tflite_dir, train_peaks, digits["context"], digits["horizon"])
    with phases("input pipeline throughput"):
        base = base_config("digits", settings)
        results["speed"]["pipeline"] = {"batch": 16, **{
            k: round(v, 1) for k, v in pipeline_throughput(
                base, digits_shards, 16, settings.pipeline_seconds).items()}}
        print(f"  {results['speed']['pipeline']}", flush=True)
    with phases("matmul rate (end)"):
        results["matmul"]["end"] = S.matmul_rate(settings.matmul_size, settings.matmul_seconds)
        print(f"  {results['matmul']['end']}", flush=True)
    results["machine"]["load_average_at_end"] = os.getloadavg()
    results["headline"] = headline(results)
    results["phases"] = phases.records
    results["total_seconds"] = round(phases.elapsed(), 1)
    write_json_atomic(os.path.join(out, "results.json"), results)
    R.write_report(results, out)
    readme = args.readme
    if readme is None and args.smoke:
        # Exercise the README rewrite on a copy: the smoke run never touches README.md.
        readme = os.path.join(out, "README.preview.md")
        shutil.copyfile(os.path.join(ROOT, "README.md"), readme)
    if readme:
        R.update_readme(readme, results, os.path.relpath(out, os.path.dirname(
            os.path.abspath(readme))))
    print(f"\nWrote {out}/results.json, {out}/REPORT.md and {plots}/*.png"
          + (f"; updated {readme}" if readme else "")
          + f". Total {fmt_seconds(results['total_seconds'])}.", flush=True)
    if temporary:
        shutil.rmtree(temporary, ignore_errors=True)
    return results


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-min", type=float, default=7.0,
                        help="wall-clock training budget per model, minutes (default 7)")
    parser.add_argument("--test-clips", type=int, default=64,
                        help="held-out test clips every model is scored on (default 64)")
    parser.add_argument("--runs", nargs="*", default=[], metavar="NAME=RUN_DIR",
                        help="reuse finished runs instead of training: quick=DIR gan=DIR "
                             "tutorial=DIR (digits only)")
    parser.add_argument("--mmnist", default=None,
                        help="Moving MNIST (mnist_test_seq.npy or mnist.npz): also train and "
                             "score every model on it (adds 3 budgets)")
    parser.add_argument("--out", default=None,
                        help="where results.json, REPORT.md and plots/ go (default bench/; "
                             "--smoke: runs/bench-smoke)")
    parser.add_argument("--work", default=None,
                        help="where runs and exports go (default runs/bench-DATE-TIME; "
                             "--smoke: a temporary folder, removed at the end)")
    parser.add_argument("--readme", default=None,
                        help="README to rewrite between its bench markers (default README.md "
                             "for a full run into bench/; --no-readme: none)")
    parser.add_argument("--no-readme", action="store_true")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny budgets and shapes: checks the code in a few minutes")
    parser.add_argument("--note", default="",
                        help="a sentence for the report and README, e.g. what else ran")
    parser.add_argument("--command", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = (os.path.join(ROOT, "runs", "bench-smoke") if args.smoke
                    else os.path.join(ROOT, "bench"))
    default_out = os.path.abspath(args.out) == os.path.join(ROOT, "bench")
    if args.readme is None and not args.smoke and default_out:
        args.readme = os.path.join(ROOT, "README.md")
    if args.no_readme:
        args.readme = ""
    if args.smoke and default_out:
        raise SystemExit("--smoke never writes into bench/: choose another --out.")
    try:
        run(args)
    except (BenchError, VidgenError) as e:
        print(f"bench: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
