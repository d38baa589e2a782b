"""`vidgen generate` and `vidgen-export run-tflite` on RGB footage models, and their bad input."""

import logging

import cv2
import imageio.v2 as imageio
import numpy as np
import pytest

from tests.conftest import moving_square, write_mp4
from tests.footage_helpers import make_rgb_flow_run
from vidgen.cli import main
from vidgen.data import frames as framelib
from vidgen.errors import DataError
from vidgen.generate import generate, load_input_clip


@pytest.fixture(scope="module")
def flow_run(tmp_path_factory):
    return make_rgb_flow_run(tmp_path_factory.mktemp("flow_run"))


@pytest.fixture(scope="module")
def rgb_video(tmp_path_factory):
    """An RGB mp4, 12 frames of 24x32 (bigger than the model's 16x16: conformed, not refused)."""
    return write_mp4(tmp_path_factory.mktemp("video") / "clip.mp4",
                     moving_square(12, 24, 32, channels=3))


def test_generate_continues_an_rgb_video(flow_run, rgb_video, tmp_path, capsys):
    out = tmp_path / "out.mp4"
    assert main(["generate", flow_run, "--input", rgb_video, "--out", str(out),
                 "--horizon", "4"]) == 0, capsys.readouterr().err
    frames = imageio.mimread(str(out))
    assert len(frames) == 3 + 4 and frames[0].shape == (16, 16, 3)
    compare = imageio.mimread(str(tmp_path / "out_compare.mp4"))
    assert len(compare) == 3 + 4 and compare[0].shape[1] >= 2 * 16
    assert "Generated 4 frames after 3" in capsys.readouterr().out


def test_run_tflite_continues_an_rgb_video(flow_run, rgb_video, tmp_path):
    from export.cli import main as export_main
    from export.runner import StepRunner
    from export.tflite import export_tflite
    from vidgen.run_dir import load_run

    step = export_tflite(flow_run, "float32", out_dir=str(tmp_path / "tflite"),
                         sequence=False, report_clips=0)["step"]
    out = tmp_path / "edge.mp4"
    assert export_main(["run-tflite", step, "--input", rgb_video, "--context", "3",
                        "--horizon", "4", "--out", str(out)]) == 0
    frames = imageio.mimread(str(out))
    assert len(frames) == 3 + 4 and frames[0].shape == (16, 16, 3)
    assert (tmp_path / "edge_compare.mp4").exists()
    # What run-tflite predicted is the Keras model's prediction on the same frames.
    clip, _ = load_input_clip(rgb_video, 16, 3, context=3, horizon=4)
    _, model = load_run(flow_run)
    np.testing.assert_allclose(StepRunner(step).rollout(clip[:3], 4),
                               np.asarray(model.rollout(clip[None, :3], 4))[0], atol=1e-4)


@pytest.mark.parametrize("make_input, extra, message", [
    (lambda d: write_mp4(d / "short.mp4", moving_square(2, 16, 16)), [],
     "has 2 frames from frame 0; --context 3 needs at least 3: use a smaller --context or a "
     "longer clip."),
    (lambda d: write_mp4(d / "late.mp4", moving_square(6, 16, 16)), ["--start", "4"],
     "has 2 frames from frame 4; --context 3 needs at least 3: use a smaller --context or "
     "--start or a longer clip."),
    (lambda d: (d / "x.mp4").write_bytes(np.random.default_rng(0).bytes(5000)) and str(
        d / "x.mp4"), [], "could not be decoded: expected a video that OpenCV or ffmpeg can "
     "read, received a file of 5000 bytes with no decodable frame."),
    (lambda d: write_mp4(d / "small.mp4", moving_square(8, 10, 12)), [],
     "has 12x10 frames, smaller than the model's 16x16: expected frames at least 16 pixels"),
])
def test_generate_bad_input_is_one_sentence(flow_run, tmp_path, capsys, make_input, extra,
                                            message):
    path = make_input(tmp_path)
    out = tmp_path / "o.gif"
    assert main(["generate", flow_run, "--input", path, "--out", str(out)] + extra) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_a_short_input_names_the_arguments_in_the_library(tmp_path):
    video = write_mp4(tmp_path / "late.mp4", moving_square(6, 16, 16))
    with pytest.raises(DataError, match=r"^Input .* has 2 frames from frame 4; context 3 needs "
                                        r"at least 3: use a smaller context or start or a "
                                        r"longer clip\.$") as error:
        load_input_clip(video, 16, 3, context=3, start=4)
    # The command lines (generate, vidgen-serve predict, vidgen-export run-tflite) name flags.
    assert "use a smaller --context or --start or" in error.value.with_flags()


