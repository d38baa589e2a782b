"""Time splits: one clip cut in time into train | gap | val | gap | test segments.

A file source with fewer than three usable items cannot give each split
whole items, so it cuts every item in time instead; the gaps keep the frames
of a test window out of every training window.
"""

from __future__ import annotations

import numpy as np

from vidgen.data.source_base import SPLITS


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
