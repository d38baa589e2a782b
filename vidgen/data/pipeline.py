"""The tf.data input pipeline: clips -> windows -> (context, target) batches.

The order follows the house style (decode -> window -> shuffle -> repeat ->
map(AUTOTUNE) -> batch(drop_remainder=True) -> prefetch) with one measured
exception: normalisation to float32 happens after batching, see
`make_dataset`. Each transform below is a pure function of tensors, usable
eagerly and inside `Dataset.map`.

Where windows come from: a source (or `prepare`) cuts long clips into
windows of `stored_length` frames, overlapping for training
(`data.window_stride`), disjoint for validation and test; this pipeline cuts
each stored clip into consecutive, non-overlapping windows of context +
horizon frames (one per clip with the default `clip_length=0`). Training
clips of footage are stored larger than `frame_size`: each training window
gets a random zoom crop (`random_zoom_crop`), other splits are resized whole.

Example:

    from vidgen.data.pipeline import make_dataset
    from vidgen.presets import get_preset

    ds = make_dataset(get_preset("quick"), "train")
    context, target = next(iter(ds))   # (16, 10, 64, 64, 1), (16, 10, 64, 64, 1)
"""

from __future__ import annotations

import os
from typing import Optional

import tensorflow as tf

from vidgen.config import Config
from vidgen.data import prepared_source
from vidgen.data.file_source import FileSource
from vidgen.data.generated import GeneratedSource
from vidgen.data.prepared_source import MANIFEST_NAME
from vidgen.data.source_base import check_split
from vidgen.data.sources import open_source
from vidgen.errors import DataArgumentError, DataError


def window_starts(num_frames, length: int, stride: int):
    """First frame of every window of `length` frames, `stride` apart, inside a clip."""
    return tf.range(0, tf.maximum(num_frames - length + 1, 0), stride)


def windows(clip, length: int, stride: int) -> tf.data.Dataset:
    """A dataset of the windows of one clip (uint8 (T, H, W, C) -> (length, H, W, C))."""
    starts = window_starts(tf.shape(clip)[0], length, stride)
    return tf.data.Dataset.from_tensor_slices(starts).map(lambda s: clip[s:s + length])


def normalize(clip):
    """uint8 frames -> float32 in [0, 1]."""
    return tf.cast(clip, tf.float32) / 255.0


def random_flip(clip, seed):
    """Flips every frame of a clip left-right together, with probability 1/2.

    Args:
        clip: (T, H, W, C).
        seed: int32 pair for `tf.random.stateless_uniform`.
    """
    flip = tf.random.stateless_uniform([], seed=seed) < 0.5
    return tf.cond(flip, lambda: tf.reverse(clip, axis=[2]), lambda: clip)


def _to_uint8(frames):
    return tf.cast(tf.clip_by_value(tf.round(frames), 0.0, 255.0), tf.uint8)


def zoom_range(stored: int, size: int, zoom: float) -> tuple[int, int]:
    """Smallest and largest side of the square crops `random_zoom_crop` takes."""
    return max(size, min(stored, int(round(stored / (1.0 + zoom))))), stored


def random_zoom_crop(clip, size: int, zoom: float, seed):
    """A random square crop, the same for every frame, resized to `size` x `size`.

    The crop side is uniform in `zoom_range(S, size, zoom)` for stored frames
    of side S (a zoom of up to S / size), its position uniform; resizing is
    bilinear with antialiasing. The output shape is static.

    Args:
        clip: uint8 (T, S, S, C) with a static S >= size.
        size: output side.
        zoom: the largest crop is S, the smallest S / (1 + zoom) (at least `size`).
        seed: int32 pair for the stateless random ops.

    Returns:
        uint8 (T, size, size, C).
    """
    stored = int(clip.shape[1])
    low, high = zoom_range(stored, size, zoom)
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int32), 3)
    side = tf.random.stateless_uniform([], seeds[0], minval=low, maxval=high + 1,
                                       dtype=tf.int32)
    room = tf.cast(stored - side + 1, tf.float32)
    top = tf.cast(tf.random.stateless_uniform([], seeds[1]) * room, tf.int32)
    left = tf.cast(tf.random.stateless_uniform([], seeds[2]) * room, tf.int32)
    crop = clip[:, top:top + side, left:left + side]
    out = tf.image.resize(crop, [size, size], method="bilinear", antialias=True)
    return tf.ensure_shape(_to_uint8(out), [clip.shape[0], size, size, clip.shape[3]])


