"""The `data` section: where clips come from and how they are cut and normalised."""

from __future__ import annotations

import dataclasses

from vidgen.config.checks import non_negative, one_of, positive
from vidgen.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where clips come from and how they are cut and normalised.

    Video files and frame folders ("footage") are cut into windows of
    `stored_length` frames: training windows overlap (`window_stride` apart,
    3 frames by default), validation and test windows do not overlap each
    other (`eval_stride`) and never share a frame with training. With fewer
    than three files each file is split in time, train | gap | val | gap |
    test; see `vidgen.data.time_split.time_segments` for the formula.

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
        positive(self, "frame_size", "context", "horizon", "frame_stride",
                  "shuffle_buffer", "shard_size", "min_digits")
        non_negative(self, "clip_length", "window_stride", "eval_stride", "max_frames",
                      "train_clips", "val_clips", "test_clips", "min_split_windows", "fps")
        if self.channels not in (0, 1, 3):
            raise ConfigError(
                "data.channels must be 1 or 3 (or 0: the source's own). Received: "
                f"data.channels={self.channels}")
        if self.split_gap < -1:
            raise ConfigError(
                "data.split_gap must be >= 0, or -1 for one window (context + horizon). "
                f"Received: data.split_gap={self.split_gap}")
        one_of(self, "split_mode", ("auto", "by_source", "by_time"))
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
        one_of(self, "crop", ("center", "random"))
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"data.{name} must be in [0, 1). Received: {value}")
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ConfigError(
                "data.val_fraction + data.test_fraction must be below 1 so that "
                f"training keeps some sources. Received: {self.val_fraction} + "
                f"{self.test_fraction}")
