"""Clip sources: every kind of input, as uint8 clips shaped (time, height, width, channels).

`open_source` returns the source a `DataConfig` names:

- "digits", "shapes": synthetic clips rendered on the fly
  (`vidgen.data.generated`);
- an MNIST file (idx, `.gz`, keras `mnist.npz`) or a Moving MNIST `.npy`
  (`vidgen.data.mnist`);
- a video file, a folder of videos, a folder of frame images or a folder of
  such folders (`vidgen.data.footage`);
- a prepared dataset, a folder with a `manifest.json`
  (`vidgen.data.prepared_source`).

A source knows its splits (`vidgen.data.source_base.Source`). Generated
sources make clip `i` of a split as a pure function of (seed, split, i), and
their training split is endless. File sources yield windows of
`stored_length` frames, split by whole file or sequence, or in time
(`vidgen.data.time_split`), so that no frame of a test clip is ever seen in
training (`vidgen.data.file_source`).

Example:

    from vidgen.config import DataConfig
    from vidgen.data.sources import open_source

    source = open_source(DataConfig(source="videos/"))
    for clip in source.clips("val"):
        print(clip.id, clip.frames.shape)
"""

from __future__ import annotations

import glob
import os

from vidgen.config import DataConfig
from vidgen.data import frames as framelib
from vidgen.data.footage import FrameFolders, VideoFiles
from vidgen.data.generated import SyntheticDigits, SyntheticShapes
from vidgen.data.mnist import MovingMNIST, MovingMNISTNpy
from vidgen.data.prepared_source import MANIFEST_NAME, PreparedSource
from vidgen.data.source_base import Source
from vidgen.errors import DataError

BUILTIN_SOURCES = ("digits", "shapes")


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
