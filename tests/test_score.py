"""`vidgen score`: streamed, teacher-forced prediction error as per-frame anomaly scores."""

import csv
import logging

import imageio.v2 as imageio
import numpy as np
import pytest

from tests.conftest import moving_square, write_mp4
from vidgen.cli import main
from vidgen.data import frames as framelib
from vidgen.errors import DataError, VidgenError
from vidgen.run_dir import load_run
from vidgen.score import (
    CSV_COLUMNS,
    FrameReader,
    anomaly_scores,
    conformed_frames,
    score_frames,
    score_video,
    top_peaks,
)
from vidgen.step_streamer import StepStreamer

FPS = 10.0
CONTEXT = 3   # tiny_run's data.context
JUMP = 20     # the first frame after the injected jump


def jumped_clip() -> np.ndarray:
    """uint8 (48, 32, 48, 3): the moving square, skipping 12 frames before frame JUMP."""
    clip = moving_square(60, 32, 48)
    return np.concatenate([clip[:JUMP], clip[JUMP + 12:]])


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_mp4(tmp_path_factory.mktemp("score") / "jump.mp4", jumped_clip(), FPS)


def save_npy(path, frames) -> str:
    np.save(path, frames)
    return str(path)


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_csv_has_one_row_per_frame_after_the_context(tiny_run, video, tmp_path):
    out = str(tmp_path / "scores.csv")
    result = score_video(tiny_run, video, out)
    rows = read_csv(out)
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [int(r["frame"]) for r in rows] == list(range(CONTEXT, len(jumped_clip())))
    assert result["frames_scored"] == len(rows) and result["frames_read"] == len(jumped_clip())
    for row in rows:
        assert float(row["time_s"]) == pytest.approx(int(row["frame"]) / FPS, abs=1e-3)
        for key in ("score", "copy_last_score"):
            assert 0.0 <= float(row[key]) <= 1.0
        assert float(row["mse"]) >= 0 and float(row["psnr"]) > 0
    scores = np.array([float(r["score"]) for r in rows])
    assert scores.min() == 0.0 and scores.max() == 1.0
    assert result["ms_per_frame"] > 0


def test_the_injected_jump_gets_the_top_score(tiny_run, video, tmp_path):
    result = score_video(tiny_run, video, str(tmp_path / "s.csv"), peaks=3)
    assert result["peaks"][0]["frame"] == JUMP
    assert result["peaks"][0]["score"] == 1.0
    # Copy-last sees the jump too: the comparison column is filled in.
    rows = read_csv(tmp_path / "s.csv")
    copy = {int(r["frame"]): float(r["copy_last_score"]) for r in rows}
    assert max(copy, key=copy.get) == JUMP


def test_streaming_equals_the_models_own_steps_and_observe(tiny_run, video):
    _, model = load_run(tiny_run)
    frames = np.stack(list(conformed_frames(FrameReader(video), model.frame_size,
                                            model.channels)))[:8].astype("float32") / 255
    streamer = StepStreamer(model)
    streamed = np.stack([streamer(f) for f in frames])
    states = model.initial_states(1)
    for t, frame in enumerate(frames):
        prediction, states = model.step(frame[None], states)
        np.testing.assert_allclose(streamed[t], np.asarray(prediction)[0], atol=1e-5)
        observed, _ = model.observe(frames[None, :t + 1])
        np.testing.assert_allclose(streamed[t], np.asarray(observed)[0], atol=1e-5)
    # The scored error of frame t is that of the prediction made from frames < t.
    errors = score_frames(model, frames, CONTEXT)
    expected = ((streamed[CONTEXT - 1:-1] - frames[CONTEXT:]) ** 2).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(errors.mse, expected, rtol=1e-5)
    copy = ((frames[CONTEXT - 1:-1] - frames[CONTEXT:]) ** 2).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(errors.copy_last_mse, copy, rtol=1e-5)


