"""Generated sources: clip `i` of a split is a pure function of (seed, split, i).

Their validation and test splits are fixed sets and their training split is
endless, so the training stream can be sharded across readers without
coordination.
"""

from __future__ import annotations

import abc
import itertools

import numpy as np

from vidgen.data import frames as framelib
from vidgen.data import synthetic
from vidgen.data.source_base import SPLITS, Clip, Source, check_split


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
