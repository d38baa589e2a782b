"""From a config to a compiled model: the factories `vidgen train` (and the tests) use.

The model classes never read a config. `model_kwargs` turns the `model`
section (plus the frame shape, horizon and seed) into `VideoPredictor`
keyword arguments: every field of `ModelConfig` whose name is an argument of
`VideoPredictor.__init__` (`VideoPredictor.hyper_parameters()`), so the
hyper-parameters are listed once, as the constructor's arguments, which the
model's `get_config` is derived from too; a test checks that every field
reaches the model. The remaining fields (`CRITIC_FIELDS`) size the critics
of a VideoGAN.

Example:

    cfg = get_preset("quick")
    model = compile_model(build_model(cfg), cfg)
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import keras
import tensorflow as tf

from vidgen.config import Config
from vidgen.errors import ConfigError
from vidgen.models import FrameDiscriminator, VideoDiscriminator, VideoGAN, VideoPredictor
from vidgen.training.budget_cosine_decay import BudgetCosineDecay
from vidgen.training.losses import ReconstructionLoss

# ModelConfig fields that are not VideoPredictor arguments: the critics of a VideoGAN.
CRITIC_FIELDS = ("frame_critic_filters", "video_critic_filters", "critic_frames")


def model_kwargs(cfg: Config) -> dict[str, Any]:
    """Keyword arguments of `VideoPredictor` from the config (models never read it)."""
    accepted = VideoPredictor.hyper_parameters()
    values = {**dataclasses.asdict(cfg.model), "frame_size": cfg.data.frame_size,
              "channels": cfg.data.channels, "horizon": cfg.data.horizon,
              "seed": cfg.train.seed}
    return {name: value for name, value in values.items() if name in accepted}


def build_model(cfg: Config) -> VideoPredictor | VideoGAN:
    """The model of `cfg`: a VideoPredictor, or a VideoGAN when train.adversarial is set."""
    keras.utils.set_random_seed(cfg.train.seed)
    predictor = VideoPredictor(**model_kwargs(cfg), name="video_predictor")
    if cfg.train.adversarial == "none":
        return predictor
    m, d = cfg.model, cfg.data
    frame_critic = video_critic = None
    if m.frame_critic_filters:
        frame_critic = FrameDiscriminator(d.frame_size, d.channels, m.frame_critic_filters,
                                          name="frame_critic")
    if m.video_critic_filters:
        video_critic = VideoDiscriminator(d.frame_size, d.channels, m.video_critic_filters,
                                          name="video_critic")
    if frame_critic is None and video_critic is None:
        raise ConfigError("train.adversarial needs a critic: model.frame_critic_filters and "
                          "model.video_critic_filters are both empty.")
    return VideoGAN(predictor, frame_critic, video_critic, critic_frames=m.critic_frames,
                    seed=cfg.train.seed, name="video_gan")


def build_loss(cfg: Config) -> ReconstructionLoss:
    t = cfg.train
    return ReconstructionLoss(mse_weight=t.mse_weight, l1_weight=t.l1_weight,
                              bce_weight=t.bce_weight, ssim_weight=t.ssim_weight)


def build_optimizer(cfg: Config, learning_rate: Optional[float] = None
                    ) -> keras.optimizers.Optimizer:
    """Adam(W) with the configured schedule; `learning_rate` overrides the peak rate."""
    t = cfg.train
    peak = learning_rate or t.learning_rate
    total = t.epochs * t.steps_per_epoch
    if t.lr_schedule == "cosine":
        lr = BudgetCosineDecay(peak, total_steps=total, warmup_steps=t.warmup_steps,
                               final_fraction=t.lr_final_fraction)
    else:
        lr = peak
    kwargs = {"clipnorm": t.clipnorm} if t.clipnorm else {}
    if t.weight_decay:
        return keras.optimizers.AdamW(lr, weight_decay=t.weight_decay, **kwargs)
    return keras.optimizers.Adam(lr, **kwargs)


def budget_schedules(model: keras.Model) -> list[BudgetCosineDecay]:
    """The learning-rate schedules of a compiled model that a time budget anneals."""
    found = []
    for name in ("optimizer", "g_optimizer", "d_optimizer"):
        optimizer = getattr(model, name, None)
        # A LossScaleOptimizer wraps the optimizer that holds the schedule.
        optimizer = getattr(optimizer, "inner_optimizer", optimizer)
        schedule = getattr(optimizer, "_learning_rate", None)
        if isinstance(schedule, BudgetCosineDecay) and schedule not in found:
            found.append(schedule)
    return found


def precision_policy(cfg: Config) -> str:
    """The Keras dtype policy of a run: float32, or mixed for the hardware it runs on."""
    if not cfg.runtime.mixed_precision:
        return "float32"
    return "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"


def _maybe_loss_scaled(optimizer, cfg: Config):
    # float16 gradients underflow without loss scaling; bfloat16 has float32's range.
    if precision_policy(cfg) == "mixed_float16":
        return keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def compile_model(model: VideoPredictor | VideoGAN, cfg: Config) -> VideoPredictor | VideoGAN:
    t, jit_compile = cfg.train, cfg.runtime.jit_compile
    if isinstance(model, VideoGAN):
        model.compile(g_optimizer=_maybe_loss_scaled(build_optimizer(cfg), cfg),
                      d_optimizer=_maybe_loss_scaled(
                          build_optimizer(cfg, t.critic_learning_rate or None), cfg),
                      reconstruction_loss=build_loss(cfg), adversarial=t.adversarial,
                      adversarial_weight=t.adversarial_weight,
                      feature_matching_weight=t.feature_matching_weight,
                      jit_compile=jit_compile)
    else:
        model.compile(optimizer=_maybe_loss_scaled(build_optimizer(cfg), cfg),
                      loss=build_loss(cfg), jit_compile=jit_compile)
    return model


def build_compiled(cfg: Config, strategy) -> VideoPredictor | VideoGAN:
    """The compiled model of `cfg`, its variables made in `strategy`'s scope.

    With `runtime.mixed_precision` the layers built here compute in the
    mixed policy; the global policy is restored afterwards, so later code
    (evaluation, export) keeps float32.
    """
    policy = precision_policy(cfg)
    previous_policy = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy(policy)
    try:
        with strategy.scope():
            return compile_model(build_model(cfg), cfg)
    finally:
        keras.mixed_precision.set_dtype_policy(previous_policy)
