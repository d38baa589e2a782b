import json
import os

import numpy as np
import pytest

from tests.conftest import tiny_config
from vidgen.data import prepared, prepared_source
from vidgen.data.sources import open_source
from vidgen.errors import DataError


def test_prepare_synthetic_round_trip(tmp_path):
    cfg = tiny_config()
    out = str(tmp_path / "ds")
    manifest = prepared.prepare(cfg.data, out, progress=False)
    assert manifest["splits"]["train"]["clips"] == 12
    assert [s["clips"] for s in manifest["splits"]["train"]["shards"]] == [5, 5, 2]
    assert manifest["frame_size"] == 16 and manifest["clip_length"] == 5
    files = sorted(os.listdir(out))
    assert "manifest.json" in files and not [f for f in files if "tmp" in f or f[0] == "."]
    # Read back: the same clips the source generates.
    back = [c.frames for c in open_source(tiny_config(source=out).data).clips("val")]
    direct = [c.frames for c in open_source(cfg.data).clips("val")]
    assert len(back) == 4
    for a, b in zip(back, direct):
        np.testing.assert_array_equal(a, b)


def test_prepare_is_idempotent_and_guards_other_settings(tmp_path):
    out = str(tmp_path / "ds")
    first = prepared.prepare(tiny_config().data, out, progress=False)
    assert prepared.prepare(tiny_config().data, out, progress=False) == first
    with pytest.raises(DataError, match="other settings; pass --overwrite"):
        prepared.prepare(tiny_config(frame_size=8).data, out, progress=False)
    second = prepared.prepare(tiny_config(frame_size=8).data, out, overwrite=True,
                              progress=False)
    assert second["frame_size"] == 8


def test_interrupted_prepare_is_never_mistaken_for_a_dataset(tmp_path, monkeypatch):
    out = str(tmp_path / "ds")
    cfg = tiny_config()
    calls = {"n": 0}
    real = prepared._serialize

    def failing(clip):
        calls["n"] += 1
        if calls["n"] == 13:  # after train's shards, inside val
            raise KeyboardInterrupt
        return real(clip)

    monkeypatch.setattr(prepared, "_serialize", failing)
    with pytest.raises(KeyboardInterrupt):
        prepared.prepare(cfg.data, out, progress=False)
    assert not os.path.exists(os.path.join(out, "manifest.json"))
    with pytest.raises(DataError, match="did not finish"):
        open_source(tiny_config(source=out).data)
    done = {f: os.path.getmtime(os.path.join(out, f)) for f in os.listdir(out)
            if f.endswith(".tfrecord.gz")}
    assert sorted(done) == ["train-00000.tfrecord.gz", "train-00001.tfrecord.gz",
                            "train-00002.tfrecord.gz"]
    monkeypatch.setattr(prepared, "_serialize", real)
    manifest = prepared.prepare(cfg.data, out, progress=False)
    # The rerun kept the finished shards and wrote the rest.
    assert all(os.path.getmtime(os.path.join(out, f)) == t for f, t in done.items())
    assert manifest["splits"]["val"]["clips"] == 4
    direct = [c.frames for c in open_source(cfg.data).clips("train", limit=12)]
    back = [c.frames for c in open_source(tiny_config(source=out).data).clips("train")]
    assert all(np.array_equal(a, b) for a, b in zip(direct, back)) and len(back) == 12


def test_prepare_video_folder_records_skipped_files(video_dir):
    with open(os.path.join(video_dir, "zz_broken.mp4"), "wb") as f:
        f.write(b"\x00" * 100)
    cfg = tiny_config(source=video_dir, channels=3, val_fraction=0.2, test_fraction=0.2)
    out = os.path.join(os.path.dirname(video_dir), "prepared")
    manifest = prepared.prepare(cfg.data, out, progress=False)
    assert [s["item"].endswith("zz_broken.mp4") for s in manifest["skipped"]] == [True]
    # A 24-frame training video gives 7 windows 3 frames apart, a val/test one 4 disjoint.
    assert {s: v["clips"] for s, v in manifest["splits"].items()} == {
        "train": 2 * 7, "val": 4, "test": 4}
    assert {s: v["stored_size"] for s, v in manifest["splits"].items()} == {
        "train": 20, "val": 16, "test": 16}
    assert manifest["source"]["split_mode"] == "by_source"
    written = json.load(open(os.path.join(out, "manifest.json")))
    assert written["skipped"] == manifest["skipped"]


def test_missing_shard_is_reported(tmp_path):
    out = str(tmp_path / "ds")
    prepared.prepare(tiny_config().data, out, progress=False)
    os.remove(os.path.join(out, "val-00000.tfrecord.gz"))
    with pytest.raises(DataError, match="incomplete: shard .*val-00000"):
        list(open_source(tiny_config(source=out).data).clips("val"))


def test_corrupt_manifest(tmp_path):
    (tmp_path / "manifest.json").write_text("{")
    with pytest.raises(DataError, match="not valid JSON"):
        prepared_source.read_manifest(str(tmp_path))
