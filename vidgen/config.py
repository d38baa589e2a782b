"""Experiment configuration: frozen dataclasses, JSON round trip, overrides.

A configuration is data. Models never read it; factories turn its sections
into keyword arguments. The resolved configuration is written into every run
directory before the first step, so a run can always be reproduced.

Example:

    from vidgen.config import apply_overrides
    from vidgen.presets import get_preset

    cfg = apply_overrides(get_preset("quick"), ["data.frame_size=32"])
    cfg.to_json("runs/demo/config.json")
"""

from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from typing import Any

from vidgen.errors import ConfigError
from vidgen.fileio import write_json_atomic


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where clips come from and how they are cut and normalised.

    Video files and frame folders ("footage") are cut into windows of
    `stored_length` frames: training windows overlap (`window_stride` apart,
    3 frames by default), validation and test windows do not overlap each
    other (`eval_stride`) and never share a frame with training. With fewer
    than three files each file is split in time, train | gap | val | gap |
    test; see `vidgen.data.sources.time_segments` for the formula.

    Args:
        source: a built-in generator (`"digits"`, `"shapes"`) or a path: a
            prepared dataset directory (with `manifest.json`), a Moving MNIST
            `.npy`, an MNIST file (idx `.gz` or `mnist.npz`), a video file, a
            folder of videos or a folder of frame folders.
        frame_size: height and width of the square frames the model sees.
        channels: 1 (grayscale) or 3 (RGB); sources are converted to it.
            0 (auto) takes the source's own: 3 for video files, frame folders
            and colour shapes, 1 for digits and MNIST, the array's for a
            `.npy`, the manifest's for a prepared dataset. It is resolved when
            the source is opened, and a run's config.json records the result.
        context: number of observed frames.
        horizon: number of frames to predict after the context.
        clip_length: frames per stored clip when preparing; 0 means
            `context + horizon`.
        window_stride: frames between the starts of consecutive training
            windows cut from a file source; 0 (auto) means 3 for video files
            and frame folders (overlapping windows) and `stored_length` for a
            `.npy` (no overlap). Generated sources make each clip whole.
        eval_stride: the same for validation and test windows; 0 means
            `stored_length`, so they never overlap each other.
        split_mode: how a file source is split: "by_source" (whole files or
            sequences go to one split), "by_time" (each file is cut in time)
            or "auto" (by source with at least 3 usable files, else by time).
        split_gap: frames left out between the train, val and test segments
            of a time split; -1 (auto) means one window, `context + horizon`.
        min_split_windows: windows every split (train, and val/test when
            their fraction is above 0) must get, or the source is refused
            before anything is written (0: no check).
        min_digits, max_digits: digits per synthetic clip (inclusive).
        shapes_color: synthetic shapes are drawn in colour (3 channels).
        train_clips, val_clips, test_clips: clips drawn from generated
            sources (the training stream is endless when read directly;
            `train_clips` is what `vidgen data prepare` writes).
        val_fraction, test_fraction: share of sources (files, sequences)
            held out for validation and test; in a time split, share of each
            file's frames, rounded down to whole windows.
        fps: resample videos to this many frames per second, taking for each
            output time the nearest earlier frame (0: the file's own rate);
            video files only (frame folders and arrays have no rate).
        frame_stride: keep every n-th frame (after `fps`).
        crop: `"center"` or `"random"` crop of video frames to a square.
        max_frames: at most this many frames kept per video (0: all).
        augment_zoom: training windows of video files and frame folders are
            stored at `frame_size * (1 + augment_zoom)` and the training
            pipeline takes a random square crop of a random side between
            `frame_size` and that (zoom up to 1 + augment_zoom, at a random
            position), resized to `frame_size`; 0: no zoom. Validation and
            test are stored at `frame_size`, never augmented.
        augment_flip: random horizontal flips of training clips.
        augment_pan: synthetic camera motion for training windows stored
            larger than `frame_size` (footage, `augment_zoom` > 0): the crop
            moves at a random constant velocity of up to this many output
            pixels per frame (sub-pixel, bilinear), as far as the stored
            frame allows; 0: a still crop.
        augment_reverse: play training windows backwards with probability 1/2.
        shuffle_buffer: clips held in the training shuffle buffer.
        shard_size: clips per TFRecord shard written by `prepare`.
        seed: seed of every random choice in the data layer.
    """

    source: str = "digits"
    frame_size: int = 64
    channels: int = 0
    context: int = 10
    horizon: int = 10
    clip_length: int = 0
    window_stride: int = 0
    eval_stride: int = 0
    split_mode: str = "auto"
    split_gap: int = -1
    min_split_windows: int = 1
    min_digits: int = 1
    max_digits: int = 3
    shapes_color: bool = True
    train_clips: int = 10000
    val_clips: int = 256
    test_clips: int = 256
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    fps: float = 0.0
    frame_stride: int = 1
    crop: str = "center"
    max_frames: int = 0
    augment_zoom: float = 0.25
    augment_flip: bool = False
    augment_pan: float = 0.0
    augment_reverse: bool = False
    shuffle_buffer: int = 1024
    shard_size: int = 1024
    seed: int = 1234

    @property
    def window(self) -> int:
        """Frames in one training example: context plus horizon."""
        return self.context + self.horizon

    @property
    def stored_length(self) -> int:
        """Frames per clip stored by `prepare`."""
        return self.clip_length or self.window

    @property
    def gap(self) -> int:
        """Frames between the segments of a time split (`split_gap`, resolved)."""
        return self.window if self.split_gap < 0 else self.split_gap

    def validate(self) -> None:
        _positive(self, "frame_size", "context", "horizon", "frame_stride",
                  "shuffle_buffer", "shard_size", "min_digits")
        _non_negative(self, "clip_length", "window_stride", "eval_stride", "max_frames",
                      "train_clips", "val_clips", "test_clips", "min_split_windows", "fps")
        if self.channels not in (0, 1, 3):
            raise ConfigError(
                "data.channels must be 1 or 3 (or 0: the source's own). Received: "
                f"data.channels={self.channels}")
        if self.split_gap < -1:
            raise ConfigError(
                "data.split_gap must be >= 0, or -1 for one window (context + horizon). "
                f"Received: data.split_gap={self.split_gap}")
        if self.split_mode not in ("auto", "by_source", "by_time"):
            raise ConfigError(
                "data.split_mode must be 'auto', 'by_source' or 'by_time'. Received: "
                f"data.split_mode={self.split_mode!r}")
        if self.augment_pan < 0:
            raise ConfigError(
                f"data.augment_pan must be >= 0. Received: data.augment_pan={self.augment_pan}")
        if not 0.0 <= self.augment_zoom <= 1.0:
            raise ConfigError(
                f"data.augment_zoom must be in [0, 1]. Received: {self.augment_zoom}")
        if self.max_digits < self.min_digits:
            raise ConfigError(
                "data.max_digits must be >= data.min_digits. Received: "
                f"min_digits={self.min_digits}, max_digits={self.max_digits}")
        if self.clip_length and self.clip_length < self.window:
            raise ConfigError(
                "data.clip_length must be 0 or at least context + horizon "
                f"({self.window}). Received: data.clip_length={self.clip_length}")
        if self.crop not in ("center", "random"):
            raise ConfigError(
                f"data.crop must be 'center' or 'random'. Received: data.crop={self.crop!r}")
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"data.{name} must be in [0, 1). Received: {value}")
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ConfigError(
                "data.val_fraction + data.test_fraction must be below 1 so that "
                f"training keeps some sources. Received: {self.val_fraction} + "
                f"{self.test_fraction}")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The predictor's architecture (turned into `VideoPredictor` keyword arguments).

    Args:
        encoder_filters: channels of the encoder's two stride-2 stages.
        core_filters: channels of each recurrent layer, one entry per layer.
        cell: "lstm" (ConvLSTM) or "gru" (ConvGRU).
        kernel_size: kernel of the recurrent convolutions.
        decoder_filters: channels of the decoder's two upsampling stages.
        head: "sdna" (move each pixel of the last frame by its own separable
            kernel, composite with generated pixels), "cdna" (move the last
            frame by a few kernels per clip and
            composite them with generated pixels through per-pixel masks),
            "dna" (one kernel per pixel), "flow" (warp the last frame by a
            dense flow field, gated, plus a residual; starts as copy-last:
            the head for natural video) or "pixels" (generate every pixel).
        dna_kernel: side of the motion kernels (odd); the largest motion per
            frame is dna_kernel // 2 pixels.
        cdna_kernels: number of motion kernels per clip for head "cdna".
        difference_input: the encoder also sees the difference between the
            frame and the previous one.
        sampling_steps: optimizer steps over which scheduled sampling moves
            from true frames to the model's own predictions (0: own only).
        context_loss_weight: weight of the next-frame loss on context frames.
        frame_critic_filters: channels of the per-frame critic's stages
            (adversarial training only; empty: no frame critic).
        video_critic_filters: channels of the spatio-temporal critic's stages
            (adversarial training only; empty: no video critic).
        critic_frames: predicted frames per clip the frame critic scores.
        latent_dim: size of a per-step latent vector with a learned prior
            (0: deterministic); lets `rollout` draw several futures.
        kl_weight: weight of the KL term of the latent variable.
        output_floor: values below it in the frames the model returns become 0
            (`VideoPredictor.output_floor`); with `train.output_floor_tolerance`
            training replaces it by a value calibrated on the validation split.
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
        _positive(self, "kernel_size", "critic_frames")
        if not 0.0 <= self.output_floor < 1.0:
            raise ConfigError(f"model.output_floor must be in [0, 1). Received: "
                              f"{self.output_floor}")
        _non_negative(self, "sampling_steps", "context_loss_weight", "latent_dim", "kl_weight")
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
        if self.cell not in ("lstm", "gru"):
            raise ConfigError(
                f"model.cell must be 'lstm' or 'gru'. Received: model.cell={self.cell!r}")
        if self.head not in ("sdna", "cdna", "dna", "flow", "pixels"):
            raise ConfigError(
                "model.head must be 'sdna', 'cdna', 'dna', 'flow' or 'pixels'. "
                f"Received: model.head={self.head!r}")
        _positive(self, "cdna_kernels")
        for name in ("kernel_size", "dna_kernel"):
            if getattr(self, name) % 2 == 0 or getattr(self, name) <= 0:
                raise ConfigError(
                    f"model.{name} must be a positive odd number. "
                    f"Received: {getattr(self, name)}")


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
        mixed_precision: compute in mixed_float16 with loss scaling on GPUs,
            mixed_bfloat16 on CPUs; variables, states and frames stay float32.
        strategy: tf.distribute strategy: "auto", "default", "mirrored",
            "multiworker" or "tpu" (see vidgen/training/distribute.py).
        time_budget_minutes: stop training after this wall time (0: none);
            the epoch in progress ends early and the run is finished as usual,
            and a cosine learning rate anneals within the budget.
        output_floor_tolerance: after training, calibrate `model.output_floor`
            on the validation split: the floor with the best SSIM among those
            that raise the validation MSE by at most this share (0: no
            calibration, the configured floor is kept).
        jit_compile: XLA; off by default (14x slower on a 2-core CPU, measured).
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
    strategy: str = "auto"
    mixed_precision: bool = False
    time_budget_minutes: float = 0.0
    output_floor_tolerance: float = 0.0
    jit_compile: bool = False
    sample_clips: int = 4
    seed: int = 0

    def validate(self) -> None:
        _positive(self, "batch_size", "epochs", "steps_per_epoch", "learning_rate",
                  "sample_clips")
        _non_negative(self, "val_batches", "warmup_steps", "weight_decay", "clipnorm",
                      "mse_weight", "l1_weight", "bce_weight", "ssim_weight",
                      "time_budget_minutes", "lr_final_fraction", "adversarial_weight",
                      "feature_matching_weight", "critic_learning_rate",
                      "output_floor_tolerance")
        if self.strategy not in ("auto", "default", "mirrored", "multiworker", "tpu"):
            raise ConfigError(
                "train.strategy must be 'auto', 'default', 'mirrored', 'multiworker' or "
                f"'tpu'. Received: train.strategy={self.strategy!r}")
        if self.adversarial not in ("none", "hinge", "nonsaturating"):
            raise ConfigError(
                "train.adversarial must be 'none', 'hinge' or 'nonsaturating'. "
                f"Received: train.adversarial={self.adversarial!r}")
        if self.lr_schedule not in ("cosine", "constant"):
            raise ConfigError(
                "train.lr_schedule must be 'cosine' or 'constant'. "
                f"Received: {self.lr_schedule!r}")
        if not (self.mse_weight or self.l1_weight or self.bce_weight or self.ssim_weight):
            raise ConfigError(
                "At least one of train.mse_weight, l1_weight, bce_weight, ssim_weight must "
                "be positive. Received all zeros.")


@dataclasses.dataclass(frozen=True)
class Config:
    """A whole experiment: one section per stage of the data flow."""

    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)

    def validate(self) -> Config:
        for field in dataclasses.fields(self):
            getattr(self, field.name).validate()
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Config:
        return _from_dict(cls, values, prefix="")

    def to_json(self, path: str | os.PathLike) -> None:
        """Write the config as JSON, atomically (temporary file, then rename)."""
        write_json_atomic(path, self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> Config:
        try:
            with open(path) as f:
                values = json.load(f)
        except FileNotFoundError:
            raise ConfigError(f"Config file {os.fspath(path)!r} does not exist.") from None
        except json.JSONDecodeError as e:
            raise ConfigError(
                f"Config file {os.fspath(path)!r} is not valid JSON: {e}") from None
        return cls.from_dict(values)


def _positive(section, *names: str) -> None:
    for name in names:
        value = getattr(section, name)
        if value <= 0:
            raise ConfigError(
                f"{_section_name(section)}.{name} must be positive. Received: {value}")


def _non_negative(section, *names: str) -> None:
    for name in names:
        value = getattr(section, name)
        if value < 0:
            raise ConfigError(
                f"{_section_name(section)}.{name} must be >= 0. Received: {value}")


def _section_name(section) -> str:
    return type(section).__name__.removesuffix("Config").lower()


def _field_types(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _from_dict(cls, values: Any, prefix: str):
    if not isinstance(values, dict):
        raise ConfigError(
            f"Config section {prefix.rstrip('.') or '<root>'} must be a JSON object. "
            f"Received: {values!r}")
    hints = _field_types(cls)
    unknown = sorted(set(values) - set(hints))
    if unknown:
        raise ConfigError(
            f"Unknown config key {prefix}{unknown[0]}. Valid keys here: "
            f"{', '.join(prefix + k for k in sorted(hints))}")
    kwargs = {}
    for name, value in values.items():
        kind = hints[name]
        if dataclasses.is_dataclass(kind):
            kwargs[name] = _from_dict(kind, value, prefix=f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(value, kind, f"{prefix}{name}")
    return cls(**kwargs)


def _coerce(value: Any, kind: Any, key: str) -> Any:
    """Checks `value` against the annotated type `kind`, converting where lossless."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0])
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} expects a list. Received: {value!r}")
        (item,) = {a for a in typing.get_args(kind) if a is not Ellipsis}
        return tuple(_coerce(v, item, key) for v in value)
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key} expects true or false. Received: {value!r}")
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{key} expects an integer. Received: {value!r}")
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{key} expects a number. Received: {value!r}")
    if kind is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key} expects a string. Received: {value!r}")
    raise ConfigError(f"{key} has an unsupported type {kind!r}")


