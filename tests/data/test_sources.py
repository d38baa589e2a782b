import gzip
import os

import cv2
import numpy as np
import pytest

from tests.conftest import moving_square, tiny_config, write_mp4
from vidgen.data import frame_folders
from vidgen.data import frames as framelib
from vidgen.data.footage import FrameFolders, VideoFiles
from vidgen.data.generated import SyntheticDigits, SyntheticShapes
from vidgen.data.mnist import MovingMNIST, MovingMNISTNpy
from vidgen.data.sources import open_source
from vidgen.errors import DataError
from vidgen.generate import iter_frames


def _all(source, split):
    return list(source.clips(split))


def _check_clips(clips, cfg, min_len=None, size=None):
    assert clips
    for clip in clips:
        f = clip.frames
        assert f.dtype == np.uint8
        side = size or cfg.data.frame_size
        assert f.shape[1:] == (side, side, cfg.data.channels)
        assert len(f) >= (min_len or cfg.data.window)


def test_synthetic_digits_splits_are_fixed_and_disjoint():
    cfg = tiny_config()
    source = open_source(cfg.data)
    assert isinstance(source, SyntheticDigits) and source.endless_train
    val, test = _all(source, "val"), _all(source, "test")
    assert len(val) == 4 and len(test) == 4
    _check_clips(val, cfg)
    again = _all(open_source(cfg.data), "val")
    assert all(np.array_equal(a.frames, b.frames) for a, b in zip(val, again))
    train = list(source.clips("train", limit=6))
    assert len(train) == 6
    frames = {c.frames.tobytes() for c in train}
    assert not frames & {c.frames.tobytes() for c in val + test}


def test_endless_training_stream_and_sharding():
    source = open_source(tiny_config().data)
    stream = source.clips("train")
    ids = [next(stream).id for _ in range(50)]
    assert ids[-1] == "train-49"
    shard = [c.id for c in source.clips("train", num_shards=2, shard_index=1, limit=8)]
    assert shard == ["train-1", "train-3", "train-5", "train-7"]


def test_synthetic_shapes_rgb():
    cfg = tiny_config(source="shapes", channels=3)
    source = open_source(cfg.data)
    assert isinstance(source, SyntheticShapes)
    clips = _all(source, "test")
    _check_clips(clips, cfg)
    rgb = clips[0].frames.reshape(-1, 3).astype(int)
    assert (np.abs(rgb[:, 0] - rgb[:, 1]) > 20).any(), "colour, not grey"


def _mnist_images(n):
    rng = np.random.default_rng(0)
    images = np.zeros((n, 28, 28), np.uint8)
    for i in range(n):
        r, c = rng.integers(4, 14, size=2)
        images[i, r:r + 10, c:c + 10] = 255
    return images


def _write_idx(path, images, compress=True):
    header = (2051).to_bytes(4, "big") + b"".join(
        int(v).to_bytes(4, "big") for v in images.shape)
    data = header + images.tobytes()
    with (gzip.open if compress else open)(path, "wb") as f:
        f.write(data)
    return str(path)


def test_moving_mnist_from_idx_gz(tmp_path):
    path = _write_idx(tmp_path / "train-images-idx3-ubyte.gz", _mnist_images(30))
    cfg = tiny_config(source=path, min_digits=2, max_digits=2)
    source = open_source(cfg.data)
    assert isinstance(source, MovingMNIST)
    assert sum(source.describe()["digits"].values()) == 30
    clips = _all(source, "test")
    _check_clips(clips, cfg)
    assert len(list(source.clips("train", limit=3))) == 3


def test_moving_mnist_from_npz_uses_its_test_digits(tmp_path):
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=_mnist_images(20), y_train=np.zeros(20),
             x_test=_mnist_images(5), y_test=np.zeros(5))
    source = open_source(tiny_config(source=str(path)).data)
    assert source.describe()["digits"] == {"train": 18, "val": 2, "test": 5}
    _check_clips(_all(source, "val"), tiny_config())


@pytest.mark.parametrize("content, message", [
    (b"\x00\x00\x08\x01" + b"\x00" * 12, "magic number 2051"),
    ((2051).to_bytes(4, "big") + (10).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
     + b"\x00" * 100, "truncated"),
])
def test_bad_idx_files(tmp_path, content, message):
    path = tmp_path / "images-idx3-ubyte"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        open_source(tiny_config(source=str(path)).data)


def test_npz_without_x_train(tmp_path):
    path = tmp_path / "mnist.npz"
    np.savez(path, images=_mnist_images(3))
    with pytest.raises(DataError, match=r"x_train.*Received arrays: \['images'\]"):
        open_source(tiny_config(source=str(path)).data)


