"""Footage: overlapping windows, time splits with gaps, fps, zoom augmentation, bad input."""

import json
import os

import cv2
import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import moving_square, tiny_config, write_mp4
from vidgen.cli import main
from vidgen.data import frames as framelib
from vidgen.data import pipeline
from vidgen.data.prepared import prepare
from vidgen.data.sources import open_source, resolve_channels
from vidgen.data.time_split import time_segments, time_split_frames_needed
from vidgen.errors import DataError


def indexed_video(path, num_frames, fps=20.0, height=16, width=24):
    """An mp4 whose frame i is flat grey 16 + 4 i (its index survives mp4 compression)."""
    values = (16 + 4 * np.arange(num_frames)).astype(np.uint8)
    frames = np.broadcast_to(values[:, None, None, None], (num_frames, height, width, 3))
    return write_mp4(path, np.ascontiguousarray(frames), fps=fps)


def frame_index(frames):
    """The indices `indexed_video` encoded, one per frame of uint8 (T, H, W, C)."""
    means = np.asarray(frames, np.float64).reshape(len(frames), -1).mean(axis=1)
    return np.round((means - 13.0) / 4.0).astype(int).tolist()


def _windows(source, split):
    return [frame_index(c.frames) for c in source.clips(split)]


def test_indexed_video_round_trip(tmp_path):
    path = indexed_video(tmp_path / "v.mp4", 60)
    assert frame_index(framelib.read_video(path)) == list(range(60))


def test_training_windows_overlap_three_frames_apart(tmp_path):
    path = indexed_video(tmp_path / "v.mp4", 60)
    source = open_source(tiny_config(source=path).data)
    train = _windows(source, "train")
    # train [0, 40): windows of 5 frames starting every 3 frames, the last at 35.
    assert [w[0] for w in train] == list(range(0, 36, 3))
    assert all(w == list(range(w[0], w[0] + 5)) for w in train)
    explicit = open_source(tiny_config(source=path, window_stride=5).data)
    assert [w[0] for w in _windows(explicit, "train")] == list(range(0, 36, 5))


def test_val_and_test_windows_are_disjoint_from_training_and_each_other(tmp_path):
    path = indexed_video(tmp_path / "v.mp4", 60)
    cfg = tiny_config(source=path, val_fraction=0.2, test_fraction=0.2, split_gap=4)
    source = open_source(cfg.data)
    frames = {s: _windows(source, s) for s in ("train", "val", "test")}
    # val and test: 12 frames each -> 2 disjoint windows (10 frames); the gap is 4 frames.
    assert frames["test"] == [list(range(50, 55)), list(range(55, 60))]
    assert frames["val"] == [list(range(36, 41)), list(range(41, 46))]
    used = {s: {i for w in ws for i in w} for s, ws in frames.items()}
    assert max(used["train"]) + 4 < min(used["val"])
    assert max(used["val"]) + 4 < min(used["test"])
    for split in ("val", "test"):
        flat = [i for w in frames[split] for i in w]
        assert len(flat) == len(set(flat)), f"{split} windows overlap"


def test_time_segments_formula():
    assert time_segments(250, 20, 20, 20, 0.1, 0.1) == {
        "train": (0, 170), "val": (190, 210), "test": (230, 250)}
    # An eval stride below the window: overlapping test windows, still after the gap.
    assert time_segments(100, 10, 2, 10, 0.0, 0.3) == {"train": (0, 60), "test": (70, 100)}
    assert time_split_frames_needed(5, 3, 5, 5, 0.1, 0.1, 1) == 50
    assert time_split_frames_needed(5, 3, 5, 5, 0.1, 0.1, 0) == 0


def test_too_short_for_the_split_fails_before_writing(tmp_path):
    path = indexed_video(tmp_path / "v.mp4", 30)
    out = tmp_path / "out"
    cfg = tiny_config(source=path).data
    message = (r"has 30 frames after resampling .* needs at least 50 frames .*"
               r"data.val_fraction=0.1, data.test_fraction=0.1 and data.split_gap=5 .*"
               r"windows: train 9, val 0, test 0.*so use data.val_fraction=")
    with pytest.raises(DataError, match=message) as error:
        prepare(cfg, str(out), progress=False)
    # The library names config keys; a command line sets them with --set.
    assert "so use --set data.val_fraction=/--set data.test_fraction= (larger), --set " \
        "data.split_gap=" in error.value.with_flags()
    assert not out.exists() or not os.listdir(out)
    # Training straight from the video fails the same way, before any step.
    with pytest.raises(DataError, match=message):
        pipeline.make_dataset(tiny_config(source=path), "val")
    # The fix the message names works.
    manifest = prepare(tiny_config(source=path, val_fraction=0.2, test_fraction=0.2,
                                   split_gap=0).data, str(out), progress=False)
    assert [manifest["splits"][s]["clips"] for s in ("val", "test")] == [1, 1]


