"""Tiny RGB footage models (head "flow") for the tests of everything downstream of training."""

import os

import numpy as np

from tests.tiny import tiny_run_config

FLOW_OVERRIDES = {"data.channels": 3, "model.head": "flow", "model.dna_kernel": 5}


def make_rgb_flow_run(path, seed: int = 0) -> str:
    """A run directory (config.json, model.keras) of a 16x16 RGB model with the "flow" head.

    An untrained flow head is exactly copy-last; its output kernel is moved off
    its initial values so a parity test can tell a wrong graph from a copy.
    """
    from vidgen.training.build import build_model

    cfg = tiny_run_config(**FLOW_OVERRIDES)
    model = build_model(cfg)
    out = model.decoder.out
    rng = np.random.default_rng(seed)
    out.kernel.assign(np.asarray(out.kernel) + 0.05 * rng.standard_normal(out.kernel.shape))
    os.makedirs(path, exist_ok=True)
    model.save(os.path.join(path, "model.keras"))
    cfg.to_json(os.path.join(path, "config.json"))
    return str(path)


def rgb_clip(batch: int = 2, time: int = 3, seed: int = 0, size: int = 16) -> np.ndarray:
    """float32 (batch, time, size, size, 3) in [0, 1]: smooth colour images, not noise.

    The flow head warps the last frame, so a clip with structure (a moving
    square on a gradient) exercises the warp better than uniform noise.
    """
    from tests.conftest import moving_square

    rng = np.random.default_rng(seed)
    clips = [moving_square(time, size, size, channels=3, phase=int(rng.integers(0, size)))
             for _ in range(batch)]
    clips = np.stack(clips).astype(np.float32) / 255.0
    tint = rng.random((batch, 1, 1, 1, 3), dtype=np.float32)
    return np.clip(clips * (0.5 + 0.5 * tint) + 0.1 * tint, 0.0, 1.0).astype(np.float32)
