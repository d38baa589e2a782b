"""The plan of a file source: which item gives which windows, and why a plan is refused.

`vidgen.data.file_source.FileSource` makes the plan from the items' headers
before any frame is decoded; the checks here refuse it at once, each in one
sentence that says what was found, what was expected and which config keys
(`DataArgumentError`: `--set data.X=...` on a command line) would fix it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

from vidgen.config import DataConfig
from vidgen.data.source_base import SPLITS
from vidgen.data.time_split import time_split_frames_needed
from vidgen.errors import ArgumentError, DataArgumentError, DataError


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


def item_name(item: str) -> str:
    """The item's file or folder name, as messages show it."""
    return os.path.basename(item.rstrip(os.sep)) or item


def joined(head: str, reasons: Sequence[DataError]) -> DataArgumentError:
    """One error: `head`, then `reasons` joined, naming every argument they name."""
    templates = [e.template if isinstance(e, ArgumentError) else str(e) for e in reasons]
    arguments = dict.fromkeys(a for e in reasons if isinstance(e, ArgumentError)
                              for a in e.arguments)
    return DataArgumentError(head + " | ".join(templates), *arguments)


def too_short(cfg: DataConfig, noun: str, item: str, kept: int) -> DataArgumentError:
    """The error of an item with `kept` frames, fewer than one window of `cfg.stored_length`."""
    what = "data.clip_length" if cfg.clip_length else "data.context + data.horizon"
    keys = ("data.clip_length",) if cfg.clip_length else ("data.context", "data.horizon")
    fix = " / ".join(f"{{{key}}}=N" for key in keys)
    more = [f"data.frame_stride={cfg.frame_stride}"] if cfg.frame_stride > 1 else []
    more += [f"data.fps={cfg.fps:g}"] if cfg.fps else []
    more += [f"data.max_frames={cfg.max_frames}"] if cfg.max_frames else []
    keep = (f" or keep more frames (now {', '.join(more)})" if more else "")
    return DataArgumentError(
        f"{noun.capitalize()} {item!r} is too short: {kept} frames, expected at "
        f"least {what} = {cfg.stored_length}, so use {fix} for shorter windows{keep}.", *keys)


def check_rates(cfg: DataConfig, usable: Sequence[ItemPlan]) -> None:
    """Refuses videos of mixed frame rates (within 1 %) when data.fps does not resample them."""
    groups: dict[float, list[str]] = {}
    for p in usable:
        if p.fps <= 0:
            continue
        rate = next((r for r in groups if abs(r - p.fps) <= 0.01 * max(r, p.fps)), p.fps)
        groups.setdefault(rate, []).append(item_name(p.item))
    if len(groups) < 2:
        return
    listed = "; ".join(
        f"{rate:g} fps: {', '.join(names[:3])}"
        + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        for rate, names in sorted(groups.items()))
    raise DataArgumentError(
        f"The videos of {cfg.source!r} have mixed frame rates ({listed}): expected one "
        f"rate, so resample them all with {{data.fps}}=N (N at most {min(groups):g}).",
        "data.fps")


def check_minimum(source, usable: Sequence[ItemPlan], mode: str) -> None:
    """Refuses a plan that gives a split fewer than data.min_split_windows windows.

    Args:
        source: the `FileSource` whose plan this is (its strides, windows and noun).
        usable: the plan's items, their segments set.
        mode: "by_time" or "by_source", how the plan splits.
    """
    c = source.cfg
    m = c.min_split_windows
    length, noun = source.length, source.noun
    counts = {split: sum(len(source.starts(p, split)) for p in usable) for split in SPLITS}
    short = [s for s in source.required_splits() if counts[s] < m]
    if not short:
        return
    got = ", ".join(f"{s} {counts[s]}" for s in SPLITS)
    if mode == "by_time":
        needed = time_split_frames_needed(length, source.train_stride, source.eval_stride,
                                          c.gap, c.val_fraction, c.test_fraction, m)
        have = (f"{usable[0].frames} frames" if len(usable) == 1 else
                ", ".join(f"{item_name(p.item)} {p.frames}" for p in usable) + " frames")
        each = "" if len(usable) == 1 else f" per {noun}"
        raise DataArgumentError(
            f"{c.source!r} has {have} after resampling (data.fps={c.fps:g}, "
            f"data.frame_stride={c.frame_stride}) but its time split train | gap | val | "
            f"gap | test needs at least {needed} frames{each} to give every split "
            f"data.min_split_windows={m} window(s) of {length} frames with "
            f"data.val_fraction={c.val_fraction:g}, data.test_fraction={c.test_fraction:g} "
            f"and data.split_gap={c.gap} (windows: {got}), so use "
            "{data.val_fraction}=/{data.test_fraction}= (larger), {data.split_gap}= "
            "(smaller, 0 allowed), {data.fps}= (higher) or {data.frame_stride}= (lower), or "
            "{data.context}=/{data.horizon}= (shorter windows).", "data.val_fraction",
            "data.test_fraction", "data.split_gap", "data.fps", "data.frame_stride",
            "data.context", "data.horizon")
    split = short[0]
    assigned = [item_name(p.item) for p in usable if split in p.segments]
    fix = ("lower data.val_fraction/data.test_fraction" if split == "train"
           else f"raise data.{split}_fraction")
    raise DataArgumentError(
        f"Splitting {c.source!r} by {noun} gives the {split} split {counts[split]} "
        f"window(s) of {length} frames, expected at least data.min_split_windows={m} "
        f"({len(assigned)} of {len(usable)} usable {noun}s went to it"
        + (f": {', '.join(assigned[:5])}" if assigned else "")
        + f"; windows: {got}), so add {noun}s, {fix}, or cut every {noun} in time "
        "with {data.split_mode}=by_time.", "data.split_mode")
