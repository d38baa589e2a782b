import cv2
import imageio.v2 as imageio
import numpy as np
import pytest

from tests.conftest import moving_square
from vidgen import viz
from vidgen.errors import DataError


def test_gif_round_trip(tmp_path):
    clip = np.random.default_rng(0).random((5, 8, 8, 1)).astype(np.float32)
    path = viz.write_gif(str(tmp_path / "a.gif"), clip, fps=5)
    frames = imageio.mimread(path)
    assert len(frames) == 5 and frames[0].shape[:2] == (8, 8)
    assert [p.name for p in tmp_path.iterdir()] == ["a.gif"]


def _ffmpeg_video_stream(path: str) -> str:
    """The `Stream ... Video: ...` line ffmpeg prints for `path`."""
    import subprocess

    import imageio_ffmpeg

    out = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", path],
                         capture_output=True, text=True).stderr
    return next(line for line in out.splitlines() if "Video:" in line)


@pytest.mark.parametrize("shape", [(6, 16, 16, 1), (5, 15, 21, 3)])
def test_mp4_is_h264_yuv420p_and_decodes_back(tmp_path, shape):
    t, h, w, c = shape
    clip = moving_square(t, h, w, channels=1) if c == 1 else \
        np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    if c == 3:
        clip[:] = clip[:1]  # a still colour image: the codec's error stays small
    path = viz.write_mp4(str(tmp_path / "a.mp4"), clip)
    stream = _ffmpeg_video_stream(path)
    assert "Video: h264" in stream and "yuv420p" in stream, stream
    assert [p.name for p in tmp_path.iterdir()] == ["a.mp4"]
    cap = cv2.VideoCapture(path)
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    assert len(frames) == t
    # Odd sides are padded to even by one replicated row / column.
    assert frames[0].shape == (h + h % 2, w + w % 2, 3)
    truth = np.asarray(viz.to_uint8(clip), np.float32)
    if c == 1:
        truth = np.repeat(truth, 3, axis=-1)
    decoded = np.stack(frames).astype(np.float32)[:, :h, :w]
    if c == 1:
        assert np.abs(decoded - truth).mean() < 6.0
    else:
        # Chroma is subsampled 2x2 in yuv420p: compare luma-like means per frame.
        assert np.abs(decoded.mean(-1) - truth.mean(-1)).mean() < 25.0


def test_png_and_filmstrip(tmp_path):
    a = np.zeros((3, 4, 5, 1), np.uint8)
    b = np.full((2, 4, 5, 1), 255, np.uint8)
    strip = viz.filmstrip([a, b], pad=1)
    assert strip.shape == (4 * 2 + 1, 5 * 3 + 2, 1)
    assert strip[5:, :5].min() == 255 and strip[5:, -5:].max() == 0
    path = viz.write_png(str(tmp_path / "s.png"), strip)
    assert imageio.imread(path).shape == (9, 17)


def test_side_by_side_and_tile():
    a = np.zeros((4, 6, 6, 1), np.uint8)
    b = np.full((2, 6, 8, 3), 200, np.uint8)
    video = viz.side_by_side([a, b], pad=2)
    assert video.shape == (4, 6, 16, 3)
    assert video[3, :, 8:].max() == 0, "the shorter clip goes black after its end"
    grid = viz.tile([a, a, a], columns=2, pad=1)
    assert grid.shape == (4, 13, 13, 1)
    with pytest.raises(DataError, match="one height"):
        viz.side_by_side([a, np.zeros((4, 5, 6, 1), np.uint8)])


def test_to_uint8_clips_and_rejects_bad_dtype():
    out = viz.to_uint8(np.array([-1.0, 0.5, 2.0, np.nan]))
    assert out.tolist() == [0, 128, 255, 0]
    with pytest.raises(DataError, match="uint8 or float"):
        viz.to_uint8(np.array(["a"]))
    with pytest.raises(DataError, match="Expected a clip shaped"):
        viz.write_gif("x.gif", np.zeros((0, 4, 4, 1), np.uint8))


def test_plot_curves(tmp_path):
    curves = {"model": [30, 28, 26], "copy-last": [25, 22, 20]}
    path = viz.plot_curves(str(tmp_path / "p.png"), curves, title="PSNR per step", ylabel="dB")
    image = imageio.imread(path)
    assert image.shape[0] == 400 and image.shape[1] == 600


def test_write_video_unknown_extension(tmp_path):
    with pytest.raises(DataError, match="must end in .gif, .mp4 or .png"):
        viz.write_video(str(tmp_path / "a.avi"), np.zeros((2, 4, 4, 1), np.uint8))
