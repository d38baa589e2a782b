"""Named experiments, in one registry.

Example:

    from vidgen.presets import get_preset
    cfg = get_preset("moving_mnist")
"""

from __future__ import annotations

import dataclasses

from vidgen.config import Config, DataConfig, TrainConfig
from vidgen.errors import ConfigError

PRESETS: dict[str, Config] = {
    # The embedded default: synthetic moving digits, nothing to download.
    "quick": Config(
        data=DataConfig(source="digits", frame_size=64, channels=1, context=10, horizon=10,
                        min_digits=1, max_digits=3),
        train=TrainConfig(batch_size=16),
    ),
    # Moving MNIST's standard protocol: 2 digits, 64x64, 10 frames in, 10 out. Point
    # data.source at mnist.npz / an idx file (generated) or mnist_test_seq.npy.
    "moving_mnist": Config(
        data=DataConfig(source="mnist.npz", frame_size=64, channels=1, context=10,
                        horizon=10, min_digits=2, max_digits=2),
        train=TrainConfig(batch_size=16),
    ),
    # Colour moving shapes: the RGB path.
    "shapes": Config(
        data=DataConfig(source="shapes", frame_size=64, channels=3, context=10, horizon=10,
                        min_digits=1, max_digits=3),
        train=TrainConfig(batch_size=16),
    ),
}


def get_preset(name: str) -> Config:
    """Returns the named preset, validated."""
    try:
        cfg = PRESETS[name]
    except KeyError:
        raise ConfigError(
            f"Unknown preset {name!r}. Valid presets: {', '.join(sorted(PRESETS))}") from None
    return dataclasses.replace(cfg).validate()