def test_split_by_file_with_an_empty_split_fails_before_writing(tmp_path):
    for i in range(2):
        indexed_video(tmp_path / f"v{i}.mp4", 12)
    out = tmp_path / "out"
    cfg = tiny_config(source=str(tmp_path), split_mode="by_source").data
    with pytest.raises(DataError, match=r"by video gives the val split 0 window\(s\).*"
                                        r"with data.split_mode=by_time") as error:
        prepare(cfg, str(out), progress=False)
    assert error.value.with_flags().endswith("with --set data.split_mode=by_time.")
    assert not out.exists()


def test_short_video_names_its_frames_and_the_flag(tmp_path):
    path = indexed_video(tmp_path / "v.mp4", 4)
    with pytest.raises(DataError, match=r"v.mp4' is too short: 4 frames, expected at least "
                                        r"data.context \+ data.horizon = 5, so use "
                                        r"data.context=N / data.horizon=N") as error:
        list(open_source(tiny_config(source=path).data).clips("train"))
    assert "so use --set data.context=N / --set data.horizon=N" in error.value.with_flags()


def test_frames_smaller_than_the_model_are_refused(tmp_path, capsys):
    path = write_mp4(tmp_path / "small.mp4", moving_square(12, 24, 32))
    with pytest.raises(DataError, match=r"small.mp4' is 32x24, smaller than the model's 64x64 "
                                        r"frames.*so use data.frame_size=24") as error:
        _ = open_source(tiny_config(source=path, frame_size=64).data).plan
    assert "so use --set data.frame_size=24 or larger footage" in error.value.with_flags()
    # ... and so does the command line.
    assert main(["data", "prepare", path, "--out", str(tmp_path / "out"), "--set",
                 "data.frame_size=64", "--quiet"]) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("vidgen: error: ") and last.endswith(
        "so use --set data.frame_size=24 or larger footage.")


def test_fps_resampling_picks_the_nearest_earlier_frame(tmp_path):
    path = indexed_video(tmp_path / "v.mp4", 40, fps=20)
    assert frame_index(framelib.read_video(path, fps=5)) == list(range(0, 40, 4))
    # 20 -> 8 fps: output time j / 8 s is source frame floor(j * 2.5).
    expected = [int(np.floor(j * 2.5)) for j in range(16)]
    assert frame_index(framelib.read_video(path, fps=8)) == expected
    assert framelib.frame_indices(40, 2.5).tolist() == expected
    # fps then frame_stride: 20 -> 10 fps, every 2nd frame of that.
    assert frame_index(framelib.read_video(path, 2, fps=10)) == list(range(0, 40, 4))
    with pytest.raises(DataError, match=r"has 20 fps, below data.fps=30.*use data.fps=20") as e:
        framelib.read_video(path, fps=30)
    assert "so use --set data.fps=20 or lower" in e.value.with_flags()
    source = open_source(tiny_config(source=path, fps=5, val_fraction=0.0,
                                     test_fraction=0.0).data)
    assert [w[:2] for w in _windows(source, "train")] == [[0, 4], [12, 16]]


def test_read_video_reads_only_a_frame_range(tmp_path):
    path = indexed_video(tmp_path / "v.mp4", 30)
    assert frame_index(framelib.read_video(path, start=7, max_frames=4)) == [7, 8, 9, 10]
    assert frame_index(framelib.read_video(path, 2, start=3, max_frames=2)) == [6, 8]
    with pytest.raises(DataError, match="no frame at or after kept frame 40"):
        framelib.read_video(path, start=40)


