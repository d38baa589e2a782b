"""Input-pipeline throughput: clips/s that `make_dataset` delivers.

Prepares the synthetic digits at 64x64, T=20 into TFRecord shards, then
times batches from the prepared shards and, side by side, straight from the
generator. Writes bench/data_pipeline.json.

    python -m bench.data_pipeline [--clips 4096] [--seconds 20]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

from vidgen import __version__
from vidgen.config import apply_overrides
from vidgen.data.pipeline import make_dataset
from vidgen.data.prepared import prepare
from vidgen.fileio import write_json_atomic
from vidgen.presets import get_preset


def clips_per_second(ds, batch: int, seconds: float) -> float:
    it = iter(ds)
    for _ in range(3):  # warm-up: fill shuffle buffer and prefetch
        next(it)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        next(it)
        n += batch
    return n / (time.perf_counter() - start)


def pipeline_throughput(base, prepared_dir: str, batch: int, seconds: float) -> dict:
    """Training clips/s from prepared shards and straight from the generator of `base`.

    Args:
        base: a Config whose data.source is the generator (e.g. "digits").
        prepared_dir: the same data prepared with `vidgen data prepare`.
        batch: batch size.
        seconds: timing per measurement.
    """
    prepared_cfg = apply_overrides(base, [f"data.source={prepared_dir}"])
    return {
        "prepared_clips_per_s": clips_per_second(
            make_dataset(prepared_cfg, "train", batch_size=batch), batch, seconds),
        "generator_clips_per_s": clips_per_second(
            make_dataset(base, "train", batch_size=batch), batch, seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=4096, help="training clips to prepare")
    parser.add_argument("--seconds", type=float, default=20.0, help="timing per measurement")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__),
                                                      "data_pipeline.json"))
    args = parser.parse_args()
    base = apply_overrides(get_preset("quick"), [f"data.train_clips={args.clips}"])
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        prepare(base.data, tmp, progress=True)
        prepare_s = time.perf_counter() - start
        results = pipeline_throughput(base, tmp, args.batch, args.seconds)
        results["prepare_clips_per_s"] = (
            args.clips + base.data.val_clips + base.data.test_clips) / prepare_s
    report = {"benchmark": "data_pipeline", "frame_size": 64, "clip_frames": 20,
              "batch": args.batch, **{k: round(v, 1) for k, v in results.items()},
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "python": platform.python_version()},
              "vidgen_version": __version__}
    write_json_atomic(args.out, report)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
