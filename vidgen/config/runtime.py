"""The `runtime` section: where and how the computation runs (strategy, precision, XLA)."""

from __future__ import annotations

import dataclasses

from vidgen.config.checks import one_of

# tf.distribute strategies `vidgen train` knows (vidgen/training/distribute.py).
STRATEGIES = ("auto", "default", "mirrored", "multiworker", "tpu")


@dataclasses.dataclass(frozen=True)
class RuntimeConfig:
    """Where and how the computation runs: hardware settings, not the experiment.

    They change speed, not what is learned (up to float rounding), so a
    resumed run may change them (`vidgen train --resume --strategy ...`).

    Args:
        strategy: tf.distribute strategy: "auto", "default", "mirrored",
            "multiworker" or "tpu" (see vidgen/training/distribute.py).
        mixed_precision: compute in mixed_float16 with loss scaling on GPUs,
            mixed_bfloat16 on CPUs; variables, states and frames stay float32.
        jit_compile: XLA; off by default (14x slower on a 2-core CPU, measured).
    """

    strategy: str = "auto"
    mixed_precision: bool = False
    jit_compile: bool = False

    def validate(self) -> None:
        one_of(self, "strategy", STRATEGIES)
