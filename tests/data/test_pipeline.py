import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import tiny_config
from vidgen.data import pipeline
from vidgen.data.prepared import prepare
from vidgen.errors import DataError


def _clip(t=7, s=4):
    return tf.constant(np.arange(t * s * s, dtype=np.uint8).reshape(t, s, s, 1))


def test_window_starts():
    assert pipeline.window_starts(7, 5, 5).numpy().tolist() == [0]
    assert pipeline.window_starts(10, 5, 5).numpy().tolist() == [0, 5]
    assert pipeline.window_starts(7, 3, 2).numpy().tolist() == [0, 2, 4]
    assert pipeline.window_starts(2, 3, 1).numpy().tolist() == []


def test_windows_eager_and_in_flat_map():
    clip = _clip()
    eager = [w.numpy() for w in pipeline.windows(clip, 3, 2)]
    ds = tf.data.Dataset.from_tensors(clip).flat_map(lambda c: pipeline.windows(c, 3, 2))
    mapped = [w.numpy() for w in ds]
    assert len(eager) == 3 and len(mapped) == 3
    for a, b, start in zip(eager, mapped, (0, 2, 4)):
        np.testing.assert_array_equal(a, clip.numpy()[start:start + 3])
        np.testing.assert_array_equal(a, b)


def test_normalize_eager_and_in_map():
    clip = tf.constant([[[[0], [255]], [[51], [102]]]], tf.uint8)
    eager = pipeline.normalize(clip)
    mapped = next(iter(tf.data.Dataset.from_tensors(clip).map(pipeline.normalize)))
    assert eager.dtype == tf.float32
    np.testing.assert_allclose(eager.numpy().ravel(), [0.0, 1.0, 0.2, 0.4], atol=1e-6)
    np.testing.assert_array_equal(eager.numpy(), mapped.numpy())


def test_random_flip_flips_all_frames_together():
    clip = tf.constant(np.random.default_rng(0).random((3, 4, 5, 1)), tf.float32)
    outcomes = set()
    for seed in range(20):
        out = pipeline.random_flip(clip, tf.constant([seed, 0])).numpy()
        flipped = np.array_equal(out, clip.numpy()[:, :, ::-1])
        assert flipped or np.array_equal(out, clip.numpy())
        outcomes.add(flipped)
    assert outcomes == {True, False}
    ds = tf.data.Dataset.from_tensors(clip).map(
        lambda c: pipeline.random_flip(c, tf.constant([1, 0])))
    np.testing.assert_array_equal(next(iter(ds)).numpy(),
                                  pipeline.random_flip(clip, tf.constant([1, 0])).numpy())


def test_split_context_batch_eager_and_in_map():
    clips = tf.stack([_clip(5), _clip(5)])
    ctx, tgt = pipeline.split_context_batch(clips, 3)
    assert ctx.shape[:2] == (2, 3) and tgt.shape[:2] == (2, 2)
    np.testing.assert_array_equal(tgt.numpy(), clips.numpy()[:, 3:])
    ds = tf.data.Dataset.from_tensors(clips).map(lambda c: pipeline.split_context_batch(c, 3))
    c2, t2 = next(iter(ds))
    np.testing.assert_array_equal(tgt.numpy(), t2.numpy())
    np.testing.assert_array_equal(ctx.numpy(), c2.numpy())


def _check_batch(ds, cfg, batch):
    context, target = next(iter(ds))
    d = cfg.data
    assert context.shape == (batch, d.context, d.frame_size, d.frame_size, d.channels)
    assert target.shape == (batch, d.horizon, d.frame_size, d.frame_size, d.channels)
    assert context.dtype == tf.float32
    for x in (context, target):
        assert 0.0 <= float(tf.reduce_min(x)) and float(tf.reduce_max(x)) <= 1.0
    spec = ds.element_spec[0].shape
    assert spec[1:].as_list()[1:] == [d.frame_size, d.frame_size, d.channels]


def test_make_dataset_direct_from_generated_source():
    cfg = tiny_config()
    ds = pipeline.make_dataset(cfg, "train")
    _check_batch(ds, cfg, 2)
    assert ds.element_spec[0].shape[0] == 2, "training batches have a static size"
    # Training repeats forever; validation is finite and keeps every clip.
    assert sum(1 for _ in ds.take(20)) == 20
    val = list(pipeline.make_dataset(cfg, "val", batch_size=3))
    assert [c.shape[0] for c, _ in val] == [3, 1]


