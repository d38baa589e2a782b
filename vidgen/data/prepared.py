"""Prepared datasets: sharded, GZIP-compressed TFRecord files plus a JSON manifest.

`prepare` converts any source into `OUT/{split}-NNNNN.tfrecord.gz` shards of
fixed-length uint8 clips and `OUT/manifest.json`. Every shard and the
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
from typing import Any, Optional

import numpy as np
from tqdm import tqdm

from vidgen.config import DataConfig
from vidgen.data.sources import (
    MANIFEST_NAME,
    SPLITS,
    Clip,
    GeneratedSource,
    Source,
    check_split,
    open_source,
)
from vidgen.errors import DataError
from vidgen.fileio import write_json_atomic

FORMAT = "vidgen-tfrecord-v1"
STATE_NAME = ".prepare-state.json"
COMPRESSION = "GZIP"
# Config fields that do not change what prepare writes.
_READ_ONLY_FIELDS = ("context", "horizon", "window_stride", "augment_flip", "shuffle_buffer")


def read_manifest(directory: str) -> dict[str, Any]:
    """Reads and checks `directory/manifest.json`."""
    path = os.path.join(directory, MANIFEST_NAME)
    try:
        with open(path) as f:
            manifest = json.load(f)
    except FileNotFoundError:
        raise DataError(
            f"{directory!r} is not a prepared dataset: {MANIFEST_NAME} is missing "
            "(an interrupted `vidgen data prepare` leaves none; run it again).") from None
    except json.JSONDecodeError as e:
        raise DataError(f"Manifest {path!r} is not valid JSON: {e}") from None
    if manifest.get("format") != FORMAT:
        raise DataError(
            f"Manifest {path!r} has format {manifest.get('format')!r}, expected {FORMAT!r}.")
    return manifest


def _fingerprint(cfg: DataConfig) -> dict[str, Any]:
    values = dataclasses.asdict(cfg)
    for name in _READ_ONLY_FIELDS:
        values.pop(name)
    values["clip_length"] = cfg.stored_length
    return values


def _serialize(clip: Clip) -> bytes:
    import tensorflow as tf

    frames = np.ascontiguousarray(clip.frames, np.uint8)
    feature = {
        "frames": tf.train.Feature(bytes_list=tf.train.BytesList(value=[frames.tobytes()])),
        "shape": tf.train.Feature(int64_list=tf.train.Int64List(value=list(frames.shape))),
        "id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[clip.id.encode()])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def parse_record(record, frame_size: int, channels: int):
    """Decodes one serialized clip into uint8 (T, frame_size, frame_size, channels)."""
    import tensorflow as tf

    spec = {
        "frames": tf.io.FixedLenFeature([], tf.string),
        "shape": tf.io.FixedLenFeature([4], tf.int64),
        "id": tf.io.FixedLenFeature([], tf.string),
    }
    example = tf.io.parse_single_example(record, spec)
    frames = tf.io.decode_raw(example["frames"], tf.uint8)
    frames = tf.reshape(frames, tf.cast(example["shape"], tf.int32))
    return tf.ensure_shape(frames, [None, frame_size, frame_size, channels])


def _segments(clip: Clip, length: int) -> list[Clip]:
    """Cuts a clip into non-overlapping segments of `length` frames (the rest is dropped)."""
    n = len(clip.frames) // length
    if n == 1 and len(clip.frames) == length:
        return [clip]
    return [Clip(f"{clip.id}#{i * length}", clip.frames[i * length:(i + 1) * length])
            for i in range(n)]


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
        import tensorflow as tf

        name = f"{self.split}-{len(self.shards):05d}.tfrecord.gz"
        final = os.path.join(self.out, name)
        if name not in self.keep:
            tmp = final + ".tmp"
            with tf.io.TFRecordWriter(tmp, options=COMPRESSION) as writer:
                for record in self.buffer:
                    writer.write(record)
            os.replace(tmp, final)
        self.shards.append({"file": name, "clips": len(self.buffer)})
        self.buffer = []


def prepare(cfg: DataConfig, out: str, overwrite: bool = False,
            progress: bool = True) -> dict[str, Any]:
    """Converts the source `cfg.source` into a prepared dataset in `out`.

    Args:
        cfg: data configuration; `source`, `frame_size`, `channels`,
            `clip_length` (or context + horizon) and the split settings
            decide what is written.
        out: output directory (created).
        overwrite: replace a finished dataset made with other settings.
        progress: show a progress bar per split.

    Returns:
        The manifest.

    Raises:
        DataError: for an unusable source, or `out` holding a different
            dataset without `overwrite`.
    """
    cfg.validate()
    source = open_source(cfg)
    if os.path.isfile(os.path.join(os.path.abspath(cfg.source), MANIFEST_NAME)) and (
            os.path.abspath(cfg.source) == os.path.abspath(out)):
        raise DataError(f"Cannot prepare {out!r} from itself.")
    os.makedirs(out, exist_ok=True)
    fingerprint = _fingerprint(cfg)
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
    state_path = os.path.join(out, STATE_NAME)
    keep: set[str] = set()
    try:
        with open(state_path) as f:
            same = json.load(f).get("fingerprint") == fingerprint
    except (OSError, json.JSONDecodeError):
        same = False
    for path in glob.glob(os.path.join(out, "*.tfrecord.gz*")):
        if same and path.endswith(".tfrecord.gz") and not overwrite:
            keep.add(os.path.basename(path))
        else:
            os.remove(path)
    write_json_atomic(state_path, {"fingerprint": fingerprint}, sort_keys=True)

    splits: dict[str, Any] = {}
    for split in SPLITS:
        writer = _ShardWriter(out, split, cfg.shard_size, keep)
        limit = cfg.train_clips if isinstance(source, GeneratedSource) else None
        total = source.count(split) if isinstance(source, GeneratedSource) else None
        clips = source.clips(split, limit=limit)
        sources = 0
        bar = tqdm(clips, total=total, desc=f"prepare {split}", unit="clip",
                   disable=not progress, leave=False)
        for clip in bar:
            sources += 1
            for segment in _segments(clip, cfg.stored_length):
                writer.add(segment)
        writer.flush()
        splits[split] = {"clips": sum(s["clips"] for s in writer.shards),
                         "sources": sources, "shards": writer.shards}
    if splits["train"]["clips"] == 0:
        raise DataError(
            f"Source {cfg.source!r} gave no training clip of {cfg.stored_length} frames.")
    manifest = {
        "format": FORMAT,
        "frame_size": cfg.frame_size,
        "channels": cfg.channels,
        "clip_length": cfg.stored_length,
        "splits": splits,
        "source": source.describe(),
        "skipped": source.skipped,
        "fingerprint": fingerprint,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "vidgen_version": _version(),
    }
    write_json_atomic(manifest_path, manifest, sort_keys=True)
    os.remove(state_path)
    return manifest


def _version() -> str:
    from vidgen import __version__

    return __version__


def shard_files(directory: str, split: str, manifest: Optional[dict] = None) -> list[str]:
    """The shard paths of `split`, checked to exist."""
    check_split(split)
    manifest = manifest or read_manifest(directory)
    files = [os.path.join(directory, s["file"]) for s in manifest["splits"][split]["shards"]]
    missing = [f for f in files if not os.path.isfile(f)]
    if missing:
        raise DataError(
            f"Prepared dataset {directory!r} is incomplete: shard {missing[0]!r} listed in "
            f"its manifest is missing.")
    return files


def clip_dataset(directory: str, split: str, manifest: dict, num_shards: int = 1,
                 shard_index: int = 0, interleave: bool = False):
    """tf.data of uint8 clips from a prepared dataset, shard files divided among readers.

    Clips come in the order they were written unless `interleave` reads
    several shards at once (faster, and mixes clips for training).
    """
    import tensorflow as tf

    files = shard_files(directory, split, manifest)
    if not files:
        raise DataError(f"Prepared dataset {directory!r} has no {split} clips.")
    ds = tf.data.Dataset.from_tensor_slices(files)
    if num_shards > 1:
        if len(files) >= num_shards:
            ds = ds.shard(num_shards, shard_index)
    ds = ds.interleave(
        lambda f: tf.data.TFRecordDataset(f, compression_type=COMPRESSION),
        cycle_length=min(4, len(files)) if interleave else 1, num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True)
    if num_shards > 1 and len(files) < num_shards:
        # Too few files to give each reader its own: divide the records instead.
        ds = ds.shard(num_shards, shard_index)
    size, channels = manifest["frame_size"], manifest["channels"]
    return ds.map(lambda r: parse_record(r, size, channels),
                  num_parallel_calls=tf.data.AUTOTUNE)


class PreparedSource(Source):
    """A prepared dataset read back as clips (for previews and evaluation)."""

    kind = "prepared"

    def __init__(self, cfg: DataConfig):
        super().__init__(cfg)
        self.manifest = read_manifest(cfg.source)

    def clips(self, split, num_shards=1, shard_index=0, limit=None):
        check_split(split)
        ds = clip_dataset(self.cfg.source, split, self.manifest, num_shards, shard_index)
        for i, frames in enumerate(ds.as_numpy_iterator()):
            if limit is not None and i >= limit:
                return
            yield Clip(f"{split}-{i}", frames)

    def describe(self):
        return {**super().describe(), "manifest": {
            k: self.manifest[k] for k in ("frame_size", "channels", "clip_length")}}