def random_pan_crop(clip, size: int, zoom: float, pan: float, seed):
    """`random_zoom_crop` whose crop moves at a random constant velocity: a camera pan.

    The velocity is uniform in [-pan, pan] output pixels per frame on each
    axis, reduced where the stored frame leaves too little room for the whole
    window's path; the start is uniform among the positions that keep every
    frame's crop inside the stored frame. Sampling is bilinear at sub-pixel
    positions (`tf.image.crop_and_resize`). The output shape is static.

    Args:
        clip: uint8 (T, S, S, C) with a static S >= size.
        size: output side.
        zoom: see `random_zoom_crop`.
        pan: largest speed, in output pixels per frame.
        seed: int32 pair for the stateless random ops.

    Returns:
        uint8 (T, size, size, C).
    """
    length, stored = int(clip.shape[0]), int(clip.shape[1])
    low, high = zoom_range(stored, size, zoom)
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int32), 4)
    side = tf.random.stateless_uniform([], seeds[0], minval=float(low), maxval=float(high))
    room = float(stored) - side                         # stored pixels the crop can travel
    steps = float(max(length - 1, 1))
    # Output pixels per frame -> stored pixels per frame, bounded by the room.
    limit = tf.minimum(pan * side / size, room / steps)
    velocity = tf.random.stateless_uniform([2], seeds[1], minval=-1.0, maxval=1.0) * limit
    travel = tf.abs(velocity) * steps
    start = tf.random.stateless_uniform([2], seeds[2]) * (room - travel)
    start = start + tf.maximum(-velocity * steps, 0.0)
    t = tf.range(length, dtype=tf.float32)[:, None]
    corner = start[None, :] + t * velocity[None, :]       # (T, 2): top, left in pixels
    scale = float(stored - 1)
    boxes = tf.concat([corner, corner + side - 1.0], axis=1) / scale
    out = tf.image.crop_and_resize(tf.cast(clip, tf.float32), boxes,
                                   tf.range(length, dtype=tf.int32), [size, size])
    return tf.ensure_shape(_to_uint8(out), [length, size, size, clip.shape[3]])


def random_reverse(clip, seed):
    """Plays a window backwards with probability 1/2."""
    back = tf.random.stateless_uniform([], seed=seed) < 0.5
    return tf.cond(back, lambda: tf.reverse(clip, axis=[0]), lambda: clip)


def resize_clip(clip, size: int):
    """Resizes every frame of a uint8 (T, S, S, C) clip to (size, size), antialiased."""
    out = tf.image.resize(clip, [size, size], method="bilinear", antialias=True)
    return tf.ensure_shape(_to_uint8(out), [clip.shape[0], size, size, clip.shape[3]])


def augment(clip, seed, size: int, zoom: float, flip: bool, pan: float = 0.0,
            reverse: bool = False):
    """Training augmentation of one window: zoom (and pan) crop to `size`, flip, reverse.

    Args:
        clip: uint8 (T, S, S, C), S static.
        seed: int32 pair; the flip uses it as `random_flip` does, the crop a
            value derived from it.
        size: output side.
        zoom: see `random_zoom_crop`.
        flip: also apply `random_flip`.
        pan: largest synthetic camera speed (`random_pan_crop`; 0: a still crop).
        reverse: also apply `random_reverse`.
    """
    if int(clip.shape[1]) != size:
        crop_seed = tf.random.experimental.stateless_fold_in(seed, 1)
        clip = (random_pan_crop(clip, size, zoom, pan, crop_seed) if pan
                else random_zoom_crop(clip, size, zoom, crop_seed))
    if reverse:
        clip = random_reverse(clip, tf.random.experimental.stateless_fold_in(seed, 2))
    return random_flip(clip, seed) if flip else clip


def split_context_batch(clips, context: int):
    """A batch of windows (B, context + horizon, ...) -> (context frames, target frames)."""
    return clips[:, :context], clips[:, context:]


def _clip_dataset(cfg: Config, split: str, num_shards: int, shard_index: int):
    """(dataset of uint8 stored clips of `split`, side of their frames)."""
    data = cfg.data
    source_path = data.source
    if os.path.isdir(source_path) and os.path.isfile(os.path.join(source_path, MANIFEST_NAME)):
        manifest = prepared_source.read_manifest(source_path)
        found = (manifest["frame_size"], manifest["channels"])
        if found[0] != data.frame_size or (data.channels and found[1] != data.channels):
            raise DataArgumentError(
                f"Prepared dataset {source_path!r} holds {found[0]}x{found[0]} frames with "
                f"{found[1]} channel(s); the config expects {data.frame_size}x{data.frame_size} "
                f"with {data.channels or found[1]}, so use {{data.frame_size}}={found[0]} "
                f"{{data.channels}}={found[1]} (or 0: the dataset's) or prepare it again.",
                "data.frame_size", "data.channels")
        if manifest["clip_length"] < data.window:
            raise DataError(
                f"Prepared dataset {source_path!r} stores clips of {manifest['clip_length']} "
                f"frames; context + horizon = {data.window} needs longer ones. Prepare it "
                f"again with data.clip_length={data.window} or more.")
        ds = prepared_source.clip_dataset(source_path, split, manifest, num_shards, shard_index,
                                   interleave=split == "train")
        return ds, prepared_source.stored_size(manifest, split), manifest["channels"]
    source = open_source(data)
    if isinstance(source, FileSource):
        source.plan  # noqa: B018 - a split with too few windows fails here, not mid-training
    size, channels = source.stored_size(split), source.cfg.channels
    signature = tf.TensorSpec((None, size, size, channels), tf.uint8)
    # Generated sources make clip i from (seed, split, i): each reader generates only
    # its own clips instead of generating everything and discarding the rest.
    generated = isinstance(source, GeneratedSource)

    def generate():
        shards = (num_shards, shard_index) if generated else (1, 0)
        for clip in source.clips(split, *shards):
            yield clip.frames

    ds = tf.data.Dataset.from_generator(generate, output_signature=signature)
    if num_shards > 1 and not generated:
        ds = ds.shard(num_shards, shard_index)
    return ds, size, channels


