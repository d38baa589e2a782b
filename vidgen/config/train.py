"""The `train` section: how a model is fit (optimizer, loss, schedule, budget)."""

from __future__ import annotations

import dataclasses

from vidgen.config.checks import non_negative, one_of, positive
from vidgen.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How a model is fit.

    Args:
        batch_size: global batch size (summed over replicas).
        epochs: passes of `steps_per_epoch` batches; validation after each.
        steps_per_epoch: training batches per epoch.
        val_batches: validation batches per epoch (0: the whole split).
        learning_rate: peak learning rate.
        lr_schedule: "cosine" (decay to `lr_final_fraction` of the peak over
            the run, after `warmup_steps`) or "constant".
        lr_final_fraction: final learning rate as a share of the peak.
        warmup_steps: linear warm-up steps.
        weight_decay: AdamW weight decay (0: plain Adam).
        clipnorm: gradient-norm clipping (0: none).
        mse_weight, l1_weight, bce_weight, ssim_weight: loss terms.
        adversarial: "none" (a plain VideoPredictor), or the critic loss of a
            VideoGAN: "hinge" or "nonsaturating".
        adversarial_weight: weight of the generator's adversarial term.
        feature_matching_weight: weight of the critic feature-matching term.
        critic_learning_rate: learning rate of the critics (0: learning_rate).
        time_budget_minutes: stop training after this wall time (0: none);
            the epoch in progress ends early and the run is finished as usual,
            and a cosine learning rate anneals within the budget.
        output_floor_tolerance: after training, calibrate `model.output_floor`
            on the validation split: the floor with the best SSIM among those
            that raise the validation MSE by at most this share, recorded in
            config.json; training and validation run unfloored (0: no
            calibration, the configured floor is kept and used throughout).
        sample_clips: clips drawn in the per-epoch sample GIF.
        seed: seed of weight initialisation and training randomness.
    """

    batch_size: int = 16
    epochs: int = 10
    steps_per_epoch: int = 200
    val_batches: int = 0
    learning_rate: float = 1e-3
    lr_schedule: str = "cosine"
    lr_final_fraction: float = 0.1
    warmup_steps: int = 100
    weight_decay: float = 0.0
    clipnorm: float = 1.0
    mse_weight: float = 0.0
    l1_weight: float = 0.0
    bce_weight: float = 1.0
    ssim_weight: float = 0.0
    adversarial: str = "none"
    adversarial_weight: float = 0.01
    feature_matching_weight: float = 0.0
    critic_learning_rate: float = 0.0
    time_budget_minutes: float = 0.0
    output_floor_tolerance: float = 0.0
    sample_clips: int = 4
    seed: int = 0

    def validate(self) -> None:
        positive(self, "batch_size", "epochs", "steps_per_epoch", "learning_rate",
                  "sample_clips")
        non_negative(self, "val_batches", "warmup_steps", "weight_decay", "clipnorm",
                      "mse_weight", "l1_weight", "bce_weight", "ssim_weight",
                      "time_budget_minutes", "lr_final_fraction", "adversarial_weight",
                      "feature_matching_weight", "critic_learning_rate",
                      "output_floor_tolerance")
        one_of(self, "adversarial", ("none", "hinge", "nonsaturating"))
        one_of(self, "lr_schedule", ("cosine", "constant"))
        if not (self.mse_weight or self.l1_weight or self.bce_weight or self.ssim_weight):
            raise ConfigError(
                "At least one of train.mse_weight, l1_weight, bce_weight, ssim_weight must "
                "be positive. Received all zeros.")
