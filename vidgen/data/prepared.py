"""Prepared datasets: sharded, GZIP-compressed TFRecord files plus a JSON manifest.

`prepare` converts any source into `OUT/{split}-NNNNN.tfrecord.gz` shards of
fixed-length uint8 clips and `OUT/manifest.json`. File sources are planned
first (`FileSource.plan`): a split that would get too few windows stops
`prepare` before anything is written. The manifest records, per split, the
clips, the windows the pipeline cuts from them and the side of the stored
frames (training clips of footage are stored larger, for the zoom
augmentation), and how many decoded frames ended in no window. Every shard and the
manifest are written under a temporary name and renamed when complete, and
the manifest comes last: a directory without a manifest is unfinished and
no reader takes it for a dataset. Rerunning the same command keeps the
shards already completed and writes the rest.

Example:

    vidgen data prepare digits --out data/digits64
    vidgen train --data data/digits64
"""

from __future__ import annotations

import dataclasses
import datetime
import glob
import json
import os
from typing import Any

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from vidgen import __version__, fileio
from vidgen.config import DataConfig
from vidgen.data.file_source import FileSource
from vidgen.data.prepared_source import COMPRESSION, FORMAT, MANIFEST_NAME, read_manifest
from vidgen.data.source_base import SPLITS, Clip, Source
from vidgen.data.sources import open_source
from vidgen.errors import DataError
from vidgen.fileio import write_json_atomic

# The reading half (`read_manifest`, `clip_dataset`, `stored_size`, `PreparedSource`)
# lives in `vidgen.data.prepared_source`.

STATE_NAME = ".prepare-state.json"
# Config fields that do not change what prepare writes.
_READ_ONLY_FIELDS = ("context", "horizon", "window_stride", "augment_flip", "augment_pan",
                     "augment_reverse", "shuffle_buffer", "min_split_windows")
# Fields that only file sources read; the fingerprint of other sources leaves them
# out, so a dataset prepared before they existed is still recognised.
_FILE_SOURCE_FIELDS = ("eval_stride", "split_mode", "split_gap", "fps", "augment_zoom")

def _fingerprint(source: Source) -> dict[str, Any]:
    cfg = source.cfg
    values = dataclasses.asdict(cfg)
    for name in _READ_ONLY_FIELDS + _FILE_SOURCE_FIELDS:
        values.pop(name)
    values["clip_length"] = cfg.stored_length
    if isinstance(source, FileSource):
        values.update(window_stride=source.train_stride, eval_stride=source.eval_stride,
                      split_mode=cfg.split_mode, split_gap=cfg.gap, fps=cfg.fps,
                      stored_size=source.stored_size("train"))
    return values