def make_dataset(cfg: Config, split: str,
                 input_context: Optional[tf.distribute.InputContext] = None,
                 batch_size: Optional[int] = None, shuffle: Optional[bool] = None,
                 repeat: Optional[bool] = None) -> tf.data.Dataset:
    """Builds the (context, target) dataset of one split.

    Args:
        cfg: the experiment config; `cfg.data` picks the source and the
            window, `cfg.train.batch_size` is the global batch size.
        split: "train", "val" or "test".
        input_context: from `strategy.distribute_datasets_from_function`;
            the clips are divided among input pipelines and the batch is
            the per-replica share of the global batch.
        batch_size: overrides `cfg.train.batch_size` (global).
        shuffle: defaults to True for "train" only.
        repeat: defaults to True for "train" only.

    Returns:
        A dataset of `(context, target)` float32 tensors in [0, 1] shaped
        `(batch, context, S, S, C)` and `(batch, horizon, S, S, C)`. Training
        batches are always full (`drop_remainder=True`); evaluation keeps the
        last partial batch so every held-out clip is scored.

    Raises:
        DataError: for a missing or unusable source or a mismatched
            prepared dataset.
    """
    check_split(split)
    data = cfg.data
    training = split == "train"
    shuffle = training if shuffle is None else shuffle
    repeat = training if repeat is None else repeat
    global_batch = batch_size or cfg.train.batch_size
    num_shards, shard_index = 1, 0
    per_replica = global_batch
    if input_context is not None:
        num_shards = input_context.num_input_pipelines
        shard_index = input_context.input_pipeline_id
        per_replica = input_context.get_per_replica_batch_size(global_batch)

    length, context = data.window, data.context
    ds, stored, channels = _clip_dataset(cfg, split, num_shards, shard_index)
    ds = ds.flat_map(lambda clip: windows(clip, length, length))
    ds = ds.map(lambda clip: tf.ensure_shape(clip, (length, stored, stored, channels)))
    # Clips stay uint8 until they are batched: the shuffle buffer is 4x smaller and
    # float32 tensors are made once per batch instead of once per clip. Measured on
    # a 2-core CPU, per-clip float32 copies of 64x64x20 windows (327 KB each, above
    # malloc's mmap threshold) cost more system time than the model's training step.
    if shuffle:
        ds = ds.shuffle(data.shuffle_buffer, seed=data.seed + shard_index,
                        reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    size = data.frame_size
    if training and (data.augment_flip or data.augment_reverse or stored != size):
        seeds = tf.data.Dataset.random(seed=data.seed + shard_index).batch(2)
        ds = tf.data.Dataset.zip((ds, seeds)).map(
            lambda clip, seed: augment(clip, tf.cast(seed % (2**31 - 1), tf.int32), size,
                                       data.augment_zoom, data.augment_flip,
                                       data.augment_pan, data.augment_reverse),
            num_parallel_calls=tf.data.AUTOTUNE)
    elif stored != size:
        ds = ds.map(lambda clip: resize_clip(clip, size), num_parallel_calls=tf.data.AUTOTUNE)
    shape = (length, size, size, channels)
    ds = ds.map(lambda clip: tf.ensure_shape(clip, shape))
    ds = ds.batch(per_replica, drop_remainder=training)
    ds = ds.map(lambda clips: split_context_batch(normalize(clips), context),
                num_parallel_calls=tf.data.AUTOTUNE)
    options = tf.data.Options()
    # One private thread still delivers ~200x what training consumes here (2172 clips/s
    # from shards, bench/data_pipeline) and leaves the cores to the training step.
    options.threading.private_threadpool_size = 1
    options.threading.max_intra_op_parallelism = 1
    return ds.prefetch(tf.data.AUTOTUNE).with_options(options)
