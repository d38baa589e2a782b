"""Clip sources: every kind of input, as uint8 clips shaped (time, height, width, channels).

A source knows its splits. Generated sources (synthetic digits and shapes,
Moving MNIST built from an MNIST file) make clip `i` of a split as a pure
function of (seed, split, i), and their training split is endless. File
sources (a Moving MNIST `.npy`, video files, frame folders) assign whole
sources (a file, a sequence) to one split; with fewer than three sources
each one is cut in time into disjoint train / val / test segments instead.
Either way no frame of a test clip is ever seen in training.

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
from collections.abc import Iterator
from typing import Any, Optional

import numpy as np

from vidgen.config import DataConfig
from vidgen.data import frames as framelib
from vidgen.data import synthetic
from vidgen.errors import DataError

log = logging.getLogger("vidgen.data")

SPLITS = ("train", "val", "test")
BUILTIN_SOURCES = ("digits", "shapes")
MANIFEST_NAME = "manifest.json"


@dataclasses.dataclass(frozen=True)
class Clip:
    """One clip: an id naming where it came from, and uint8 frames (T, H, W, C)."""

    id: str
    frames: np.ndarray


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise DataError(f"split must be one of {', '.join(SPLITS)}. Received: {split!r}")


class Source(abc.ABC):
    """A supply of clips for the train, val and test splits."""

    kind: str = "source"

    def __init__(self, cfg: DataConfig):
        self.cfg = cfg
        self.skipped: list[dict[str, str]] = []

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


class FileSource(Source):
    """Clips read from a list of items (files, sequences), split by item."""

    min_items_for_source_split = 3

    def __init__(self, cfg: DataConfig, items: list[str]):
        super().__init__(cfg)
        if not items:
            raise DataError(f"Data source {cfg.source!r} holds no clips.")
        self.items = items
        self.split_mode = ("by_source" if len(items) >= self.min_items_for_source_split
                           else "by_time")
        self.assignment = self._assign(items) if self.split_mode == "by_source" else {}
        self._good: dict[str, int] = {}

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

    @abc.abstractmethod
    def load(self, item: str) -> np.ndarray:
        """Decodes one item as uint8 (T, H, W, C), C in {1, 3}, at its own size."""

    def split_items(self, split: str) -> list[str]:
        if self.split_mode == "by_time":
            return list(self.items)
        return [i for i in self.items if self.assignment[i] == split]

    def _segment(self, frames: np.ndarray, split: str) -> np.ndarray:
        if self.split_mode == "by_source":
            return frames
        t = len(frames)
        a = int(t * (1.0 - self.cfg.val_fraction - self.cfg.test_fraction))
        b = int(t * (1.0 - self.cfg.test_fraction))
        return frames[{"train": slice(0, a), "val": slice(a, b), "test": slice(b, t)}[split]]

    def clips(self, split, num_shards=1, shard_index=0, limit=None):
        check_split(split)
        items = self.split_items(split)[shard_index::num_shards]
        good = 0
        for item in items:
            try:
                frames = self.load(item)
                rng = np.random.default_rng([self.cfg.seed, synthetic.stable_hash(item)])
                frames = framelib.conform(frames, self.cfg.frame_size, self.cfg.channels,
                                          self.cfg.crop, rng)
            except DataError as e:
                self._skip(item, split, str(e))
                continue
            frames = self._segment(frames, split)
            if len(frames) < self.cfg.window:
                whole = "" if self.split_mode == "by_source" else f" ({split} segment)"
                self._skip(item, split,
                           f"too short{whole}: {len(frames)} frames, expected at least "
                           f"context + horizon = {self.cfg.window}")
                continue
            good += 1
            yield Clip(item, frames)
        self._good[split] = good
        if items and not good:
            reasons = "; ".join(f"{s['item']}: {s['reason']}" for s in self.skipped[-3:])
            if not any(self._good.values()):
                raise DataError(
                    f"Every clip of {self.cfg.source!r} read so far was unusable "
                    f"({len(items)} tried for {split}). Last reasons: {reasons}")
            log.warning("The %s split of %s has no usable clip (%d tried).", split,
                        self.cfg.source, len(items))

    def _skip(self, item: str, split: str, reason: str) -> None:
        entry = {"item": item, "split": split, "reason": reason}
        if entry not in self.skipped:
            log.warning("Skipping %s (%s): %s", item, split, reason)
            self.skipped.append(entry)

    def describe(self):
        return {**super().describe(), "items": len(self.items), "split_mode": self.split_mode}


class MovingMNISTNpy(FileSource):
    """The standard Moving MNIST file `mnist_test_seq.npy`: uint8 (20, N, 64, 64).

    Also accepts vidgen's own layout, uint8 (N, T, H, W, C). Each sequence is
    one source for the split.
    """

    kind = "moving_mnist_npy"

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

    def load(self, item):
        return np.asarray(self.array[int(item[3:])])


class VideoFiles(FileSource):
    """Video files (mp4, avi, mov, mkv, webm) decoded with OpenCV, ffmpeg as fallback."""

    kind = "video_files"

    def load(self, item):
        return framelib.read_video(item, self.cfg.frame_stride, self.cfg.max_frames)


class FrameFolders(FileSource):
    """Folders of frame images, one folder per clip, frames in natural sort order."""

    kind = "frame_folders"

    def load(self, item):
        frames, ignored = framelib.read_frame_folder(item)
        for name in ignored:
            log.warning("Ignoring %s in frame folder %s: not a png/jpg/bmp image.", name, item)
        return frames[::self.cfg.frame_stride]


def _has_images(folder: str) -> bool:
    return any(n.lower().endswith(framelib.IMAGE_EXTENSIONS) for n in os.listdir(folder))


def open_source(cfg: DataConfig) -> Source:
    """Returns the source that `cfg.source` names.

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