def _serialize(clip: Clip) -> bytes:
    frames = np.ascontiguousarray(clip.frames, np.uint8)
    feature = {
        "frames": tf.train.Feature(bytes_list=tf.train.BytesList(value=[frames.tobytes()])),
        "shape": tf.train.Feature(int64_list=tf.train.Int64List(value=list(frames.shape))),
        "id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[clip.id.encode()])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


class _ShardWriter:
    """Writes one split's clips into shards of `shard_size`, each atomically."""

    def __init__(self, out: str, split: str, shard_size: int, keep: set[str]):
        self.out, self.split, self.shard_size, self.keep = out, split, shard_size, keep
        self.buffer: list[bytes] = []
        self.shards: list[dict[str, Any]] = []

    def add(self, clip: Clip) -> None:
        self.buffer.append(_serialize(clip))
        if len(self.buffer) >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        if not self.buffer:
            return
        name = f"{self.split}-{len(self.shards):05d}.tfrecord.gz"
        final = os.path.join(self.out, name)
        if name not in self.keep:
            # A PID-unique temporary name: shards of another process never collide.
            with fileio.atomic_path(final, suffix=".tfrecord.gz") as tmp:
                with tf.io.TFRecordWriter(tmp, options=COMPRESSION) as writer:
                    for record in self.buffer:
                        writer.write(record)
        self.shards.append({"file": name, "clips": len(self.buffer)})
        self.buffer = []


def prepare(cfg: DataConfig, out: str, overwrite: bool = False,
            progress: bool = True) -> dict[str, Any]:
    """Converts the source `cfg.source` into a prepared dataset in `out`.

    Args:
        cfg: data configuration; `source`, `frame_size`, `channels`,
            `clip_length` (or context + horizon), the window strides and
            the split settings decide what is written.
        out: output directory (created).
        overwrite: replace a finished dataset made with other settings.
        progress: show a progress bar.

    Returns:
        The manifest: per split `clips`, `windows` (what the pipeline cuts
        from them), `sources`, `stored_size` and `shards`; `frames` counts
        the frames decoded, kept after resampling, in windows and dropped.

    Raises:
        DataError: for an unusable source (before anything is written when
            a split would get too few windows), or `out` holding a
            different dataset without `overwrite`.
    """
    cfg.validate()
    source = open_source(cfg)
    cfg = source.cfg
    if os.path.isfile(os.path.join(os.path.abspath(cfg.source), MANIFEST_NAME)) and (
            os.path.abspath(cfg.source) == os.path.abspath(out)):
        raise DataError(f"Cannot prepare {out!r} from itself.")
    if isinstance(source, FileSource):
        source.plan  # noqa: B018 - refuses a source with too few windows before writing
    fingerprint = _fingerprint(source)
    # One writer per folder: a second `prepare` into `out` fails instead of mixing shards.
    with fileio.exclusive_lock(out, flag="--out", what="vidgen data prepare"):
        return _write(source, cfg, out, fingerprint, overwrite, progress)


def _write(source, cfg: DataConfig, out: str, fingerprint: str, overwrite: bool,
           progress: bool) -> dict[str, Any]:
    """The writing half of `prepare`, under the folder's lock."""
    manifest_path = os.path.join(out, MANIFEST_NAME)
    if os.path.isfile(manifest_path):
        existing = read_manifest(out)
        if existing.get("fingerprint") == fingerprint and not overwrite:
            return existing
        if not overwrite:
            raise DataError(
                f"{out!r} already holds a prepared dataset made with other settings; "
                "pass --overwrite to replace it or choose another --out.")
        os.remove(manifest_path)
    os.makedirs(out, exist_ok=True)
    state_path = os.path.join(out, STATE_NAME)
    keep: set[str] = set()
    try:
        with open(state_path) as f:
            same = json.load(f).get("fingerprint") == fingerprint
    except (OSError, json.JSONDecodeError):
        same = False
    for path in glob.glob(os.path.join(out, "*.tfrecord.gz*")):
        # A finished shard of the same settings is kept; temporary files of a killed
        # writer (NAME.tmp-PID-*.tfrecord.gz) are removed.
        if same and ".tmp-" not in path and path.endswith(".tfrecord.gz") and not overwrite:
            keep.add(os.path.basename(path))
        else:
            os.remove(path)
    write_json_atomic(state_path, {"fingerprint": fingerprint}, sort_keys=True)

    writers = {split: _ShardWriter(out, split, cfg.shard_size, keep) for split in SPLITS}
    sources: dict[str, set[str]] = {split: set() for split in SPLITS}
    bar = tqdm(source.all_clips(), total=source.planned_clips(), desc="prepare", unit="clip",
               disable=not progress, leave=False)
    stored, last = 0, None
    for split, clip in bar:
        if last not in (None, split) and not isinstance(source, FileSource):
            # Split after split: the finished split's last shard is complete now.
            writers[last].flush()
        last = split
        writers[split].add(clip)
        sources[split].add(clip.source or clip.id)
        stored += len(clip.frames)
    per_window = cfg.stored_length // cfg.window
    splits: dict[str, Any] = {}
    for split, writer in writers.items():
        writer.flush()
        clips = sum(s["clips"] for s in writer.shards)
        splits[split] = {"clips": clips, "windows": clips * per_window,
                         "sources": len(sources[split]),
                         "stored_size": source.stored_size(split), "shards": writer.shards}
    if splits["train"]["clips"] == 0:
        raise DataError(
            f"Source {cfg.source!r} gave no training clip of {cfg.stored_length} frames.")
    if isinstance(source, FileSource):
        source.check_written({s: v["windows"] for s, v in splits.items()})
        frames = dict(source.frame_counts)
    else:
        frames = {"decoded": stored, "kept": stored, "in_windows": stored, "dropped": 0}
    manifest = {
        "format": FORMAT,
        "frame_size": cfg.frame_size,
        "channels": cfg.channels,
        "clip_length": cfg.stored_length,
        "splits": splits,
        "frames": frames,
        "source": source.describe(),
        "skipped": source.skipped,
        "fingerprint": fingerprint,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "vidgen_version": __version__,
    }
    write_json_atomic(manifest_path, manifest, sort_keys=True)
    os.remove(state_path)
    return manifest