def _parse_value(text: str) -> Any:
    """`--set` values are JSON (`8`, `true`, `[1, 2]`); anything else is a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def apply_overrides(cfg: Config, overrides: list[str] | None) -> Config:
    """Returns `cfg` with `section.key=value` overrides applied, validated.

    Args:
        cfg: the base configuration (usually a preset).
        overrides: strings such as `"data.frame_size=32"` or
            `"train.batch_size=8"`; values are parsed as JSON first.

    Returns:
        A new, validated `Config`.

    Raises:
        ConfigError: naming the bad key and the valid ones, or the bad value.
    """
    values = cfg.to_dict()
    for item in overrides or ():
        if "=" not in item:
            raise ConfigError(
                f"Override {item!r} must look like section.key=value, "
                "for example data.frame_size=64.")
        dotted, text = item.split("=", 1)
        parts = dotted.strip().split(".")
        node = values
        for depth, part in enumerate(parts[:-1]):
            if not isinstance(node.get(part), dict):
                here = ".".join(parts[:depth])
                valid = sorted(k for k, v in node.items() if isinstance(v, dict))
                raise ConfigError(
                    f"Unknown config section {dotted!r}: {part!r} is not a section"
                    f"{' of ' + here if here else ''}. Valid sections: {', '.join(valid)}")
            node = node[part]
        leaf = parts[-1]
        if leaf not in node or isinstance(node[leaf], dict):
            prefix = ".".join(parts[:-1])
            valid = sorted(f"{prefix}.{k}" if prefix else k for k in node)
            raise ConfigError(
                f"Unknown config key {dotted!r}. Valid keys: {', '.join(valid)}")
        # A string field takes the text as it is, so `data.source=123` stays a path.
        text = text.strip()
        node[leaf] = text if isinstance(node[leaf], str) else _parse_value(text)
    return Config.from_dict(values).validate()