def test_moving_mnist_npy_standard_layout(tmp_path):
    rng = np.random.default_rng(0)
    array = rng.integers(0, 255, size=(20, 10, 64, 64), dtype=np.uint8)
    path = tmp_path / "mnist_test_seq.npy"
    np.save(path, array)
    cfg = tiny_config(source=str(path), frame_size=64)
    source = open_source(cfg.data)
    assert isinstance(source, MovingMNISTNpy) and source.split_mode == "by_source"
    assert source.cfg.channels == 1
    by_split = {s: [c.source for c in source.clips(s)] for s in ("train", "val", "test")}
    # 20-frame sequences give 4 non-overlapping 5-frame windows each, in every split.
    assert sum(len(v) for v in by_split.values()) == 40
    assert len(set().union(*map(set, by_split.values()))) == 10
    assert not set(by_split["train"]) & set(by_split["test"])
    assert not set(by_split["train"]) & set(by_split["val"])
    clips = list(source.clips("test"))
    index = int(clips[1].source[3:])
    assert clips[1].id == f"{clips[1].source}#5"
    np.testing.assert_array_equal(clips[1].frames[..., 0], array[5:10, index])


@pytest.mark.parametrize("array, message", [
    (np.zeros((20, 4, 64, 64), np.float32), "expected uint8"),
    (np.zeros((20, 64, 64), np.uint8), r"Received uint8 \(20, 64, 64\)"),
])
def test_npy_wrong_layout_or_dtype(tmp_path, array, message):
    path = tmp_path / "seq.npy"
    np.save(path, array)
    with pytest.raises(DataError, match=message):
        open_source(tiny_config(source=str(path)).data)


def test_npy_clip_shorter_than_window(tmp_path):
    path = tmp_path / "seq.npy"
    np.save(path, np.zeros((4, 5, 16, 16), np.uint8))
    source = open_source(tiny_config(source=str(path)).data)
    with pytest.raises(DataError, match=r"too short: 4 frames, expected at least data.context "
                       r"\+ data.horizon = 5, so use data.context=N") as error:
        _all(source, "train")
    # Every reason joined names its config keys: a command line spells them --set.
    assert "so use --set data.context=N / --set data.horizon=N" in error.value.with_flags()


def test_video_folder_decodes_resizes_and_splits_by_file(video_dir):
    cfg = tiny_config(source=video_dir, channels=3, val_fraction=0.25, test_fraction=0.25)
    source = open_source(cfg.data)
    assert isinstance(source, VideoFiles) and source.split_mode == "by_source"
    seen = {}
    for split in ("train", "val", "test"):
        clips = _all(source, split)
        # Training windows are stored 1.25x larger, for the zoom augmentation.
        _check_clips(clips, cfg, size=20 if split == "train" else 16)
        seen[split] = {c.source for c in clips}
        assert all(len(c.frames) == 5 for c in clips)
        # 24 frames: 7 training windows 3 frames apart, or 4 disjoint ones.
        assert len(clips) == len(seen[split]) * (7 if split == "train" else 4)
    assert len(seen["train"]) == 2 and len(seen["val"]) == 1 and len(seen["test"]) == 1
    assert set.union(*seen.values()) == {os.path.join(video_dir, f"clip{i}.mp4")
                                        for i in range(4)}


def test_video_frame_stride_grayscale_and_crop(video_dir):
    path = os.path.join(video_dir, "clip0.mp4")
    cfg = tiny_config(source=path, frame_stride=2, channels=1, crop="random",
                      val_fraction=0.0, test_fraction=0.0, augment_zoom=0.0)
    source = open_source(cfg.data)
    assert source.split_mode == "by_time"
    train = _all(source, "train")
    assert train[0].frames.shape == (5, 16, 16, 1)
    # 12 frames after stride 2, all for training: windows start at 0, 3, 6.
    assert [c.id.split("#")[1] for c in train] == ["0", "3", "6"]


def test_single_video_is_split_in_time_without_overlap(tmp_path):
    frames = moving_square(60, 16, 16)
    frames[:, 0, 0, 0] = np.arange(60)  # stamp each frame with its index
    path = write_mp4(tmp_path / "one.avi", frames)
    cfg = tiny_config(source=path, channels=3)
    source = open_source(cfg.data)
    # train [0, 40) | gap 5 | val [45, 50) | gap 5 | test [55, 60)
    assert source.plan[0].segments == {"train": (0, 40), "val": (45, 50), "test": (55, 60)}
    counts = {s: len(_all(source, s)) for s in ("train", "val", "test")}
    assert counts == {"train": 12, "val": 1, "test": 1}


