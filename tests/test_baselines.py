import json
import os

import numpy as np
import pytest
from scipy import ndimage

from vidgen import baselines as B
from vidgen.evaluate import best_baselines, evaluate, summary_table


def translating_texture(frames: int, size: int = 64, shift=(2, 0), channels: int = 3,
                        sigma: float = 3.0, seed: int = 0) -> np.ndarray:
    """float32 (T, S, S, C): a smooth random texture moving by `shift` = (dx, dy) px per frame.

    Frame t at pixel q shows the texture at q - t * shift, so every future frame is known
    exactly, including the part that enters the frame.
    """
    margin = max(abs(shift[0]), abs(shift[1])) * frames + 1
    rng = np.random.default_rng(seed)
    big = ndimage.gaussian_filter(rng.random((size + 2 * margin,) * 2 + (channels,)),
                                  (sigma, sigma, 0))
    big = (big - big.min()) / (big.max() - big.min())
    dx, dy = shift
    return np.stack([big[margin - dy * t:margin - dy * t + size,
                         margin - dx * t:margin - dx * t + size]
                     for t in range(frames)]).astype(np.float32)


def frame_mse(pred, true):
    return float(((pred - true) ** 2).sum(axis=(2, 3, 4)).mean())


@pytest.mark.parametrize("shift", [(2, 0), (0, -2), (3, 1)])
def test_flow_extrapolation_follows_a_translating_texture(shift):
    clip = translating_texture(10, shift=shift)[None]
    context, future = clip[:, :4], clip[:, 4:]
    flow = B.predict("flow", context, 6)
    copy = B.predict("copy_last", context, 6)
    assert frame_mse(flow, future) < 0.3 * frame_mse(copy, future)
    # Away from the edges (where unseen texture enters) the future is reproduced: the sign
    # and the constant-velocity extrapolation are right.
    inner = (slice(None), slice(None), slice(20, -20), slice(20, -20))
    assert np.abs(flow[inner] - future[inner]).mean() < 0.01
    assert np.abs(copy[inner] - future[inner]).mean() > 0.03


def test_flow_extrapolation_of_a_static_clip_is_the_last_frame():
    frame = translating_texture(1, size=32, channels=1)[0]
    context = np.repeat(frame[None, None], 3, axis=1)
    np.testing.assert_allclose(B.flow_extrapolation(context, 4),
                               np.repeat(context[:, -1:], 4, axis=1), atol=1e-5)


@pytest.mark.parametrize("name", sorted(B.BASELINES))
@pytest.mark.parametrize("channels", [1, 3])
def test_every_baseline_predicts_frames_of_the_context_shape(name, channels):
    context = np.random.default_rng(0).random((2, 3, 16, 16, channels)).astype("float32")
    out = B.predict(name, context, 5)
    assert out.shape == (2, 5, 16, 16, channels) and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0


def test_one_context_frame_gives_copy_last():
    context = np.random.default_rng(0).random((2, 1, 16, 16, 3)).astype("float32")
    for name in ("flow", "linear"):
        np.testing.assert_array_equal(B.predict(name, context, 2),
                                      B.copy_last(context, 2))


def test_copy_last_black_and_linear_values():
    context = np.stack([np.full((4, 4, 1), v, np.float32) for v in (0.2, 0.3)])[None]
    np.testing.assert_array_equal(B.copy_last(context, 2)[0], context[0, [1, 1]])
    assert not B.black(context, 2).any()
    np.testing.assert_allclose(B.linear_extrapolation(context, 3)[0, :, 0, 0, 0],
                               [0.4, 0.5, 0.6], atol=1e-6)


def test_gray_uint8_matches_opencv():
    import cv2

    frame = np.random.default_rng(0).random((8, 8, 3)).astype("float32")
    u8 = np.clip(np.rint(frame * 255), 0, 255).astype(np.uint8)
    expected = cv2.cvtColor(u8, cv2.COLOR_RGB2GRAY)
    assert np.abs(B.gray_uint8(frame).astype(int) - expected).max() <= 1


@pytest.mark.parametrize("args, message", [
    (("nope", np.zeros((1, 2, 4, 4, 1)), 1), "Unknown baseline 'nope'"),
    (("flow", np.zeros((2, 4, 4, 1)), 1), "context must be shaped"),
    (("flow", np.zeros((1, 2, 4, 4, 2)), 1), "context must be shaped"),
    (("copy_last", np.zeros((1, 2, 4, 4, 1)), 0), "horizon must be a positive integer"),
])
def test_bad_arguments_are_named(args, message):
    with pytest.raises(ValueError, match=message):
        B.predict(*args)


