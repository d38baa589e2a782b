"""Clip sources: every kind of input, as uint8 clips shaped (time, height, width, channels).

A source knows its splits. Generated sources (synthetic digits and shapes,
Moving MNIST built from an MNIST file) make clip `i` of a split as a pure
function of (seed, split, i), and their training split is endless. File
sources (a Moving MNIST `.npy`, video files, frame folders) yield windows of
`stored_length` frames: overlapping ones (`window_stride` apart) for
training, disjoint ones (`eval_stride`) for validation and test. They assign
whole sources (a file, a sequence) to one split; with fewer than three usable
sources each one is cut in time into train | gap | val | gap | test segments
instead (`time_segments`). Either way no frame of a test clip is ever seen in
training, and a split that would get fewer than `min_split_windows` windows
is refused before any frame is decoded.

Example:

    from vidgen.config import DataConfig
    from vidgen.data.sources import open_source

    source = open_source(DataConfig(source="videos/"))
    for clip in source.clips("val"):
        print(clip.id, clip.frames.shape)
"""

from __future__ import annotations

import abc
import dataclasses
import glob
import gzip
import itertools
import logging
import os
import zipfile
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Optional

import numpy as np

from vidgen.config import DataConfig
from vidgen.data import frames as framelib
from vidgen.data import synthetic
from vidgen.errors import DataError

log = logging.getLogger("vidgen.data")

SPLITS = ("train", "val", "test")
# Frames between the starts of overlapping training windows of footage (data.window_stride=0).
FOOTAGE_STRIDE = 3
BUILTIN_SOURCES = ("digits", "shapes")
MANIFEST_NAME = "manifest.json"


@dataclasses.dataclass(frozen=True)
class Clip:
    """One clip: an id naming where it came from, and uint8 frames (T, H, W, C).

    `source` names the file or sequence it was cut from (empty: the clip is its
    own source).
    """

    id: str
    frames: np.ndarray
    source: str = ""


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise DataError(f"split must be one of {', '.join(SPLITS)}. Received: {split!r}")


class Source(abc.ABC):
    """A supply of clips for the train, val and test splits."""

    kind: str = "source"

    def __init__(self, cfg: DataConfig):
        # data.channels=0 (auto) becomes the source's own channel count here.
        self.cfg = cfg if cfg.channels else dataclasses.replace(
            cfg, channels=self.own_channels(cfg))
        self.skipped: list[dict[str, str]] = []

    def own_channels(self, cfg: DataConfig) -> int:
        """The channels of this source's clips, used when data.channels is 0 (auto)."""
        return 1

    def stored_size(self, split: str) -> int:
        """Side of the square frames this source yields for `split`."""
        return self.cfg.frame_size

    def all_clips(self) -> Iterator[tuple[str, Clip]]:
        """Every clip `prepare` writes, as (split, clip) pairs."""
        for split in SPLITS:
            for clip in self.clips(split):
                yield split, clip

    def planned_clips(self) -> Optional[int]:
        """How many clips `all_clips` yields, when known in advance."""
        return None

    @property
    def endless_train(self) -> bool:
        """True when the training split can be drawn from forever."""
        return False

    @abc.abstractmethod
    def clips(self, split: str, num_shards: int = 1, shard_index: int = 0,
              limit: Optional[int] = None) -> Iterator[Clip]:
        """Yields the clips of `split` (every `num_shards`-th, from `shard_index`).

        Args:
            split: "train", "val" or "test".
            num_shards, shard_index: this reader's share of the clips.
            limit: at most this many clips of an endless split; `None` reads
                an endless training split forever.
        """

    def describe(self) -> dict[str, Any]:
        """What the manifest records about this source."""
        return {"kind": self.kind, "source": self.cfg.source}


class GeneratedSource(Source):
    """Clips generated per (seed, split, index): fixed val/test sets, endless training."""

    @property
    def endless_train(self) -> bool:
        return True

    def count(self, split: str) -> int:
        return {"train": self.cfg.train_clips, "val": self.cfg.val_clips,
                "test": self.cfg.test_clips}[split]

    def all_clips(self):
        for split in SPLITS:
            for clip in self.clips(split, limit=self.count(split)):
                yield split, clip

    def planned_clips(self):
        return sum(self.count(split) for split in SPLITS)

    @abc.abstractmethod
    def make(self, split: str, index: int) -> np.ndarray:
        """Clip `index` of `split` as uint8 (stored_length, S, S, C)."""

    def clips(self, split, num_shards=1, shard_index=0, limit=None):
        check_split(split)
        stop = limit if (split == "train" and limit is not None) else (
            None if split == "train" else self.count(split))
        indices = itertools.count(shard_index, num_shards) if stop is None else range(
            shard_index, stop, num_shards)
        for i in indices:
            frames = self.make(split, i)
            yield Clip(f"{split}-{i}", framelib.conform(frames, self.cfg.frame_size,
                                                       self.cfg.channels))


