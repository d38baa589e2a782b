"""The tf.data input pipeline: clips -> windows -> (context, target) batches.

The order follows the house style (decode -> window -> shuffle -> repeat ->
map(AUTOTUNE) -> batch(drop_remainder=True) -> prefetch) with one measured
exception: normalisation to float32 happens after batching, see
`make_dataset`. Each transform below is a pure function of tensors, usable
eagerly and inside `Dataset.map`.

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
from vidgen.data import prepared
from vidgen.data.sources import MANIFEST_NAME, GeneratedSource, check_split, open_source
from vidgen.errors import DataError


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


def split_context_batch(clips, context: int):
    """A batch of windows (B, context + horizon, ...) -> (context frames, target frames)."""
    return clips[:, :context], clips[:, context:]


def _clip_dataset(cfg: Config, split: str, num_shards: int, shard_index: int):
    data = cfg.data
    source_path = data.source
    if os.path.isdir(source_path) and os.path.isfile(os.path.join(source_path, MANIFEST_NAME)):
        manifest = prepared.read_manifest(source_path)
        found = (manifest["frame_size"], manifest["channels"])
        if found != (data.frame_size, data.channels):
            raise DataError(
                f"Prepared dataset {source_path!r} holds {found[0]}x{found[0]} frames with "
                f"{found[1]} channel(s); the config expects {data.frame_size}x{data.frame_size} "
                f"with {data.channels}. Set data.frame_size/data.channels to match or prepare "
                "it again.")
        if manifest["clip_length"] < data.window:
            raise DataError(
                f"Prepared dataset {source_path!r} stores clips of {manifest['clip_length']} "
                f"frames; context + horizon = {data.window} needs longer ones. Prepare it "
                f"again with data.clip_length={data.window} or more.")
        return prepared.clip_dataset(source_path, split, manifest, num_shards, shard_index,
                                     interleave=split == "train")
    source = open_source(data)
    signature = tf.TensorSpec((None, data.frame_size, data.frame_size, data.channels), tf.uint8)
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
    return ds


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

    length, stride = data.window, data.window_stride or data.window
    context = data.context
    ds = _clip_dataset(cfg, split, num_shards, shard_index)
    ds = ds.flat_map(lambda clip: windows(clip, length, stride))
    # Clips stay uint8 until they are batched: the shuffle buffer is 4x smaller and
    # float32 tensors are made once per batch instead of once per clip. Measured on
    # a 2-core CPU, per-clip float32 copies of 64x64x20 windows (327 KB each, above
    # malloc's mmap threshold) cost more system time than the model's training step.
    if shuffle:
        ds = ds.shuffle(data.shuffle_buffer, seed=data.seed + shard_index,
                        reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    if data.augment_flip and training:
        seeds = tf.data.Dataset.random(seed=data.seed + shard_index).batch(2)
        ds = tf.data.Dataset.zip((ds, seeds)).map(
            lambda clip, seed: random_flip(clip, tf.cast(seed % (2**31 - 1), tf.int32)),
            num_parallel_calls=tf.data.AUTOTUNE)
    shape = (length, data.frame_size, data.frame_size, data.channels)
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
