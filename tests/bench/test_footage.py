import numpy as np

from bench import footage


def _clips(n=5, t=6, size=16, seed=0):
    return np.random.default_rng(seed).random((n, t, size, size, 3)).astype(np.float32)


def test_scores_name_the_best_baseline_and_check_the_targets():
    clips = _clips()
    truth = clips[:, 3:]
    predictions = {"model": truth * 0.98 + 0.01,                      # nearly exact
                   "copy_last": np.repeat(clips[:, 2:3], 3, axis=1),
                   "flow": np.clip(truth + 0.2, 0, 1)}
    out = footage.score_predictions(predictions, clips, context=3)
    assert out["windows"] == 5
    assert out["model"]["mse"] < out["flow"]["mse"] and len(out["model"]["per_step"]["psnr"]) == 3
    best = out["best_baseline"]["mse"]
    assert best == min(("copy_last", "flow"), key=lambda n: out[n]["mse"])
    targets = out["targets"]
    assert targets["mse_at_least_10pct_lower"] and targets["ssim_above_every_baseline"]
    # A model equal to the best baseline meets neither target.
    same = footage.score_predictions({**predictions, "model": predictions[best]}, clips, 3)
    assert same["targets"]["mse_ratio_to_best_baseline"] == 1.0
    assert not same["targets"]["mse_at_least_10pct_lower"]
    assert not same["targets"]["ssim_above_every_baseline"]
    text = footage.table(same, "t")
    assert "not met" in text and "| SSIM flow |" in text


def test_windows_and_frame_ranges_from_a_manifest():
    frames = np.zeros((25, 4, 4, 3), np.float32)
    assert footage.windows(frames, 20, 1).shape == (6, 20, 4, 4, 3)
    assert footage.windows(frames, 20, 3).shape == (2, 20, 4, 4, 3)
    manifest = {"source": {"segments": [{"item": "/x/a.mp4", "frames": 90, "fps": 25.0,
                                         "segments": {"train": [0, 48], "val": [49, 67],
                                                      "test": [68, 90]}}]}}
    (row,) = footage.frame_ranges(manifest)
    assert row == {"clip": "a.mp4", "frames": 90, "fps": 25.0, "train": [0, 48],
                   "val": [49, 67], "test": [68, 90]}


def test_smoke_clips_are_decodable_and_long_enough(tmp_path):
    paths = footage.smoke_clips(str(tmp_path))
    assert [p.rsplit("/", 1)[1] for p in paths] == ["pan.mp4", "square.mp4", "still.mp4"]
    clip = footage.decode(paths[0], 16, 0.0)
    assert clip.shape[1:] == (16, 16, 3) and len(clip) >= 80