def test_mixed_frame_rates_in_a_folder(tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    for i, fps in enumerate((10, 10, 20)):
        indexed_video(folder / f"cam{i}.mp4", 24, fps=fps)
    with pytest.raises(DataError, match=r"mixed frame rates \(10 fps: cam0.mp4, cam1.mp4; "
                                        r"20 fps: cam2.mp4\).*with data.fps=N \(N at most 10\)"
                       ) as error:
        _ = open_source(tiny_config(source=str(folder)).data).plan
    assert "with --set data.fps=N (N at most 10)" in error.value.with_flags()
    source = open_source(tiny_config(source=str(folder), fps=10).data)
    assert {p.item: p.frames for p in source.plan}[str(folder / "cam2.mp4")] == 12


def test_frame_folders_have_no_rate(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(moving_square(6, 16, 16)):
        cv2.imwrite(str(folder / f"{i}.png"), f)
    with pytest.raises(DataError, match=r"Frame folders have no frame rate.*use data.fps=0 "
                                        r"and data.frame_stride=N") as error:
        open_source(tiny_config(source=str(folder), fps=10).data)
    assert "use --set data.fps=0 and --set data.frame_stride=N" in error.value.with_flags()


def test_rgb_by_default_for_footage(tmp_path, capsys):
    path = write_mp4(tmp_path / "v.mp4", moving_square(60, 32, 48))
    assert resolve_channels(tiny_config(source=path, channels=0).data).channels == 3
    assert resolve_channels(tiny_config(source="digits", channels=0).data).channels == 1
    assert resolve_channels(tiny_config(source="shapes", channels=0).data).channels == 3
    tiny = ["--set", "data.frame_size=16", "--set", "data.context=3", "--set", "data.horizon=2",
            "--quiet"]
    out = str(tmp_path / "rgb")
    assert main(["data", "prepare", path, "--out", out] + tiny) == 0
    manifest = json.loads(open(os.path.join(out, "manifest.json")).read())
    assert manifest["channels"] == 3
    line = capsys.readouterr().out
    assert "(3 channel(s))" in line and "frames decoded" in line
    # An explicit preset keeps its channels (quick: grayscale digits).
    assert main(["data", "prepare", path, "--out", str(tmp_path / "gray"), "--preset",
                 "quick"] + tiny) == 0
    assert json.loads((tmp_path / "gray" / "manifest.json").read_text())["channels"] == 1
    # channels=0 reads the prepared dataset's own.
    assert resolve_channels(tiny_config(source=out, channels=0).data).channels == 3
    with pytest.raises(DataError, match=r"holds 16x16 frames with 3 channel\(s\).*"
                                        r"so use data.frame_size=16 data.channels=3") as error:
        pipeline.make_dataset(tiny_config(source=out, channels=1), "train")
    assert "so use --set data.frame_size=16 --set data.channels=3" in error.value.with_flags()


def test_decode_time_resize_matches_resize_after(tmp_path):
    path = write_mp4(tmp_path / "big.mp4", moving_square(30, 96, 128), fps=10)
    full = framelib.read_video(path)
    assert full.shape == (30, 96, 128, 3)
    small = framelib.read_video(path, size=20)
    assert small.shape == (30, 20, 27, 3)
    a, b = framelib.conform(full, 20, 3), framelib.conform(small, 20, 3)
    assert np.abs(a.astype(int) - b).max() <= 2
    # A time split decodes once, each segment straight to its own stored size.
    source = open_source(tiny_config(source=path, channels=3, val_fraction=0.2,
                                     test_fraction=0.2, split_gap=0).data)
    segments = source.plan[0].segments
    for split, side in (("train", 20), ("val", 16), ("test", 16)):
        start = segments[split][0]
        first = next(iter(source.clips(split))).frames
        expected = framelib.conform(full[start:start + 5], side, 3)
        assert first.shape == (5, side, side, 3)
        assert np.abs(first.astype(int) - expected).max() <= 2, split


def test_prepare_reports_frames_and_windows(tmp_path):
    path = indexed_video(tmp_path / "v.mp4", 62)
    manifest = prepare(tiny_config(source=path).data, str(tmp_path / "out"), progress=False)
    # train [0, 42) | 5 | val [47, 52) | 5 | test [57, 62); train windows 0..36, frame 41 unused.
    assert {s: v["windows"] for s, v in manifest["splits"].items()} == {
        "train": 13, "val": 1, "test": 1}
    assert manifest["frames"] == {
        "decoded": 62, "kept": 62, "in_windows": 51, "dropped": 11,
        "dropped_by_resampling": 0, "dropped_in_gaps": 10, "dropped_at_segment_ends": 1}
    assert manifest["source"]["segments"][0]["segments"] == {
        "train": [0, 42], "val": [47, 52], "test": [57, 62]}
    strided = prepare(tiny_config(source=path, frame_stride=2, val_fraction=0.0,
                                  test_fraction=0.0).data, str(tmp_path / "s"), progress=False)
    assert strided["frames"]["kept"] == 31 and strided["frames"]["dropped_by_resampling"] == 31


# ------------------------------------------------------------------ augmentation

def _random_clip(t=4, s=20, c=3, seed=0):
    rng = np.random.default_rng(seed)
    return tf.constant(rng.integers(0, 256, (t, s, s, c), dtype=np.uint8))


def test_random_zoom_crop_eager_and_in_map():
    clip = _random_clip()
    seed = tf.constant([3, 4])
    eager = pipeline.random_zoom_crop(clip, 16, 0.25, seed)
    assert eager.shape == (4, 16, 16, 3) and eager.dtype == tf.uint8
    ds = tf.data.Dataset.from_tensors(clip).map(
        lambda c: pipeline.random_zoom_crop(c, 16, 0.25, seed))
    assert ds.element_spec.shape == (4, 16, 16, 3), "static shape inside Dataset.map"
    np.testing.assert_array_equal(next(iter(ds)).numpy(), eager.numpy())
    np.testing.assert_array_equal(
        pipeline.random_zoom_crop(clip, 16, 0.25, seed).numpy(), eager.numpy())
    outputs = {pipeline.random_zoom_crop(clip, 16, 0.25, tf.constant([i, 0])).numpy().tobytes()
               for i in range(8)}
    assert len(outputs) > 4, "different seeds, different crops"
    # No zoom: the crop is the whole frame, the same as resizing it.
    np.testing.assert_array_equal(pipeline.random_zoom_crop(clip, 16, 0.0, seed).numpy(),
                                  pipeline.resize_clip(clip, 16).numpy())
    assert pipeline.zoom_range(20, 16, 0.25) == (16, 20)


def test_zoom_crop_is_the_same_for_every_frame():
    frame = _random_clip(t=1)[0]
    clip = tf.stack([frame] * 5)
    for i in range(5):
        out = pipeline.augment(clip, tf.constant([i, 1]), 16, 0.25, flip=True).numpy()
        assert all(np.array_equal(out[0], f) for f in out[1:])


def test_augmentation_only_for_training(tmp_path):
    path = write_mp4(tmp_path / "v.mp4", moving_square(60, 32, 48))
    cfg = tiny_config(source=path, channels=3, augment_flip=True, val_fraction=0.2,
                      test_fraction=0.2, split_gap=0)
    out = str(tmp_path / "ds")
    manifest = prepare(cfg.data, out, progress=False)
    assert manifest["splits"]["train"]["stored_size"] == 20
    assert manifest["splits"]["val"]["stored_size"] == 16
    pcfg = tiny_config(source=out, channels=3, augment_flip=True)
    context, target = next(iter(pipeline.make_dataset(pcfg, "train")))
    assert context.shape == (2, 3, 16, 16, 3) and target.shape == (2, 2, 16, 16, 3)
    assert pipeline.make_dataset(pcfg, "train").element_spec[0].shape == (2, 3, 16, 16, 3)
    first = [c.numpy() for c, _ in pipeline.make_dataset(pcfg, "train").take(3)]
    again = [c.numpy() for c, _ in pipeline.make_dataset(pcfg, "train").take(3)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again)), "deterministic per seed"
    # Validation clips come out exactly as stored: no crop, no zoom, no flip.
    stored = [c.frames for c in open_source(pcfg.data).clips("val")]
    val = np.concatenate([np.concatenate([c, t], axis=1)
                          for c, t in pipeline.make_dataset(pcfg, "val", batch_size=8)])
    np.testing.assert_allclose(val, np.stack(stored) / 255.0, atol=1e-6)
    # Reading the video directly gives the same validation windows as the shards.
    direct = np.concatenate([np.concatenate([c, t], axis=1)
                             for c, t in pipeline.make_dataset(cfg, "val", batch_size=8)])
    np.testing.assert_array_equal(direct, val)
    # The training split read for evaluation is resized whole (zoom 1), not augmented.
    plain = next(iter(pipeline.make_dataset(pcfg, "train", shuffle=False, repeat=False,
                                            batch_size=1)))
    assert plain[0].shape == (1, 3, 16, 16, 3)
