"""Reading prepared datasets: the manifest, the TFRecord shards and `PreparedSource`.

A prepared dataset (written by `vidgen.data.prepared.prepare`) is a folder of
`{split}-NNNNN.tfrecord.gz` shards of fixed-length uint8 clips and a
`manifest.json`; a folder without the manifest is unfinished and is not a
dataset.
"""

from __future__ import annotations

import json
import os
from typing import Any, Optional

from vidgen.config import DataConfig
from vidgen.data.source_base import Clip, Source, check_split
from vidgen.errors import DataError

# TensorFlow is imported inside the functions that read shards: the source
# factory (`vidgen.data.sources`) imports this module, and only a prepared
# dataset needs TensorFlow, not the built-in sources, videos or frame folders.

FORMAT = "vidgen-tfrecord-v1"
MANIFEST_NAME = "manifest.json"
COMPRESSION = "GZIP"


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


def stored_size(manifest: dict, split: str) -> int:
    """Side of the frames stored for `split` (manifests before per-split sizes: frame_size)."""
    return int(manifest["splits"][split].get("stored_size", manifest["frame_size"]))


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
    size, channels = stored_size(manifest, split), manifest["channels"]
    return ds.map(lambda r: parse_record(r, size, channels),
                  num_parallel_calls=tf.data.AUTOTUNE)


class PreparedSource(Source):
    """A prepared dataset read back as clips (for previews and evaluation)."""

    kind = "prepared"

    def __init__(self, cfg: DataConfig):
        self.manifest = read_manifest(cfg.source)
        super().__init__(cfg)

    def own_channels(self, cfg):
        return int(self.manifest["channels"])

    def stored_size(self, split):
        return stored_size(self.manifest, split)

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
