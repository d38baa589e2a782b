"""The `vidgen-export` command line.

Example:

    vidgen-export savedmodel runs/quick --base models --name vidgen
    vidgen-export tflite runs/quick --quantize int8
    vidgen-export report runs/quick
    vidgen-export run-tflite runs/quick/export/tflite/step_int8.tflite --input clip.mp4 \\
        --context 10 --horizon 20 --out out.gif
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from export.quantization import IO_TYPES, QUANTIZATIONS
from vidgen.cli_common import (
    add_common_args,
    configure_logging,
    flag_names,
    run_command,
    start_up,
    verbose_anywhere,
)

# Each command imports its module when it runs (the one reason per import is next to it):
# savedmodel, tflite and report load TensorFlow and Keras (4-7 s, `python -X importtime`),
# the runner LiteRT, an optional dependency. `--help` loads none of them, and `run-tflite`
# runs where only vidgen[lite] (no TensorFlow) is installed.


def _cmd_savedmodel(args) -> int:
    from export.savedmodel import export_savedmodel  # TensorFlow and Keras: seconds

    path = export_savedmodel(args.run, args.base, args.name, args.version, args.model_file)
    print(f"Wrote {path} (signatures: serving_default, predict_uint8, step). Serve it with "
          f"--model_base_path={os.path.abspath(os.path.dirname(path))} "
          f"--model_name={args.name}")
    return 0


def _cmd_tflite(args) -> int:
    from export.tflite import export_tflite  # TensorFlow, Keras and LiteRT: seconds

    written = export_tflite(args.run, args.quantize, args.out, args.io, args.data,
                            args.calibration_clips, not args.no_sequence, args.report_clips,
                            args.model_file)
    for kind in ("step", "sequence"):
        if written[kind]:
            print(f"Wrote {written[kind]} ({os.path.getsize(written[kind]) / 1024:.0f} KB)")
    if written["report"]:
        print(written["report"]["markdown"])
    return 0


def _cmd_report(args) -> int:
    from export.report import build_report  # TensorFlow, Keras and LiteRT: seconds

    report = build_report(args.run, args.quantize, args.out, args.data, args.clips,
                          args.calibration_clips, progress=not args.quiet)
    print(report["markdown"])
    failed = [name for name, c in report["targets"].items() if not c["pass"]]
    return 1 if failed else 0


def _cmd_run_tflite(args) -> int:
    # LiteRT (ai-edge-litert) is the `lite` extra, not a dependency: at the top, a plain
    # install could not even print `vidgen-export --help`.
    from export.runner import run_tflite

    result = run_tflite(args.model, args.input, args.out, args.context, args.horizon,
                        args.start, args.fps, args.floor)
    print(json.dumps(result, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vidgen-export",
        description="Export a trained vidgen run for TF Serving (SavedModel) and LiteRT "
                    "(TFLite).")
    add_common_args(parser)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("savedmodel", help="a versioned SavedModel for TF Serving")
    p.add_argument("run", help="training run directory")
    p.add_argument("--base", required=True, help="TF Serving base directory (BASE/NAME/VERSION)")
    p.add_argument("--name", required=True, help="model name")
    p.add_argument("--version", type=int, default=None,
                   help="version number (default: one more than the largest existing)")
    p.add_argument("--model-file", default=None,
                   help="model inside the run (default: the run's model)")
    p.set_defaults(func=_cmd_savedmodel)

    p = sub.add_parser("tflite", help="the streaming step model (and sequence model) as TFLite")
    p.add_argument("run", help="training run directory")
    p.add_argument("--quantize", default="float32", choices=QUANTIZATIONS)
    p.add_argument("--io", default="float32", choices=IO_TYPES,
                   help="input/output type of an int8 model (default float32)")
    p.add_argument("--out", default=None, help="output folder (default RUN/export/tflite)")
    p.add_argument("--data", default=None,
                   help="clips for calibration and the report (default: the run's data)")
    p.add_argument("--calibration-clips", type=int, default=16)
    p.add_argument("--report-clips", type=int, default=16,
                   help="held-out clips of the parity report (0: skip it)")
    p.add_argument("--no-sequence", action="store_true",
                   help="skip the fixed-length sequence model")
    p.add_argument("--model-file", default=None,
                   help="model inside the run (default: the run's model)")
    p.set_defaults(func=_cmd_tflite)

    p = sub.add_parser("report", help="parity, quality, size and speed of every TFLite variant")
    p.add_argument("run", help="training run directory")
    p.add_argument("--quantize", nargs="+", default=list(QUANTIZATIONS), choices=QUANTIZATIONS)
    p.add_argument("--out", default=None, help="output folder (default RUN/export/tflite)")
    p.add_argument("--data", default=None, help="clips to use (default: the run's data)")
    p.add_argument("--clips", type=int, default=16, help="held-out test clips")
    p.add_argument("--calibration-clips", type=int, default=16)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("run-tflite", help="continue a clip with a TFLite step model, streaming")
    p.add_argument("model", help="a step_*.tflite file")
    p.add_argument("--input", required=True, help="video file, frame folder or .npy clip")
    p.add_argument("--out", required=True, help="output .gif, .mp4 or .png")
    p.add_argument("--context", type=int, default=10, help="frames observed")
    p.add_argument("--horizon", type=int, default=20, help="frames predicted")
    p.add_argument("--start", type=int, default=0, help="first input frame used")
    p.add_argument("--fps", type=float, default=4.0)
    p.add_argument("--floor", type=float, default=None,
                   help="set predicted values below this to 0 (default: the model's own "
                        "output_floor, stored in the file by `vidgen-export tflite`; 0: none)")
    p.set_defaults(func=_cmd_run_tflite)
    return verbose_anywhere(parser)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    start_up(args.verbose)
    for name in ("calibration_clips", "report_clips", "clips"):
        if getattr(args, name, 1) < 0:
            print(f"vidgen-export: error: --{name.replace('_', '-')} must be >= 0. "
                  f"Received: {getattr(args, name)}", file=sys.stderr)
            return 2
    return run_command("vidgen-export", args, flag_names(parser))


if __name__ == "__main__":
    sys.exit(main())