def test_make_dataset_from_prepared_shards(tmp_path):
    cfg = tiny_config(augment_flip=True)
    out = str(tmp_path / "ds")
    prepare(cfg.data, out, progress=False)
    pcfg = tiny_config(source=out, augment_flip=True)
    _check_batch(pipeline.make_dataset(pcfg, "train"), pcfg, 2)
    test = [(c.numpy(), t.numpy()) for c, t in pipeline.make_dataset(pcfg, "test")]
    direct = [(c.numpy(), t.numpy()) for c, t in pipeline.make_dataset(cfg, "test")]
    assert len(test) == len(direct) == 2
    for (c1, t1), (c2, t2) in zip(test, direct):
        np.testing.assert_array_equal(c1, c2)
        np.testing.assert_array_equal(t1, t2)


def test_prepared_dataset_mismatch_is_reported(tmp_path):
    out = str(tmp_path / "ds")
    prepare(tiny_config().data, out, progress=False)
    with pytest.raises(DataError, match="holds 16x16 frames .* expects 8x8"):
        pipeline.make_dataset(tiny_config(source=out, frame_size=8), "train")
    with pytest.raises(DataError, match="stores clips of 5 frames"):
        pipeline.make_dataset(tiny_config(source=out, horizon=4), "train")


def test_per_worker_sharding_and_per_replica_batch():
    cfg = tiny_config(test_clips=8)
    seen = []
    for worker in range(2):
        ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=worker,
                                         num_replicas_in_sync=2)
        ds = pipeline.make_dataset(cfg, "test", input_context=ctx, batch_size=4)
        batches = list(ds)
        assert all(c.shape[0] <= 2 for c, _ in batches)
        seen.append({c.numpy().tobytes() for b, _ in batches for c in b})
    assert len(seen[0]) == len(seen[1]) == 4 and not seen[0] & seen[1]


def test_bad_split():
    with pytest.raises(DataError, match="split must be one of"):
        pipeline.make_dataset(tiny_config(), "validation")


def _texture(side=40, frames=8, seed=0):
    import cv2

    rng = np.random.default_rng(seed)
    image = cv2.GaussianBlur((rng.random((side, side, 3)) * 255).astype(np.uint8), (7, 7), 0)
    return np.repeat(image[None], frames, axis=0)


def _shifts(clip):
    import cv2

    gray = clip.astype(np.float32).mean(-1)
    return np.array([cv2.phaseCorrelate(gray[i], gray[i + 1])[0] for i in range(len(gray) - 1)])


def test_random_pan_crop_moves_at_one_bounded_velocity_eager_and_in_map():
    clip = tf.constant(_texture())
    seeds = [tf.constant([s, 3]) for s in range(6)]
    outs = [pipeline.random_pan_crop(clip, 32, 0.25, 1.0, s).numpy() for s in seeds]
    assert all(o.shape == (8, 32, 32, 3) and o.dtype == np.uint8 for o in outs)
    speeds = []
    for out in outs:
        shifts = _shifts(out)
        # One constant velocity per window, never above the bound (1 px per frame).
        assert np.abs(shifts - shifts.mean(0)).max() < 0.15
        assert np.abs(shifts.mean(0)).max() <= 1.0 + 0.1
        speeds.append(np.abs(shifts.mean(0)).max())
    assert max(speeds) > 0.2                              # it does pan
    # Deterministic per seed, and the same inside Dataset.map.
    again = pipeline.random_pan_crop(clip, 32, 0.25, 1.0, seeds[1]).numpy()
    np.testing.assert_array_equal(again, outs[1])
    ds = tf.data.Dataset.from_tensors(clip).map(
        lambda c: pipeline.random_pan_crop(c, 32, 0.25, 1.0, tf.constant([1, 3])))
    mapped = next(iter(ds)).numpy()
    assert mapped.shape == (8, 32, 32, 3)
    np.testing.assert_allclose(mapped.astype(float), outs[1].astype(float), atol=1)


def test_random_pan_crop_without_room_stands_still():
    clip = tf.constant(_texture(side=32))                 # stored == output: no room to move
    out = pipeline.random_pan_crop(clip, 32, 0.0, 2.0, tf.constant([0, 1])).numpy()
    np.testing.assert_allclose(out.astype(float), _texture(side=32).astype(float), atol=1)


def test_random_reverse_plays_backwards_or_not():
    clip = tf.constant(np.arange(6, dtype=np.uint8).reshape(6, 1, 1, 1))
    seen = {tuple(pipeline.random_reverse(clip, tf.constant([s, 0])).numpy().ravel())
            for s in range(12)}
    assert seen == {(0, 1, 2, 3, 4, 5), (5, 4, 3, 2, 1, 0)}