class SyntheticDigits(GeneratedSource):
    """Moving handwriting-like digits rendered with OpenCV fonts (no download)."""

    kind = "synthetic_digits"

    def make(self, split, index):
        c = self.cfg
        return synthetic.digits_clip(c.seed, split, index, c.stored_length, c.frame_size,
                                     c.min_digits, c.max_digits)


class SyntheticShapes(GeneratedSource):
    """Moving circles, squares and triangles, in colour unless `shapes_color` is off."""

    kind = "synthetic_shapes"

    def own_channels(self, cfg):
        return 3 if cfg.shapes_color else 1

    def make(self, split, index):
        c = self.cfg
        return synthetic.shapes_clip(c.seed, split, index, c.stored_length, c.frame_size,
                                     c.min_digits, c.max_digits, c.shapes_color)


def load_mnist_digits(path: str) -> dict[str, np.ndarray]:
    """Loads MNIST digit images from an idx file (optionally .gz) or a keras `mnist.npz`.

    Returns:
        {"train": uint8 (N, 28, 28)} plus {"test": ...} when the file has a test set.
    """
    if not os.path.isfile(path):
        raise DataError(f"MNIST file {path!r} does not exist.")
    if path.endswith(".npz"):
        try:
            with np.load(path) as data:
                keys = set(data.files)
                if "x_train" not in keys:
                    raise DataError(
                        f"MNIST file {path!r} should hold arrays x_train (and x_test) like "
                        f"keras' mnist.npz. Received arrays: {sorted(keys)}")
                out = {"train": np.asarray(data["x_train"])}
                if "x_test" in keys:
                    out["test"] = np.asarray(data["x_test"])
        except (zipfile.BadZipFile, OSError, ValueError) as e:
            if isinstance(e, DataError):
                raise
            raise DataError(f"MNIST file {path!r} is not a readable .npz archive: {e}") from None
    else:
        opener = gzip.open if path.endswith(".gz") else open
        try:
            with opener(path, "rb") as f:
                raw = f.read()
        except (OSError, EOFError) as e:
            raise DataError(f"MNIST file {path!r} could not be read: {e}") from None
        out = {"train": _parse_idx_images(raw, path)}
    for name, images in out.items():
        if images.ndim != 3 or images.dtype != np.uint8:
            raise DataError(
                f"MNIST file {path!r}: expected {name} images as uint8 (N, height, width). "
                f"Received {images.dtype} {images.shape}")
    return out


def _parse_idx_images(raw: bytes, path: str) -> np.ndarray:
    magic = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else -1
    if magic != 2051 or len(raw) < 16:
        raise DataError(
            f"MNIST file {path!r} is not an idx image file: expected magic number 2051 "
            f"(idx3, uint8), received {magic}.")
    n, rows, cols = (int.from_bytes(raw[i:i + 4], "big") for i in (4, 8, 12))
    expected = 16 + n * rows * cols
    if len(raw) != expected:
        raise DataError(
            f"MNIST file {path!r} is truncated or padded: its header promises {n} images of "
            f"{rows}x{cols} ({expected} bytes), the file has {len(raw)} bytes.")
    return np.frombuffer(raw, np.uint8, offset=16).reshape(n, rows, cols)


