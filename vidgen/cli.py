"""The `vidgen` command line.

Example:

    vidgen data prepare digits --out data/digits64
    vidgen data preview data/digits64 --out clips.gif
    vidgen config --preset quick --set data.frame_size=32
    vidgen postprocess train-denoiser runs/quick --minutes 5
    vidgen score runs/natural --input camera.mp4 --out scores.csv --plot scores.png

Each command imports its implementation inside its `_cmd_*` function, the
one place where an import is not at the top: those modules import TensorFlow
(about 3 s), which `--help`, `--version` and `vidgen config` never pay.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time

from vidgen.cli_common import (
    add_common_args,
    configure_logging,
    flag_names,
    run_command,
    start_up,
    verbose_anywhere,
)
from vidgen.config import Config, apply_overrides
from vidgen.errors import VidgenError
from vidgen.presets import PRESETS, get_preset


def add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="quick", choices=sorted(PRESETS),
                        action=_PresetAction,
                        help="named experiment to start from (default: quick, with "
                             "data.channels=0: the source's own, RGB for videos)")
    parser.set_defaults(preset_given=False)
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="override a config value, e.g. --set data.frame_size=32 "
                             "(repeatable; values are JSON)")


def resolve_config(args: argparse.Namespace, source: str | None = None) -> Config:
    overrides = list(args.overrides)
    if not getattr(args, "preset_given", True):
        # Without --preset the channels follow the source (RGB for footage, 1 for digits)
        # instead of the quick preset's grayscale digits; --set data.channels=N still wins.
        overrides.insert(0, "data.channels=0")
    if source is not None:
        overrides.insert(0, f"data.source={source}")
    return apply_overrides(get_preset(args.preset), overrides)


def _cmd_config(args) -> int:
    print(json.dumps(resolve_config(args).to_dict(), indent=2, sort_keys=True))
    return 0


def _cmd_prepare(args) -> int:
    from vidgen.data.prepared import prepare

    cfg = resolve_config(args, args.source)
    manifest = prepare(cfg.data, args.out, overwrite=args.overwrite, progress=not args.quiet)
    counts = ", ".join(
        f"{k}: {v['clips']} clips"
        + (f" ({v['windows']} windows)" if v.get("windows", v["clips"]) != v["clips"] else "")
        + f" of {v.get('stored_size', manifest['frame_size'])}px from {v['sources']} sources"
        for k, v in manifest["splits"].items())
    f = manifest.get("frames", {})
    dropped = (f"; {f['decoded']} frames decoded, {f['dropped']} dropped ("
               f"{f['dropped_by_resampling']} by data.fps/frame_stride/max_frames, "
               f"{f['dropped_in_gaps']} in split gaps, {f['dropped_at_segment_ends']} at "
               "segment ends)" if "dropped_in_gaps" in f else "")
    print(f"Prepared {args.out} ({manifest['channels']} channel(s)): {counts}{dropped}; "
          f"{len(manifest['skipped'])} skipped.")
    for entry in manifest["skipped"]:
        print(f"  skipped {entry['item']} ({entry['split']}): {entry['reason']}")
    return 0


def _cmd_preview(args) -> int:
    import itertools

    from vidgen import viz
    from vidgen.data.sources import open_source

    cfg = resolve_config(args, args.source)
    if args.num < 1:
        raise VidgenError(f"--num must be at least 1. Received: {args.num}")
    source = open_source(cfg.data)
    clips = [c.frames[:args.frames] for c in itertools.islice(
        source.clips(args.split, limit=args.num), args.num)]
    if not clips:
        raise VidgenError(f"Source {cfg.data.source!r} has no {args.split} clips to preview.")
    ext = os.path.splitext(args.out)[1].lower()
    if ext == ".png":
        viz.write_png(args.out, viz.filmstrip(clips))
    elif ext in (".gif", ".mp4"):
        video = viz.tile(clips, columns=min(args.columns, len(clips)))
        viz.write_video(args.out, video, fps=args.fps)
    else:
        raise VidgenError(f"--out must end in .gif, .mp4 or .png. Received: {args.out!r}")
    print(f"Wrote {len(clips)} {args.split} clips of {cfg.data.source!r} to {args.out}")
    return 0


def streaming_hint(cfg: Config | None, args: argparse.Namespace) -> str | None:
    """A note when a built-in synthetic source would be rendered while training.

    Rendering clips in Python competes with training for the CPU: measured on
    2 cores, the quick preset trains at 5.3 sequences/s that way and at 10.1
    from shards prepared once.
    """
    from vidgen.data.sources import BUILTIN_SOURCES

    if cfg is None or cfg.data.source not in BUILTIN_SOURCES:
        return None
    source = cfg.data.source
    sets = "".join(f" --set {shlex.quote(o)}" for o in args.overrides)
    out = f"data/{source}-{args.preset}"
    return (f"Note: the {source!r} clips will be rendered while training. Preparing them "
            f"once trains about twice as fast on a small CPU: `vidgen data prepare {source} "
            f"--out {out} --preset {args.preset}{sets}`, then add `--data {out}`.")


def _cmd_train(args) -> int:
    from vidgen.training.train import train

    cfg, resume_overrides = None, []
    if args.resume and args.overrides and not (args.data or args.preset_given):
        # `--resume --set train.learning_rate=...`: a change of the saved config.
        resume_overrides = list(args.overrides)
    elif not args.resume or args.overrides or args.data or args.preset_given:
        cfg = resolve_config(args, args.data)
    if args.resume and not args.run_dir:
        raise VidgenError("--resume needs --run-dir: the run directory to continue.")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = args.run_dir or os.path.join("runs", f"{args.preset}-{stamp}")
    hint = streaming_hint(cfg, args)
    if hint:
        print(hint)
    summary = train(cfg, run_dir, resume=args.resume, evaluate_after=not args.no_evaluate,
                    strategy=args.strategy, resume_overrides=resume_overrides)
    if summary["interrupted"]:
        return 130
    if summary.get("chief") is False:
        print(f"Worker finished {summary['steps_run']} steps; the chief writes the run in "
              f"{run_dir}.")
        return 0
    if not args.no_evaluate:
        from vidgen.evaluate import summary_table
        from vidgen.fileio import read_json
        from vidgen.run_dir import RunPaths

        print(summary_table(read_json(RunPaths(run_dir).metrics)))
    print(f"Run written to {run_dir}: model.keras, metrics.json, samples/, plots/, logs/")
    return 0


def _cmd_evaluate(args) -> int:
    from vidgen.evaluate import evaluate, summary_table
    from vidgen.run_dir import RunPaths

    if args.samples is not None and args.samples < 0:
        raise VidgenError(f"--samples must be >= 0. Received: {args.samples}")
    report = evaluate(args.run_dir, data=args.data, split=args.split,
                      batch_size=args.batch_size, max_clips=args.max_clips,
                      num_samples=args.samples, postprocess=args.postprocess,
                      floor=args.floor, out_dir=args.out)
    print(summary_table(report))
    if "postprocess" in report:
        from vidgen.postprocess.evaluation import table

        print(table(report["postprocess"]))
    versus = report["model_vs_best_baseline"]
    reduction = versus["mse_reduction"]
    relation = "below" if reduction >= 0 else "above"
    print(f"MSE {100 * abs(reduction):.1f}% {relation} the best baseline "
          f"({versus.get('baseline', 'copy_last')}); "
          f"{report['flops_per_sequence'] / 1e9:.2f} GFLOPs per sequence; "
          f"wrote {RunPaths(args.out or args.run_dir).metrics}")
    return 0


def _cmd_generate(args) -> int:
    from vidgen.generate import generate

    result = generate(args.run_dir, args.input, args.out, context=args.context,
                      horizon=args.horizon, start=args.start, fps=args.fps,
                      samples=args.samples, seed=args.seed, denoise=args.denoise,
                      interpolate=args.interpolate, interpolate_method=args.interpolate_method)
    steps = []
    if result["denoise"] != "none":
        steps.append(f"denoised ({result['denoise']})")
    if result["interpolate"] > 1:
        steps.append(f"interpolated x{result['interpolate']} ({result['interpolate_method']}, "
                     f"{result['fps']:g} fps)")
    print(f"Generated {result['horizon']} frames after {result['context']}"
          + (f", {' and '.join(steps)}" if steps else "") + ": " + ", ".join(result["written"]))
    return 0


def _cmd_score(args) -> int:
    from vidgen.score import score_video

    result = score_video(args.run_dir, args.input, args.out, plot=args.plot,
                         context=args.context, peaks=args.peaks)
    last = result["first_scored"] + result["frames_scored"] - 1
    peaks = ", ".join(f"frame {p['frame']} ({p['score']:.2f})" for p in result["peaks"])
    print(f"Scored {result['frames_scored']} frames ({result['first_scored']}-{last}, after "
          f"{result['context']} of context) at {result['ms_per_frame']:.1f} ms per frame "
          f"(model step; {result['ms_per_frame_total']:.1f} with decoding); top peaks: "
          f"{peaks or 'none'}; wrote {', '.join(result['written'])}")
    return 0


def _cmd_train_denoiser(args) -> int:
    from vidgen.postprocess.training import train_denoiser
    from vidgen.run_dir import RunPaths

    summary = train_denoiser(
        args.run_dir, out=args.out, data=args.data, pairs=args.pairs, clips=args.clips,
        steps=args.steps, minutes=args.minutes, batch_size=args.batch_size, patch=args.patch,
        window=args.window, filters=args.filters, depth=args.depth,
        learning_rate=args.learning_rate, loss=args.loss, seed=args.seed,
        progress=not args.quiet)
    out = args.out or RunPaths(args.run_dir).denoiser
    print(f"Trained the denoiser for {summary['steps']} steps in {summary['train_seconds']} s "
          f"on {summary['train_clips']} clips ({summary['pairs']} pairs); wrote {out}")
    if "validation" in summary:
        v = summary["validation"]
        print(f"Generated frames of {v['clips']} validation clips: PSNR {v['psnr_before']:.2f} "
              f"-> {v['psnr_after']:.2f}, SSIM {v['ssim_before']:.3f} -> {v['ssim_after']:.3f}")
    return 0


class _PresetAction(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        namespace.preset_given = True


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vidgen", description="Recurrent video prediction: data, training, evaluation.")
    add_common_args(parser)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("config", help="print the resolved config of a preset plus overrides")
    add_config_args(p)
    p.set_defaults(func=_cmd_config)

    data = sub.add_parser("data", help="prepare and inspect datasets")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    p = data_sub.add_parser(
        "prepare", help="convert a source into sharded TFRecord files plus manifest.json")
    p.add_argument("source", help="'digits', 'shapes', or a path (.npy, mnist.npz, idx .gz, "
                                  "video file, folder of videos or frame folders)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a dataset prepared there with other settings")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_args(p)
    p.set_defaults(func=_cmd_prepare)

    p = sub.add_parser("train", help="train a model; writes a run directory")
    p.add_argument("--preset", default="quick", choices=sorted(PRESETS), action=_PresetAction,
                   help="named experiment (default: quick, the embedded synthetic digits)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.epochs=5 (repeatable)")
    p.add_argument("--data", default=None, help="data source (sets data.source)")
    p.add_argument("--run-dir", default=None, help="run directory (default: runs/PRESET-DATE-TIME)")
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir")
    p.add_argument("--no-evaluate", action="store_true",
                   help="skip the test-set evaluation at the end")
    p.add_argument("--strategy", default=None,
                   choices=("auto", "default", "mirrored", "multiworker", "tpu"),
                   help="tf.distribute strategy (default: the config's runtime.strategy, "
                        "auto: one device, or all GPUs, or the TF_CONFIG cluster); may "
                        "differ on --resume")
    p.set_defaults(func=_cmd_train, preset_given=False)

    p = sub.add_parser("evaluate", help="rollout metrics of a run's model vs baselines")
    p.add_argument("run_dir", help="a run directory made by `vidgen train`")
    p.add_argument("--data", default=None, help="evaluate on another source")
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--max-clips", type=int, default=0, help="score at most N clips (0: all)")
    p.add_argument("--samples", type=int, default=None,
                   help="futures sampled per clip for best-of-N metrics and diversity "
                        "(default: 10 for a stochastic model, 0 otherwise)")
    p.add_argument("--floor", type=float, default=None,
                   help="score with this output floor instead of the model's own "
                        "(values below it in the predicted frames become 0; 0: none)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="write metrics.json, plots/ and samples/ here instead of into the "
                        "run directory (which then stays as training left it)")
    p.add_argument("--postprocess", default=None, metavar="STEPS",
                   help="also measure post-processing steps with and without: "
                        "comma-separated KIND:METHOD, e.g. denoise:nlmeans,denoise:learned,"
                        "interpolate:flow,interpolate:linear (interpolate:flow:4 for K=4), "
                        "or 'all'")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("generate", help="continue a clip of your own")
    p.add_argument("run_dir", help="a run directory made by `vidgen train`")
    p.add_argument("--input", required=True, help="video file, folder of frames or .npy clip")
    p.add_argument("--out", required=True, help="output .mp4, .gif or .png")
    p.add_argument("--context", type=int, default=0,
                   help="frames given to the model (default: the run's context)")
    p.add_argument("--horizon", type=int, default=20, help="frames to generate (default 20)")
    p.add_argument("--start", type=int, default=0, help="first input frame to use")
    p.add_argument("--fps", type=float, default=4.0)
    p.add_argument("--samples", type=int, default=1,
                   help="futures to draw (a stochastic model's differ); N > 1 also writes "
                        "OUT_samples.EXT, a grid of the N futures")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampled futures")
    p.add_argument("--denoise", default="none", choices=("none", "nlmeans", "median", "learned"),
                   help="denoise the generated frames (context frames are untouched); "
                        "learned needs RUN/denoiser.keras (default: none)")
    p.add_argument("--interpolate", type=int, default=1, metavar="K",
                   help="insert K-1 frames between each pair of output frames, context "
                        "included; the output has K times --fps (default 1: none)")
    p.add_argument("--interpolate-method", default="flow", choices=("flow", "linear"),
                   help="optical flow (default) or linear cross-fade")
    p.set_defaults(func=_cmd_generate)

    p = sub.add_parser("score", help="per-frame anomaly scores of a video from prediction error")
    p.add_argument("run_dir", help="a run directory made by `vidgen train`")
    p.add_argument("--input", required=True, help="video file, folder of frames or .npy clip")
    p.add_argument("--out", required=True, help="output .csv, one row per scored frame")
    p.add_argument("--plot", default=None, help="also write a .png of the score over time")
    p.add_argument("--context", type=int, default=0,
                   help="frames fed before the first scored frame (default: the run's context)")
    p.add_argument("--peaks", type=int, default=5, help="peaks to report and mark (default 5)")
    p.set_defaults(func=_cmd_score)

    post = sub.add_parser("postprocess", help="post-processing of generated video")
    post_sub = post.add_subparsers(dest="postprocess_command", required=True)
    p = post_sub.add_parser(
        "train-denoiser", help="train the learned denoiser of a run on its own data")
    p.add_argument("run_dir", help="a run directory made by `vidgen train`")
    p.add_argument("--out", default=None, help="output .keras (default RUN/denoiser.keras)")
    p.add_argument("--data", default=None, help="draw the training clips from another source")
    p.add_argument("--pairs", default="both", choices=("prediction", "noise", "both"),
                   help="(the run's predictions -> truth), (truth + noise -> truth) or both "
                        "(default)")
    p.add_argument("--loss", default="l2", choices=("l1", "l2"),
                   help="l2 (default) raises PSNR and SSIM a little; l1 erases faint and "
                        "uncertain pixels on black: much higher SSIM, lower PSNR")
    p.add_argument("--clips", type=int, default=512, help="training clips (default 512)")
    p.add_argument("--steps", type=int, default=4000, help="at most N steps (default 4000)")
    p.add_argument("--minutes", type=float, default=4.0,
                   help="at most this much training time (default 4; 0: no limit)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--patch", type=int, default=32, help="side of the training patches")
    p.add_argument("--window", type=int, default=3, help="frames seen per output frame (odd)")
    p.add_argument("--filters", type=int, default=32)
    p.add_argument("--depth", type=int, default=5)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_train_denoiser)

    p = data_sub.add_parser("preview", help="write a GIF/MP4 (or PNG grid) of a few clips")
    p.add_argument("source", help="a source as for prepare, or a prepared dataset")
    p.add_argument("--out", required=True, help="clips.gif, clips.mp4 or grid.png")
    p.add_argument("--split", default="train", choices=("train", "val", "test"))
    p.add_argument("--num", type=int, default=8, help="clips to show (default 8)")
    p.add_argument("--frames", type=int, default=None, help="frames per clip (default all)")
    p.add_argument("--columns", type=int, default=4, help="clips per row in a GIF/MP4")
    p.add_argument("--fps", type=float, default=4.0)
    add_config_args(p)
    p.set_defaults(func=_cmd_preview)
    return verbose_anywhere(parser)


# Library arguments without a flag of their own name, as the command line sets them.
_ARGUMENT_FLAGS = {"cfg": "--preset/--data", "resume_overrides": "--set"}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    start_up(args.verbose)
    return run_command("vidgen", args, {**flag_names(parser), **_ARGUMENT_FLAGS})


if __name__ == "__main__":
    sys.exit(main())
