"""The `model` section: the predictor's architecture and its critics."""

from __future__ import annotations

import dataclasses

from vidgen.config.checks import non_negative, one_of, positive
from vidgen.errors import ConfigError

# The names model.cell and model.head take: the one list. `vidgen.models.video_predictor`
# maps each to its layer (CELLS, HEADS) and a test checks that it maps exactly these;
# the names live here because the config must not import Keras.
CELL_NAMES = ("lstm", "gru")
HEAD_NAMES = ("sdna", "cdna", "dna", "flow", "pixels")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The predictor's architecture and the critics of a VideoGAN.

    Every field named like an argument of `vidgen.models.VideoPredictor` is
    passed to it unchanged (`vidgen.training.build.model_kwargs`), so its
    docstring is the one description of those hyper-parameters (a test
    checks that each field reaches the model and survives `get_config`).
    `vidgen config --preset NAME` prints a preset's values.

    The remaining fields size the critics (adversarial training only):

    Args:
        frame_critic_filters: channels of the per-frame critic's stages
            (empty: no frame critic).
        video_critic_filters: channels of the spatio-temporal critic's stages
            (empty: no video critic).
        critic_frames: predicted frames per clip the frame critic scores.
    """

    encoder_filters: tuple[int, ...] = (32, 64)
    core_filters: tuple[int, ...] = (64, 64)
    cell: str = "lstm"
    kernel_size: int = 3
    decoder_filters: tuple[int, ...] = (64, 32)
    head: str = "cdna"
    dna_kernel: int = 9
    cdna_kernels: int = 4
    difference_input: bool = True
    sampling_steps: int = 0
    context_loss_weight: float = 1.0
    frame_critic_filters: tuple[int, ...] = (32, 64, 128)
    video_critic_filters: tuple[int, ...] = (16, 32, 64)
    critic_frames: int = 4
    latent_dim: int = 0
    kl_weight: float = 1e-4
    output_floor: float = 0.0

    def validate(self) -> None:
        positive(self, "kernel_size", "critic_frames")
        if not 0.0 <= self.output_floor < 1.0:
            raise ConfigError(f"model.output_floor must be in [0, 1). Received: "
                              f"{self.output_floor}")
        non_negative(self, "sampling_steps", "context_loss_weight", "latent_dim", "kl_weight")
        for name in ("frame_critic_filters", "video_critic_filters"):
            if getattr(self, name) and min(getattr(self, name)) <= 0:
                raise ConfigError(f"model.{name} must be positive integers (or empty for no "
                                  f"critic). Received: {list(getattr(self, name))}")
        for name in ("encoder_filters", "decoder_filters"):
            value = getattr(self, name)
            if len(value) != 2 or min(value) <= 0:
                raise ConfigError(
                    f"model.{name} must be two positive integers. Received: {list(value)}")
        if not self.core_filters or min(self.core_filters) <= 0:
            raise ConfigError(
                "model.core_filters must be one or more positive integers. "
                f"Received: {list(self.core_filters)}")
        one_of(self, "cell", CELL_NAMES)
        one_of(self, "head", HEAD_NAMES)
        positive(self, "cdna_kernels")
        for name in ("kernel_size", "dna_kernel"):
            if getattr(self, name) % 2 == 0 or getattr(self, name) <= 0:
                raise ConfigError(
                    f"model.{name} must be a positive odd number. "
                    f"Received: {getattr(self, name)}")