def test_black_frame_rule():
    assert B.black_frame_meaningful(0.06)
    assert not B.black_frame_meaningful(B.BLACK_FRAME_MAX_MEAN)
    assert not B.black_frame_meaningful(0.45)


def row(mse, ssim):
    def metric(v):
        return {"mean": v, "per_step": [v, v]}
    return {"mse": metric(mse), "mae": metric(mse), "psnr": metric(-mse),
            "ssim": metric(ssim), "ssim_uniform7": metric(ssim), "sharpness": metric(1.0)}


def test_best_baseline_and_summary_table():
    results = {"model": row(40.0, 0.8), "copy_last": row(60.0, 0.7), "flow": row(50.0, 0.6)}
    best = best_baselines(results, ["copy_last", "flow"])
    assert best == {"mse": "flow", "mae": "flow", "psnr": "flow", "ssim": "copy_last",
                    "ssim_uniform7": "copy_last"}
    table = summary_table({"results": results, "baselines": ["copy_last", "flow"],
                           "best_baseline": best,
                           "black_frame": {"included": False, "context_mean": 0.45,
                                           "max_context_mean": 0.2}})
    assert "best baseline: MSE flow" in table and "SSIM copy_last" in table
    assert "model MSE / best baseline MSE (flow): 0.800" in table
    assert "all-black frame not reported: mean context pixel 0.45 >= 0.2" in table
    flow_line = next(line for line in table.splitlines() if line.startswith("flow"))
    assert "50.0*" in flow_line
    # Reports written before the best baseline was recorded still print.
    assert "best baseline: MSE flow" in summary_table({"results": results})


@pytest.fixture(scope="module")
def digits_report(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    return evaluate(tiny_run, max_clips=2, progress=False, out_dir=str(out)), out


def test_evaluate_reports_baselines_and_the_best_one(digits_report):
    report, out = digits_report
    assert list(report["results"]) == ["model", "copy_last", "flow", "black"]
    assert report["baselines"] == ["copy_last", "flow", "black"]
    for name in report["baselines"]:
        assert len(report["results"][name]["ssim"]["per_step"]) == report["horizon"]
    best = report["best_baseline"]
    mse = {b: report["results"][b]["mse"]["mean"] for b in report["baselines"]}
    assert best["mse"] == min(mse, key=mse.get)
    assert set(best) == {"mse", "mae", "psnr", "ssim", "ssim_uniform7"}
    assert len(report["best_baseline_per_step"]["mse"]) == report["horizon"]
    versus = report["model_vs_best_baseline"]
    assert versus["baseline"] == best["mse"]
    assert versus["mse_ratio"] == pytest.approx(
        report["results"]["model"]["mse"]["mean"] / mse[best["mse"]])
    assert versus["mse_reduction"] == pytest.approx(1 - versus["mse_ratio"])
    assert report["baseline_seconds_per_clip"]["flow"] > 0
    assert report["baseline_parameters"]["flow"]["winsize"] == B.FARNEBACK["winsize"]
    assert json.loads((out / "metrics.json").read_text())["best_baseline"] == best


def test_black_frame_is_kept_on_dark_digits(digits_report):
    black = digits_report[0]["black_frame"]
    assert black["included"] and black["context_mean"] < B.BLACK_FRAME_MAX_MEAN
    assert black["max_context_mean"] == B.BLACK_FRAME_MAX_MEAN and "rule" in black


def test_black_frame_is_left_out_on_bright_footage(tiny_run, tmp_path):
    clips = np.stack([translating_texture(8, size=16, channels=1, seed=i) for i in range(6)])
    path = tmp_path / "bright.npy"
    np.save(path, np.rint(64 + 191 * clips).astype(np.uint8))
    report = evaluate(tiny_run, data=str(path), progress=False, out_dir=str(tmp_path / "e"))
    assert report["black_frame"]["included"] is False
    assert report["black_frame"]["context_mean"] > 0.4
    assert "black" not in report["results"] and "black" not in report["baselines"]
    assert set(report["best_baseline"].values()) <= {"copy_last", "flow"}
    assert "all-black frame not reported" in summary_table(report)
    assert os.path.isfile(tmp_path / "e" / "plots" / "mse_per_step.png")
