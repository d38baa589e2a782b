"""Named experiments, in one registry.

Example:

    from vidgen.presets import get_preset
    cfg = get_preset("moving_mnist")
"""

from __future__ import annotations

import dataclasses
from typing import Any

from vidgen.config import Config, DataConfig, ModelConfig, TrainConfig
from vidgen.errors import ConfigError


def _variant(base: Config, **sections: dict[str, Any]) -> Config:
    """`base` with some fields of some sections replaced: `_variant(QUICK, train={...})`."""
    return dataclasses.replace(base, **{
        name: dataclasses.replace(getattr(base, name), **fields)
        for name, fields in sections.items()})


# The embedded default, which `make train` trains on this 2-core CPU: synthetic moving
# digits (nothing to download), a model small enough for about 10 sequences/s, trained on
# its own rollouts from the first step. Its 16-minute budget leaves `make train` (shards,
# training, evaluation) about 3 minutes under its 20-minute limit; the cosine anneals
# within the budget.
QUICK = Config(
    data=DataConfig(source="digits", frame_size=64, channels=1, context=10, horizon=10,
                    min_digits=1, max_digits=3),
    model=ModelConfig(encoder_filters=(32, 32), core_filters=(32,), decoder_filters=(64, 32),
                      head="sdna", dna_kernel=9, cdna_kernels=4, difference_input=True,
                      sampling_steps=0, context_loss_weight=1.0),
    train=TrainConfig(batch_size=8, epochs=12, steps_per_epoch=100, val_batches=8,
                      learning_rate=3e-3, warmup_steps=50, bce_weight=1.0,
                      time_budget_minutes=16.0),
)

PRESETS: dict[str, Config] = {
    "quick": QUICK,
    # Moving MNIST's standard protocol (2 digits, 64x64, 10 frames in, 10 out) with
    # the hyper-parameters we would use on a GPU: a wider model, 200k steps. Point
    # --data at mnist.npz or an idx file (sequences generated on the fly) or at
    # mnist_test_seq.npy (the fixed 10k sequences, split by sequence).
    "moving_mnist": _variant(
        QUICK,
        data=dict(source="mnist.npz", min_digits=2, max_digits=2),
        model=dict(encoder_filters=(64, 128), core_filters=(128, 128),
                   decoder_filters=(128, 64), head="cdna", cdna_kernels=10),
        train=dict(batch_size=16, epochs=200, steps_per_epoch=1000, val_batches=0,
                   learning_rate=1e-3, warmup_steps=1000, time_budget_minutes=0.0),
    ),
    # The quick model trained as the generator of a VideoGAN: the same data, model and
    # time budget, plus a per-step latent variable (several futures), a per-frame critic
    # on 2 predicted frames and a small 3D-conv critic on the whole clip (hinge loss).
    # Small critics leave the generator most of the budget, and a KL weight of 1e-2 keeps
    # the prior close to the posterior that training samples from; measured on a 7-minute
    # budget against (16, 32, 64) critics on 4 frames and KL 1e-3: MSE 185 vs 190,
    # sharpness 0.51 vs 0.36. Compare its run with `make train`'s:
    # python -m bench.gan_vs_deterministic RUN_A RUN_B.
    "quick_gan": _variant(
        QUICK,
        model=dict(frame_critic_filters=(16, 32, 64), video_critic_filters=(8, 16, 32),
                   critic_frames=2, latent_dim=4, kl_weight=1e-2),
        train=dict(adversarial="hinge", adversarial_weight=0.01, critic_learning_rate=1e-3),
    ),
    # Colour moving shapes: the RGB path, a natural-video loss (L1 + SSIM).
    "shapes": _variant(
        QUICK,
        data=dict(source="shapes", channels=3),
        train=dict(epochs=15, bce_weight=0.0, l1_weight=1.0, ssim_weight=0.2,
                   time_budget_minutes=13.0),
    ),
    # Natural footage (a camera, a robot, film): RGB 64x64, 10 frames in, 10 out. The
    # "flow" head warps the last frame by a dense flow field of up to 8 px per frame
    # (camera pans included) and starts as copy-last, so training can only improve on
    # the baseline that matters on footage; no output floor (that is for black
    # backgrounds). Point --data at a video, a folder of videos or a prepared dataset.
    "natural": _variant(
        QUICK,
        data=dict(source="videos", channels=3, augment_flip=True),
        model=dict(head="flow", dna_kernel=17),
        train=dict(epochs=18, val_batches=0, learning_rate=2e-3, bce_weight=0.0,
                   l1_weight=1.0, time_budget_minutes=18.0),
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