def test_corrupt_video_in_folder_is_skipped_and_recorded(video_dir):
    with open(os.path.join(video_dir, "broken.mp4"), "wb") as f:
        f.write(b"this is not a video" * 10)
    cfg = tiny_config(source=video_dir, channels=3, val_fraction=0.2, test_fraction=0.2)
    source = open_source(cfg.data)
    good = {c.source for split in ("train", "val", "test") for c in _all(source, split)}
    assert len(good) == 4
    assert [s["item"] for s in source.skipped] == [os.path.join(video_dir, "broken.mp4")]
    assert "could not be decoded" in source.skipped[0]["reason"]


def test_every_video_bad_is_an_error(tmp_path):
    for i in range(3):
        (tmp_path / f"bad{i}.mp4").write_bytes(b"\x00" * 64)
    source = open_source(tiny_config(source=str(tmp_path)).data)
    with pytest.raises(DataError, match="None of the 3 videos of .* is usable; the first "
                                        "reasons: Video file .*bad0.mp4' could not be decoded"):
        _all(source, "train")


def test_single_corrupt_video_file(tmp_path):
    path = tmp_path / "bad.mkv"
    path.write_bytes(b"garbage")
    with pytest.raises(DataError, match="could not be decoded"):
        _all(open_source(tiny_config(source=str(path)).data), "train")


def _frame_folder(root, name, n, size=(20, 24), ext="png"):
    folder = root / name
    folder.mkdir(parents=True)
    clip = moving_square(n, size[0], size[1])
    for i, f in enumerate(clip):
        cv2.imwrite(str(folder / f"frame{i}.{ext}"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    return folder


def test_frame_folders_natural_order(tmp_path):
    for i in range(3):
        _frame_folder(tmp_path / "clips", f"c{i}", 12)
    cfg = tiny_config(source=str(tmp_path / "clips"), channels=3)
    source = open_source(cfg.data)
    assert isinstance(source, FrameFolders)
    assert source.cfg.channels == 3 and source.split_mode == "by_source"
    clips = [c for s in ("train", "val", "test") for c in _all(source, s)]
    assert len({c.source for c in clips}) == 3
    # frame10 must follow frame9: the square keeps moving right, frame by frame.
    raw, _ = frame_folders.read_frame_folder(str(tmp_path / "clips" / "c0"))
    np.testing.assert_array_equal(raw, moving_square(12, 20, 24))


def test_frame_folder_bad_inputs(tmp_path, caplog):
    mixed = _frame_folder(tmp_path, "mixed", 6)
    cv2.imwrite(str(mixed / "frame6.png"), np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(DataError, match="frame6.png.*10x10.*24x20") as read:
        frame_folders.read_frame_folder(str(mixed))
    # `vidgen generate --input FOLDER` refuses it in the same words (one check).
    with pytest.raises(DataError) as streamed:
        list(iter_frames(str(mixed)))
    assert str(streamed.value) == str(read.value)
    assert str(read.value).endswith("'frame0.png' is 24x20: all frames of a clip must have "
                                    "one size.")
    broken = _frame_folder(tmp_path, "broken", 6)
    (broken / "frame3.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="frame3.png' is not a readable image"):
        frame_folders.read_frame_folder(str(broken))
    notes = _frame_folder(tmp_path, "notes", 6)
    (notes / "README.txt").write_text("hello")
    frames, ignored = frame_folders.read_frame_folder(str(notes))
    assert len(frames) == 6 and ignored == ["README.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="holds no clips"):
        open_source(tiny_config(source=str(empty)).data)


def test_missing_path_and_unsupported_file(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        open_source(tiny_config(source=str(tmp_path / "nope")).data)
    other = tmp_path / "data.csv"
    other.write_text("1,2")
    with pytest.raises(DataError, match="unsupported kind"):
        open_source(tiny_config(source=str(other)).data)


def test_conform_resizes_and_converts_channels():
    clip = moving_square(3, 30, 50)
    out = framelib.conform(clip, 16, 1)
    assert out.shape == (3, 16, 16, 1) and out.dtype == np.uint8
    gray = np.full((2, 8, 8, 1), 100, np.uint8)
    assert framelib.conform(gray, 8, 3).shape == (2, 8, 8, 3)
    with pytest.raises(DataError, match="Expected frames shaped"):
        framelib.conform(np.zeros((4, 4, 4), np.uint8), 4, 1)
