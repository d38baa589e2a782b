"""File sources: windows of `stored_length` frames cut from files or sequences.

Training windows overlap (`window_stride` apart), validation and test
windows do not (`eval_stride`). Whole items (a file, a sequence) go to one
split; with fewer than three usable items each one is cut in time into
train | gap | val | gap | test segments instead (`vidgen.data.time_split`).
Either way no frame of a test clip is ever seen in training, and a split
that would get fewer than `min_split_windows` windows is refused before any
frame is decoded (the plan and its checks: `vidgen.data.item_plan`).
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Optional

import numpy as np

from vidgen.config import DataConfig
from vidgen.data import frames as framelib
from vidgen.data import synthetic
from vidgen.data.item_plan import (
    ItemPlan,
    check_minimum,
    check_rates,
    joined,
    too_short,
)
from vidgen.data.source_base import SPLITS, Clip, Source, check_split
from vidgen.data.time_split import time_segments
from vidgen.errors import DataArgumentError, DataError

log = logging.getLogger(__name__)

# Frames between the starts of overlapping training windows of footage (data.window_stride=0).
FOOTAGE_STRIDE = 3


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
            raise DataArgumentError(
                f"{self.noun.capitalize()}s have no frame rate, so data.fps={cfg.fps:g} cannot "
                f"resample {cfg.source!r}: expected data.fps=0 for this source, so use "
                "{data.fps}=0 and {data.frame_stride}=N to keep every N-th frame.",
                "data.fps", "data.frame_stride")
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
        reasons: list[DataError] = []
        for item in self.items:
            try:
                frames, fps, size = self.probe(item)
                if self.footage and size and min(size) < c.frame_size:
                    suggest = max(4, min(size) // 4 * 4)
                    raise DataArgumentError(
                        f"{self.noun.capitalize()} {item!r} is {size[0]}x{size[1]}, smaller than "
                        f"the model's {c.frame_size}x{c.frame_size} frames: expected a shorter "
                        f"side of at least {c.frame_size} pixels (frames are not upscaled for "
                        f"the model), so use {{data.frame_size}}={suggest} or larger footage.",
                        "data.frame_size")
                kept = len(framelib.frame_indices(frames, self.step(fps, item), 0, c.max_frames))
                if kept < self.length:
                    raise too_short(c, self.noun, item, kept)
            except DataError as e:
                self._skip(item, "all", str(e))
                reasons.append(e)
                continue
            usable.append(ItemPlan(item, kept, frames, fps, {}))
        if not usable:
            if len(self.items) == 1:
                raise reasons[0]
            raise joined(
                f"None of the {len(self.items)} {self.noun}s of {c.source!r} is usable; the "
                "first reasons: ", reasons[:3])
        if self.has_rate and not c.fps:
            check_rates(c, usable)
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
        check_minimum(self, usable, mode)
        return usable

    def _time_segments(self, frames: int) -> dict[str, tuple[int, int]]:
        c = self.cfg
        return time_segments(frames, self.length, self.eval_stride, c.gap, c.val_fraction,
                             c.test_fraction)

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

    def required_splits(self) -> list[str]:
        """The splits that must get data.min_split_windows windows (a fraction above 0)."""
        c = self.cfg
        return [s for s, f in (("train", 1.0), ("val", c.val_fraction),
                               ("test", c.test_fraction)) if f > 0]

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
        short = [s for s in self.required_splits() if windows[s] < m]
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