def test_frames_are_conformed_as_generate_reads_a_clip(video, caplog):
    with caplog.at_level(logging.INFO, logger="vidgen.score"):
        streamed = np.stack(list(conformed_frames(FrameReader(video), 16, 1, "clip")))
    np.testing.assert_array_equal(streamed, framelib.conform(framelib.read_video(video), 16, 1))
    notes = [r.getMessage() for r in caplog.records]
    assert notes == ["clip has RGB frames; the model takes grayscale frames: converting every "
                     "frame."]


def test_scores_are_normalised_psnr_and_peaks_are_apart():
    np.testing.assert_allclose(anomaly_scores([30.0, 20.0, 25.0]), [0.0, 1.0, 0.5])
    assert anomaly_scores([7.0, 7.0]).tolist() == [0.0, 0.0]
    scores = np.zeros(100)
    scores[[10, 11, 50, 90]] = [1.0, 0.9, 0.8, 0.7]
    assert top_peaks(scores, 3) == [10, 50, 90]
    assert top_peaks(scores, 2, separation=1) == [10, 11]


def test_cli_writes_csv_and_plot(tiny_run, video, tmp_path, capsys):
    out, plot = str(tmp_path / "scores.csv"), str(tmp_path / "scores.png")
    assert main(["score", tiny_run, "--input", video, "--out", out, "--plot", plot]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"Scored {len(jumped_clip()) - CONTEXT} frames (3-47")
    assert f"top peaks: frame {JUMP} (1.00)" in line and "ms per frame" in line
    image = imageio.imread(plot)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def test_context_flag_moves_the_first_scored_frame(tiny_run, video, tmp_path):
    result = score_video(tiny_run, video, str(tmp_path / "s.csv"), context=10, peaks=0)
    assert result["first_scored"] == 10 and result["peaks"] == []


@pytest.mark.parametrize("make, kwargs, message", [
    # Grayscale like the model: an RGB input would log its conversion (INFO) before the error.
    (lambda d: save_npy(d / "short.npy", moving_square(3, 32, 48, channels=1)), {},
     "has 3 frames; scoring with --context 3 needs at least 4"),
    (lambda d: write_mp4(d / "small.mp4", moving_square(8, 12, 20), FPS), {},
     "has 20x12 frames, smaller than the model's 16x16"),
    (lambda d: (d / "bad.mp4").write_bytes(b"not a video" * 50) and str(d / "bad.mp4"), {},
     "could not be decoded"),
    (lambda d: str(d / "missing.mp4"), {}, "does not exist"),
    (lambda d: (d / "clip.txt").write_text("x") and str(d / "clip.txt"), {},
     "unsupported kind"),
    (lambda d: write_mp4(d / "ok.mp4", moving_square(8, 32, 48), FPS), {"out": "s.txt"},
     "--out must end in .csv"),
    (lambda d: write_mp4(d / "ok.mp4", moving_square(8, 32, 48), FPS), {"plot": "s.jpg"},
     "--plot must end in .png"),
])
def test_user_errors_are_one_sentence(tiny_run, tmp_path, capsys, make, kwargs, message):
    path = make(tmp_path)
    argv = ["score", tiny_run, "--input", path, "--out", kwargs.get("out", str(tmp_path / "s.csv"))]
    if "plot" in kwargs:
        argv += ["--plot", kwargs["plot"]]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_library_errors_are_vidgen_errors(tiny_run):
    _, model = load_run(tiny_run)
    with pytest.raises(DataError, match="scoring with context 3 needs at least 4") as error:
        score_frames(model, np.zeros((3, 16, 16, 1), np.float32), CONTEXT)
    assert "scoring with --context 3 needs at least 4" in error.value.with_flags()
    # The library names its argument; the command line names the flag (above).
    with pytest.raises(VidgenError, match="^context must be positive"):
        score_frames(model, np.zeros((3, 16, 16, 1), np.float32), 0)