class MovingMNIST(GeneratedSource):
    """Moving MNIST generated from a user-supplied MNIST file, the standard protocol.

    Digits of the test split come from MNIST's test images when the file has
    them (keras `mnist.npz`); otherwise the images are divided between the
    splits. Validation digits are a held-out part of the training images.

    Reference:
        Srivastava et al., "Unsupervised Learning of Video Representations
        using LSTMs", ICML 2015.
    """

    kind = "moving_mnist_generated"

    def __init__(self, cfg: DataConfig):
        super().__init__(cfg)
        digits = load_mnist_digits(cfg.source)
        train = digits["train"]
        n = len(train)
        if "test" in digits:
            n_val = max(1, int(round(n * cfg.val_fraction)))
            self.pools = {"train": train[:n - n_val], "val": train[n - n_val:],
                          "test": digits["test"]}
        else:
            n_test = max(1, int(round(n * cfg.test_fraction)))
            n_val = max(1, int(round(n * cfg.val_fraction)))
            self.pools = {"train": train[:n - n_val - n_test],
                          "val": train[n - n_val - n_test:n - n_test],
                          "test": train[n - n_test:]}
        for pool in self.pools.values():
            if len(pool) == 0:
                raise DataError(
                    f"MNIST file {cfg.source!r} has too few images ({n}) to give every "
                    "split at least one digit.")

    def make(self, split, index):
        c = self.cfg
        rng = synthetic.clip_rng(c.seed, split, index)
        pool = self.pools[split]
        count = int(rng.integers(c.min_digits, c.max_digits + 1))
        glyph = max(4, int(round(pool.shape[1] * c.frame_size / synthetic.CANVAS_SIZE)))
        glyphs = []
        for _ in range(count):
            image = pool[rng.integers(len(pool))]
            if image.shape[0] != glyph:
                image = framelib.conform(image[None, :, :, None], glyph, 1)[0, :, :, 0]
            glyphs.append(image)
        return synthetic.moving_glyphs_clip(rng, glyphs, c.stored_length, c.frame_size)

    def describe(self):
        return {**super().describe(), "digits": {k: len(v) for k, v in self.pools.items()}}


def window_count(frames: int, length: int, stride: int) -> int:
    """Windows of `length` frames, `stride` apart, inside `frames` frames."""
    return (frames - length) // stride + 1 if frames >= length else 0


def time_segments(num_frames: int, length: int, eval_stride: int, gap: int,
                  val_fraction: float, test_fraction: float) -> dict[str, tuple[int, int]]:
    """Frame ranges [start, stop) of a time split: train | gap | val | gap | test.

    Test takes the end of the clip and val the frames before it, each
    floor(num_frames * fraction) frames rounded down to whole windows
    (`length` frames, `eval_stride` apart: `length + (n - 1) * eval_stride`
    frames for n windows); `gap` frames separate consecutive segments, and
    training keeps everything before. A split with a fraction of 0, or too
    few frames for one window, gets an empty segment and no gap.

    Example: 250 frames, windows of 20, gap 20, 10% val and test:
    train [0, 170), val [190, 210), test [230, 250).
    """
    segments = {}
    end = num_frames
    for split, fraction in (("test", test_fraction), ("val", val_fraction)):
        if fraction <= 0:
            continue
        n = window_count(int(num_frames * fraction + 1e-9), length, eval_stride)
        size = length + (n - 1) * eval_stride if n else 0
        segments[split] = (max(0, end - size), max(0, end))
        if size:
            end -= size + gap
    segments["train"] = (0, max(0, end))
    return {split: segments[split] for split in SPLITS if split in segments}


def _time_split_windows(num_frames, length, train_stride, eval_stride, gap, val_fraction,
                        test_fraction) -> dict[str, int]:
    segments = time_segments(num_frames, length, eval_stride, gap, val_fraction,
                             test_fraction)
    return {split: window_count(b - a, length, train_stride if split == "train"
                                else eval_stride) for split, (a, b) in segments.items()}


def time_split_frames_needed(length, train_stride, eval_stride, gap, val_fraction,
                             test_fraction, min_windows) -> int:
    """The fewest frames a time split needs to give every split `min_windows` windows."""
    if not min_windows:
        return 0
    train = length + (min_windows - 1) * train_stride
    held = [(f, length + (min_windows - 1) * eval_stride) for f in (val_fraction, test_fraction)
            if f > 0]
    n = max([train + sum(size + gap for _, size in held)]
            + [int(np.ceil(size / f)) for f, size in held])
    while min(_time_split_windows(n, length, train_stride, eval_stride, gap, val_fraction,
                                  test_fraction).values()) < min_windows:
        n += 1
    return n


