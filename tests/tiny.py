"""The tiny configuration every test trains or builds: defined once, in every form the tests use.

- `TINY_DATA`, `TINY_MODEL_CONFIG`, `TINY_TRAIN`: `DataConfig` / `ModelConfig` /
  `TrainConfig` fields (16x16 digits, 3 -> 3 frames, a two-level model);
- `TINY_MODEL`: the same as `VideoPredictor` keyword arguments;
- `tiny_run_config()`: a validated `Config`; `tiny_overrides()`: `--set` pairs for
  the subprocess tests, which start `vidgen train --preset quick`.
"""

from __future__ import annotations

import json

from vidgen.config import Config, DataConfig, ModelConfig, TrainConfig, apply_overrides

TINY_DATA = dict(source="digits", frame_size=16, channels=1, context=3, horizon=3,
                 train_clips=12, val_clips=4, test_clips=4, shuffle_buffer=8, shard_size=5)
TINY_MODEL_CONFIG = dict(encoder_filters=(4, 8), core_filters=(8,), decoder_filters=(8, 4),
                         dna_kernel=3)
TINY_TRAIN = dict(batch_size=2, epochs=2, steps_per_epoch=3, warmup_steps=1, sample_clips=2)
# Scheduled sampling decays within a tiny run (2 x 3 steps), so training feeds back both
# true and predicted frames. Not in TINY_MODEL_CONFIG: `TINY_MODEL` keeps the model's default.
TINY_SAMPLING_STEPS = 4

# VideoPredictor(**TINY_MODEL): the tiny model without a config.
TINY_MODEL = dict(frame_size=TINY_DATA["frame_size"], channels=TINY_DATA["channels"],
                  horizon=TINY_DATA["horizon"], **TINY_MODEL_CONFIG)


def tiny_run_config(**overrides) -> Config:
    """The tiny data, model and a two-epoch, few-step training; `overrides` as "KEY": value."""
    cfg = Config(data=DataConfig(**TINY_DATA),
                 model=ModelConfig(**TINY_MODEL_CONFIG, sampling_steps=TINY_SAMPLING_STEPS),
                 train=TrainConfig(**TINY_TRAIN))
    return apply_overrides(cfg, [f"{k}={v}" for k, v in overrides.items()]).validate()


def tiny_overrides(**changes) -> dict[str, object]:
    """The tiny config as "section.key": value pairs over the quick preset, for `--set`.

    `changes` are given with "__" for the dot: `train__epochs=3`.
    """
    values = {**{f"data.{k}": v for k, v in TINY_DATA.items() if k != "source"},
              **{f"model.{k}": list(v) if isinstance(v, tuple) else v
                 for k, v in TINY_MODEL_CONFIG.items()},
              "model.sampling_steps": TINY_SAMPLING_STEPS,
              "train.batch_size": TINY_TRAIN["batch_size"],
              "train.warmup_steps": TINY_TRAIN["warmup_steps"], "train.val_batches": 1,
              "train.sample_clips": 1}
    values.update({k.replace("__", "."): v for k, v in changes.items()})
    return values


def set_flags(overrides: dict[str, object]) -> list[str]:
    """`--set KEY=JSON` arguments for a `vidgen` command line."""
    flags = []
    for key, value in overrides.items():
        flags += ["--set", f"{key}={json.dumps(value)}"]
    return flags