def test_frames_smaller_than_a_64x64_model_are_refused_not_upscaled(tmp_path):
    video = write_mp4(tmp_path / "tiny.mp4", moving_square(8, 20, 24))
    with pytest.raises(DataError, match="has 24x20 frames, smaller than the model's 64x64"):
        load_input_clip(video, 64, 3, context=4)


def test_grayscale_model_given_rgb_footage_logs_the_conversion_once(tiny_run, rgb_video,
                                                                    tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="vidgen.generate"):
        result = generate(tiny_run, rgb_video, str(tmp_path / "o.gif"), horizon=2)
    assert result["written"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"Input {rgb_video!r} has RGB frames but the model takes grayscale "
                        "frames: converted to grayscale (ITU-R 601 luma)."]
    assert imageio.mimread(str(tmp_path / "o.gif"))[0].shape[:2] == (16, 16)


def test_rgb_model_given_grayscale_frames_logs_the_conversion_once(flow_run, tmp_path, caplog):
    clip = tmp_path / "gray.npy"
    np.save(clip, moving_square(6, 16, 16, channels=1)[..., 0])
    with caplog.at_level(logging.WARNING, logger="vidgen.generate"):
        generate(flow_run, str(clip), str(tmp_path / "o.gif"), horizon=2)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"Input {str(clip)!r} has grayscale frames but the model takes RGB "
                        "frames: converted to RGB (the gray value repeated in each channel)."]
    frames, _ = load_input_clip(str(clip), 16, 3, context=3)
    np.testing.assert_array_equal(frames[..., 0], frames[..., 2])


class CountingCapture:
    """cv2.VideoCapture that counts the frames it decodes (grab and read)."""

    decoded = 0

    def __init__(self, *args):
        self._cap = REAL_CAPTURE(*args)

    def grab(self):
        ok = self._cap.grab()
        CountingCapture.decoded += bool(ok)
        return ok

    def read(self):
        ok, frame = self._cap.read()
        CountingCapture.decoded += bool(ok)
        return ok, frame

    def __getattr__(self, name):
        return getattr(self._cap, name)


REAL_CAPTURE = cv2.VideoCapture


def test_generate_decodes_only_the_frames_it_uses(flow_run, tmp_path, monkeypatch):
    video = write_mp4(tmp_path / "long.mp4", moving_square(200, 24, 32, channels=3))
    everything = framelib.conform(framelib.read_video(video), 16, 3)
    monkeypatch.setattr(cv2, "VideoCapture", CountingCapture)
    CountingCapture.decoded = 0
    frames, read = load_input_clip(video, 16, 3, context=4, start=5, horizon=1)
    assert CountingCapture.decoded <= 10 and read == 5
    np.testing.assert_array_equal(np.round(frames * 255).astype(np.uint8), everything[5:10])
    CountingCapture.decoded = 0
    load_input_clip(video, 16, 3, context=4, start=5)   # no horizon: to the end
    assert CountingCapture.decoded == 200, "the counter sees every decoded frame"

    CountingCapture.decoded = 0
    result = generate(flow_run, video, str(tmp_path / "o.gif"), context=4, horizon=1, start=5)
    assert CountingCapture.decoded <= 10 and result["input_frames"] == 5


def test_frame_folders_and_npy_clips_read_only_the_frames_used(tmp_path):
    clip = moving_square(10, 24, 32, channels=3)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(clip):
        cv2.imwrite(str(folder / f"f{i}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    np.save(tmp_path / "clip.npy", clip)
    want = framelib.conform(clip, 16, 3)[2:7]
    for path in (str(folder), str(tmp_path / "clip.npy")):
        frames, read = load_input_clip(path, 16, 3, context=3, start=2, horizon=2)
        assert read == 5
        np.testing.assert_array_equal(np.round(frames * 255).astype(np.uint8), want)