@dataclasses.dataclass
class ItemPlan:
    """One usable item of a file source and where its windows come from.

    Attributes:
        item: the file, folder or sequence.
        frames: frames kept after data.fps / data.frame_stride / data.max_frames.
        source_frames: frames in the item at its own rate.
        fps: the item's frame rate (0: none or unknown).
        segments: split -> [start, stop) in kept frames.
    """

    item: str
    frames: int
    source_frames: int
    fps: float
    segments: dict[str, tuple[int, int]]


def _name(item: str) -> str:
    return os.path.basename(item.rstrip(os.sep)) or item


class FileSource(Source):
    """Windows cut from a list of items (files, sequences), split by item or in time.

    The plan (which item gives which windows to which split) is made from the
    items' headers before any frame is decoded, so a source that cannot give
    every split `data.min_split_windows` windows is refused at once.
    """

    min_items_for_source_split = 3
    #: Natural video: overlapping training windows, zoom augmentation, RGB by default.
    footage = False
    #: Items have a frame rate, so data.fps can resample them.
    has_rate = False
    noun = "clip"

    def __init__(self, cfg: DataConfig, items: list[str]):
        super().__init__(cfg)
        if not items:
            raise DataError(f"Data source {cfg.source!r} holds no clips.")
        if cfg.fps and not self.has_rate:
            raise DataError(
                f"{self.noun.capitalize()}s have no frame rate, so data.fps={cfg.fps:g} cannot "
                f"resample {cfg.source!r}: expected data.fps=0 for this source, so use "
                "--set data.fps=0 and --set data.frame_stride=N to keep every N-th frame.")
        self.items = items
        self._plan: Optional[list[ItemPlan]] = None
        self._mode: Optional[str] = None
        self.frame_counts = dict.fromkeys(
            ("decoded", "kept", "in_windows", "dropped", "dropped_by_resampling",
             "dropped_in_gaps", "dropped_at_segment_ends"), 0)

    def own_channels(self, cfg):
        return 3 if self.footage else 1

    # ---------------------------------------------------------------- what to read

    @abc.abstractmethod
    def probe(self, item: str) -> tuple[int, float, Optional[tuple[int, int]]]:
        """(frames in the item, its frame rate or 0, its (width, height) or None), cheaply."""

    @abc.abstractmethod
    def load(self, item: str, size_of: Callable[[int], Optional[int]]
             ) -> Sequence[Optional[np.ndarray]]:
        """Decodes the kept frames of one item: uint8 (H, W, C) each, C in {1, 3}.

        Kept frame j is shrunk to `size_of(j)` as it is decoded when its
        shorter side is larger (0: as decoded); None: not needed, may be
        returned as None without decoding it fully.
        """

    @property
    def length(self) -> int:
        return self.cfg.stored_length

    @property
    def train_stride(self) -> int:
        c = self.cfg
        return c.window_stride or (min(FOOTAGE_STRIDE, self.length) if self.footage
                                   else self.length)

    @property
    def eval_stride(self) -> int:
        return self.cfg.eval_stride or self.length

    def stride(self, split: str) -> int:
        return self.train_stride if split == "train" else self.eval_stride

    def stored_size(self, split):
        c = self.cfg
        if self.footage and split == "train" and c.augment_zoom > 0:
            return int(round(c.frame_size * (1.0 + c.augment_zoom)))
        return c.frame_size

    def step(self, fps: float, item: str) -> float:
        """Source frames per kept frame of an item with `fps` frames per second."""
        if not self.has_rate:
            return float(self.cfg.frame_stride)
        return framelib.frame_step(fps, self.cfg.fps, self.cfg.frame_stride, item)

    # ---------------------------------------------------------------- the plan

    @property
    def split_mode(self) -> str:
        """"by_source" or "by_time", decided by the plan."""
        self.plan  # noqa: B018 - makes the plan, which decides the mode
        return self._mode

    @property
    def plan(self) -> list[ItemPlan]:
        """The usable items and their segments; made once, from the items' headers.

        Raises:
            DataError: no usable item, mixed frame rates without data.fps, or a
                split with fewer than data.min_split_windows windows.
        """
        if self._plan is None:
            self._plan = self._make_plan()
        return self._plan

    def _make_plan(self) -> list[ItemPlan]:
        c = self.cfg
        usable = []
        for item in self.items:
            try:
                frames, fps, size = self.probe(item)
                if self.footage and size and min(size) < c.frame_size:
                    suggest = max(4, min(size) // 4 * 4)
                    raise DataError(
                        f"{self.noun.capitalize()} {item!r} is {size[0]}x{size[1]}, smaller than "
                        f"the model's {c.frame_size}x{c.frame_size} frames: expected a shorter "
                        f"side of at least {c.frame_size} pixels (frames are not upscaled for "
                        f"the model), so use --set data.frame_size={suggest} or larger footage.")
                kept = len(framelib.frame_indices(frames, self.step(fps, item), 0, c.max_frames))
            except DataError as e:
                self._skip(item, "all", str(e))
                continue
            if kept < self.length:
                self._skip(item, "all", self._too_short(item, kept))
                continue
            usable.append(ItemPlan(item, kept, frames, fps, {}))
        if not usable:
            reasons = [s["reason"] for s in self.skipped]
            if len(self.items) == 1:
                raise DataError(reasons[0])
            raise DataError(
                f"None of the {len(self.items)} {self.noun}s of {c.source!r} is usable; the "
                f"first reasons: {' | '.join(reasons[:3])}")
        if self.has_rate and not c.fps:
            self._check_rates(usable)
        mode = c.split_mode
        if mode == "auto":
            mode = ("by_source" if len(usable) >= self.min_items_for_source_split
                    else "by_time")
        self._mode = mode
        if mode == "by_source":
            assignment = self._assign([p.item for p in usable])
            for p in usable:
                p.segments = {assignment[p.item]: (0, p.frames)}
        else:
            for p in usable:
                p.segments = self._time_segments(p.frames)
        self._check_minimum(usable, mode)
        return usable

    def _time_segments(self, frames: int) -> dict[str, tuple[int, int]]:
        c = self.cfg
        return time_segments(frames, self.length, self.eval_stride, c.gap, c.val_fraction,
                             c.test_fraction)

    def _too_short(self, item: str, kept: int) -> str:
        c = self.cfg
        what = "data.clip_length" if c.clip_length else "data.context + data.horizon"
        fix = "data.clip_length=N" if c.clip_length else "data.context=N / data.horizon=N"
        more = [f"data.frame_stride={c.frame_stride}"] if c.frame_stride > 1 else []
        more += [f"data.fps={c.fps:g}"] if c.fps else []
        more += [f"data.max_frames={c.max_frames}"] if c.max_frames else []
        keep = (f" or keep more frames (now {', '.join(more)})" if more else "")
        return (f"{self.noun.capitalize()} {item!r} is too short: {kept} frames, expected at "
                f"least {what} = {self.length}, so use --set {fix} for shorter windows{keep}.")

    def _check_rates(self, usable: list[ItemPlan]) -> None:
        groups: dict[float, list[str]] = {}
        for p in usable:
            if p.fps <= 0:
                continue
            rate = next((r for r in groups if abs(r - p.fps) <= 0.01 * max(r, p.fps)), p.fps)
            groups.setdefault(rate, []).append(_name(p.item))
        if len(groups) < 2:
            return
        listed = "; ".join(
            f"{rate:g} fps: {', '.join(names[:3])}"
            + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            for rate, names in sorted(groups.items()))
        raise DataError(
            f"The videos of {self.cfg.source!r} have mixed frame rates ({listed}): expected one "
            f"rate, so resample them all with --set data.fps=N (N at most {min(groups):g}).")

    def _assign(self, items: list[str]) -> dict[str, str]:
        rng = np.random.default_rng(self.cfg.seed)
        order = [items[i] for i in rng.permutation(len(items))]
        n = len(items)
        n_test = max(1, int(round(n * self.cfg.test_fraction))) if self.cfg.test_fraction else 0
        n_val = max(1, int(round(n * self.cfg.val_fraction))) if self.cfg.val_fraction else 0
        if n - n_test - n_val < 1:
            n_val = max(0, n - n_test - 1)
        out = {}
        for i, item in enumerate(order):
            out[item] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
        return out

    def starts(self, plan: ItemPlan, split: str) -> range:
        """First kept frame of every window of `split` cut from one item."""
        a, b = plan.segments.get(split, (0, 0))
        return range(a, b - self.length + 1, self.stride(split))

    def planned_windows(self) -> dict[str, int]:
        """Windows per split according to the plan."""
        return {split: sum(len(self.starts(p, split)) for p in self.plan) for split in SPLITS}

    def planned_clips(self):
        return sum(self.planned_windows().values())

    def _required_splits(self) -> list[str]:
        c = self.cfg
        return [s for s, f in (("train", 1.0), ("val", c.val_fraction),
                               ("test", c.test_fraction)) if f > 0]

    def _check_minimum(self, usable: list[ItemPlan], mode: str) -> None:
        c = self.cfg
        m = c.min_split_windows
        counts = {split: sum(len(self.starts(p, split)) for p in usable) for split in SPLITS}
        short = [s for s in self._required_splits() if counts[s] < m]
        if not short:
            return
        got = ", ".join(f"{s} {counts[s]}" for s in SPLITS)
        if mode == "by_time":
            needed = time_split_frames_needed(self.length, self.train_stride, self.eval_stride,
                                              c.gap, c.val_fraction, c.test_fraction, m)
            have = (f"{usable[0].frames} frames" if len(usable) == 1 else
                    ", ".join(f"{_name(p.item)} {p.frames}" for p in usable) + " frames")
            each = "" if len(usable) == 1 else f" per {self.noun}"
            raise DataError(
                f"{c.source!r} has {have} after resampling (data.fps={c.fps:g}, "
                f"data.frame_stride={c.frame_stride}) but its time split train | gap | val | "
                f"gap | test needs at least {needed} frames{each} to give every split "
                f"data.min_split_windows={m} window(s) of {self.length} frames with "
                f"data.val_fraction={c.val_fraction:g}, data.test_fraction={c.test_fraction:g} "
                f"and data.split_gap={c.gap} (windows: {got}), so use --set "
                "data.val_fraction=/data.test_fraction= (larger), data.split_gap= (smaller, 0 "
                "allowed), data.fps= (higher) or data.frame_stride= (lower), or "
                "data.context=/data.horizon= (shorter windows).")
        split = short[0]
        assigned = [_name(p.item) for p in usable if split in p.segments]
        fix = ("lower data.val_fraction/data.test_fraction" if split == "train"
               else f"raise data.{split}_fraction")
        raise DataError(
            f"Splitting {c.source!r} by {self.noun} gives the {split} split {counts[split]} "
            f"window(s) of {self.length} frames, expected at least data.min_split_windows={m} "
            f"({len(assigned)} of {len(usable)} usable {self.noun}s went to it"
            + (f": {', '.join(assigned[:5])}" if assigned else "")
            + f"; windows: {got}), so add {self.noun}s, {fix}, or cut every {self.noun} in time "
            "with --set data.split_mode=by_time.")

    # ---------------------------------------------------------------- windows

    def _windows(self, plan: ItemPlan, splits: tuple[str, ...]) -> Iterator[tuple[str, Clip]]:
        """Decodes one item once and yields its windows of `splits`."""
        c = self.cfg
        wanted = [s for s in splits if len(self.starts(plan, s))]
        if not wanted:
            return
        try:
            frames = self._decode(plan, wanted)
            if len(frames) != plan.frames:
                # The header's frame count was off: cut the frames that were decoded.
                log.warning("%s: %d frames decoded, its header promised %d.", plan.item,
                            len(frames), plan.frames)
                plan.frames = len(frames)
                plan.segments = (self._time_segments(plan.frames) if self._mode == "by_time"
                                 else {s: (0, plan.frames) for s in plan.segments})
                wanted = [s for s in wanted if len(self.starts(plan, s))]
                frames = self._decode(plan, wanted)
        except DataError as e:
            self._skip(plan.item, "/".join(wanted), str(e))
            return
        for split in wanted:
            a, b = plan.segments.get(split, (0, 0))
            if not len(self.starts(plan, split)):
                continue
            rng = np.random.default_rng([c.seed, synthetic.stable_hash(plan.item)])
            try:
                segment = framelib.conform(np.stack(frames[a:b]), self.stored_size(split),
                                           c.channels, c.crop, rng)
            except DataError as e:
                self._skip(plan.item, split, str(e))
                continue
            for start in self.starts(plan, split):
                yield split, Clip(f"{plan.item}#{start}",
                                  segment[start - a:start - a + self.length], plan.item)

    def _decode(self, plan: ItemPlan, splits: list[str]) -> Sequence[Optional[np.ndarray]]:
        """The item's kept frames, each segment's at its split's stored size, others None."""
        sizes = np.zeros(plan.frames, np.int64)
        for split in splits:
            a, b = plan.segments[split]
            sizes[a:b] = self.stored_size(split)
        return self.load(plan.item, lambda j: int(sizes[j]) if j < len(sizes) and sizes[j]
                         else None)

    def _count_frames(self, plan: ItemPlan) -> None:
        in_segment = np.zeros(plan.frames, bool)
        in_window = np.zeros(plan.frames, bool)
        for split, (a, b) in plan.segments.items():
            in_segment[a:b] = True
            for start in self.starts(plan, split):
                in_window[start:start + self.length] = True
        counts = self.frame_counts
        decoded = max(plan.source_frames, plan.frames)
        counts["decoded"] += decoded
        counts["kept"] += plan.frames
        counts["in_windows"] += int(in_window.sum())
        counts["dropped"] += decoded - int(in_window.sum())
        counts["dropped_by_resampling"] += decoded - plan.frames
        counts["dropped_in_gaps"] += int((~in_segment).sum())
        counts["dropped_at_segment_ends"] += int((in_segment & ~in_window).sum())

    def all_clips(self):
        for plan in self.plan:
            yielded = False
            for pair in self._windows(plan, SPLITS):
                yielded = True
                yield pair
            if yielded:
                self._count_frames(plan)

    def clips(self, split, num_shards=1, shard_index=0, limit=None):
        check_split(split)
        plans = [p for p in self.plan if len(self.starts(p, split))][shard_index::num_shards]
        for plan in plans:
            for _, clip in self._windows(plan, (split,)):
                yield clip

    def check_written(self, windows: dict[str, int]) -> None:
        """Raises when decoding failures left a split below data.min_split_windows."""
        m = self.cfg.min_split_windows
        short = [s for s in self._required_splits() if windows[s] < m]
        if short:
            reasons = "; ".join(f"{s['item']}: {s['reason']}" for s in self.skipped[-3:])
            raise DataError(
                f"Decoding {self.cfg.source!r} left the {short[0]} split with "
                f"{windows[short[0]]} window(s), expected at least data.min_split_windows={m} "
                f"(files that failed: {reasons or 'none'}).")

    def _skip(self, item: str, split: str, reason: str) -> None:
        entry = {"item": item, "split": split, "reason": reason}
        if entry not in self.skipped:
            log.warning("Skipping %s (%s): %s", item, split, reason)
            self.skipped.append(entry)

    def describe(self):
        out = {**super().describe(), "items": len(self.items), "usable": len(self.plan),
               "split_mode": self.split_mode, "window_stride": self.train_stride,
               "eval_stride": self.eval_stride,
               "stored_size": {s: self.stored_size(s) for s in SPLITS}}
        if self.split_mode == "by_time":
            out["split_gap"] = self.cfg.gap
        if self.split_mode == "by_time" or len(self.plan) <= 20:
            out["segments"] = [{"item": p.item, "frames": p.frames, "fps": p.fps,
                                "segments": {s: list(r) for s, r in p.segments.items()}}
                               for p in self.plan]
        return out


class MovingMNISTNpy(FileSource):
    """The standard Moving MNIST file `mnist_test_seq.npy`: uint8 (20, N, 64, 64).

    Also accepts vidgen's own layout, uint8 (N, T, H, W, C). Each sequence is
    one source for the split; its windows do not overlap unless
    data.window_stride says so.
    """

    kind = "moving_mnist_npy"
    noun = "sequence"

    def __init__(self, cfg: DataConfig):
        path = cfg.source
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise DataError(f"Moving MNIST file {path!r} is not a readable .npy file: {e}") \
                from None
        if array.dtype != np.uint8 or array.ndim not in (4, 5) or (
                array.ndim == 5 and array.shape[-1] not in (1, 3)):
            raise DataError(
                f"Moving MNIST file {path!r}: expected uint8 shaped (time, sequences, height, "
                "width) like mnist_test_seq.npy, or (sequences, time, height, width, channels). "
                f"Received {array.dtype} {array.shape}")
        # Store as (N, T, H, W, C) without copying the memory map.
        self.array = array.transpose(1, 0, 2, 3)[..., None] if array.ndim == 4 else array
        super().__init__(cfg, [f"seq{i:06d}" for i in range(self.array.shape[0])])

    def own_channels(self, cfg):
        return int(self.array.shape[-1])

    def probe(self, item):
        return int(self.array.shape[1]), 0.0, None

    def load(self, item, size_of):
        indices = framelib.frame_indices(self.array.shape[1], float(self.cfg.frame_stride), 0,
                                         self.cfg.max_frames)
        return np.asarray(self.array[int(item[3:])][indices])


class VideoFiles(FileSource):
    """Video files (mp4, avi, mov, mkv, webm) decoded with OpenCV, ffmpeg as fallback."""

    kind = "video_files"
    footage = True
    has_rate = True
    noun = "video"

    def probe(self, item):
        info = framelib.probe_video(item)
        return info.frames, info.fps, (info.width, info.height)

    def load(self, item, size_of):
        c = self.cfg
        return framelib.decode_video(item, c.frame_stride, c.max_frames, fps=c.fps,
                                     size_of=size_of)


class FrameFolders(FileSource):
    """Folders of frame images, one folder per clip, frames in natural sort order."""

    kind = "frame_folders"
    footage = True
    noun = "frame folder"

    def probe(self, item):
        images, ignored = framelib.frame_folder_names(item)
        for name in ignored:
            log.warning("Ignoring %s in frame folder %s: not a png/jpg/bmp image.", name, item)
        first = framelib.read_image(os.path.join(item, images[0]))
        return len(images), 0.0, (first.shape[1], first.shape[0])

    def load(self, item, size_of):
        images, _ = framelib.frame_folder_names(item)
        indices = framelib.frame_indices(len(images), float(self.cfg.frame_stride), 0,
                                         self.cfg.max_frames)
        return framelib.decode_frame_folder(item, images, indices, size_of)


def _has_images(folder: str) -> bool:
    return any(n.lower().endswith(framelib.IMAGE_EXTENSIONS) for n in os.listdir(folder))


def resolve_channels(cfg: DataConfig) -> DataConfig:
    """`cfg` with data.channels=0 (auto) replaced by the source's own channel count."""
    return cfg if cfg.channels else open_source(cfg).cfg


def open_source(cfg: DataConfig) -> Source:
    """Returns the source that `cfg.source` names; its `cfg` has channels resolved.

    Raises:
        DataError: the path is missing, empty or of an unsupported kind.
    """
    spec = cfg.source
    if spec == "digits":
        return SyntheticDigits(cfg)
    if spec == "shapes":
        return SyntheticShapes(cfg)
    if not os.path.exists(spec):
        raise DataError(
            f"Data source {spec!r} does not exist: expected 'digits', 'shapes', or a path to "
            "a prepared dataset, a .npy, an MNIST file, a video file or a folder.")
    lower = spec.lower()
    if os.path.isfile(spec):
        if lower.endswith(".npy"):
            return MovingMNISTNpy(cfg)
        if lower.endswith((".npz", ".gz")) or "idx" in os.path.basename(lower):
            return MovingMNIST(cfg)
        if lower.endswith(framelib.VIDEO_EXTENSIONS):
            return VideoFiles(cfg, [spec])
        raise DataError(
            f"Data source {spec!r} is a file of an unsupported kind: expected .npy, .npz, "
            f"an idx (.gz) file or a video ({', '.join(framelib.VIDEO_EXTENSIONS)}).")
    if os.path.isfile(os.path.join(spec, MANIFEST_NAME)):
        from vidgen.data.prepared import PreparedSource
        return PreparedSource(cfg)
    entries = sorted(os.listdir(spec), key=framelib.natural_key)
    videos = [os.path.join(spec, n) for n in entries if n.lower().endswith(
        framelib.VIDEO_EXTENSIONS)]
    if videos:
        return VideoFiles(cfg, videos)
    folders = [os.path.join(spec, n) for n in entries if os.path.isdir(os.path.join(spec, n))]
    clip_folders = [f for f in folders if _has_images(f)]
    if clip_folders:
        return FrameFolders(cfg, clip_folders)
    if _has_images(spec):
        return FrameFolders(cfg, [spec])
    if any(glob.glob(os.path.join(spec, "*.tfrecord*"))):
        raise DataError(
            f"Folder {spec!r} holds TFRecord shards but no {MANIFEST_NAME}: the prepare step "
            "did not finish. Run `vidgen data prepare` again.")
    raise DataError(
        f"Folder {spec!r} holds no clips: expected video files, frame images, or one "
        f"sub-folder of frame images per clip. Received {len(entries)} other entries.")
