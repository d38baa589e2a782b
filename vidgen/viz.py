"""Looking at clips: GIF / MP4 / PNG writers, side-by-side grids, metric curves.

Every writer takes frames as uint8 or float in [0, 1], shaped (T, H, W, C),
and writes atomically (a temporary file in the same folder, then a rename),
so a reader never finds half a GIF.

Example:

    from vidgen import viz
    video = viz.side_by_side([context_and_truth, context_and_prediction])
    viz.write_gif("sample.gif", video, fps=4)
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

from vidgen import fileio
from vidgen.errors import DataError


def to_uint8(frames) -> np.ndarray:
    """float in [0, 1] (clipped) or uint8 -> uint8, same shape."""
    frames = np.asarray(frames)
    if frames.dtype == np.uint8:
        return frames
    if not np.issubdtype(frames.dtype, np.floating):
        raise DataError(f"Expected uint8 or float frames. Received dtype {frames.dtype}")
    return (np.clip(np.nan_to_num(frames), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _as_video(frames) -> np.ndarray:
    frames = to_uint8(frames)
    if frames.ndim == 3:
        frames = frames[..., None]
    if frames.ndim != 4 or frames.shape[-1] not in (1, 3) or len(frames) == 0:
        raise DataError(
            "Expected a clip shaped (time, height, width, 1 or 3) with at least one frame. "
            f"Received {frames.shape}")
    return frames


def _tmp_path(path: str) -> str:
    return fileio.temporary_name(path)


def _finish(tmp: str, path: str) -> str:
    return fileio.commit(tmp, path)


def _ensure_dir(path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)


def write_gif(path: str, frames, fps: float = 4.0) -> str:
    """Writes a looping animated GIF. Returns `path`."""
    import imageio.v2 as imageio

    video = _as_video(frames)
    _ensure_dir(path)
    tmp = _tmp_path(path)
    images = [f[..., 0] if f.shape[-1] == 1 else f for f in video]
    imageio.mimsave(tmp, images, format="GIF", duration=1000.0 / fps, loop=0)
    return _finish(tmp, path)


def write_mp4(path: str, frames, fps: float = 8.0) -> str:
    """Writes an H.264 MP4 (yuv420p, `+faststart`) that browsers and phones play.

    Encoded with the ffmpeg binary that imageio-ffmpeg ships (libx264, CRF 17:
    near-lossless at these small sizes). yuv420p needs even sides, so an odd
    height or width gets one replicated row or column. Grey clips are written
    as RGB.
    """
    import imageio_ffmpeg

    video = _as_video(frames)
    if video.shape[-1] == 1:
        video = np.repeat(video, 3, axis=-1)
    pad_h, pad_w = video.shape[1] % 2, video.shape[2] % 2
    if pad_h or pad_w:
        video = np.pad(video, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    h, w = video.shape[1:3]
    _ensure_dir(path)
    tmp = _tmp_path(path)
    writer = imageio_ffmpeg.write_frames(
        tmp, (w, h), pix_fmt_in="rgb24", pix_fmt_out="yuv420p", fps=fps, codec="libx264",
        quality=None, macro_block_size=1, ffmpeg_log_level="error",
        output_params=["-crf", "17", "-preset", "medium", "-movflags", "+faststart",
                       "-f", "mp4"])
    try:
        writer.send(None)  # starts ffmpeg
        for frame in video:
            writer.send(np.ascontiguousarray(frame))
        writer.close()
    except (OSError, RuntimeError, BrokenPipeError) as e:
        writer.close()
        if os.path.exists(tmp):
            os.remove(tmp)
        raise DataError(f"ffmpeg could not write the H.264 video {path!r}: {e}") from e
    return _finish(tmp, path)


def write_png(path: str, image) -> str:
    """Writes one image (H, W, C) as PNG."""
    import imageio.v2 as imageio

    image = to_uint8(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    _ensure_dir(path)
    tmp = _tmp_path(path)
    imageio.imwrite(tmp, image, format="PNG")
    return _finish(tmp, path)


def write_video(path: str, frames, fps: float = 4.0) -> str:
    """Writes a clip as .gif or .mp4 (by extension), or a .png filmstrip of its frames."""
    ext = os.path.splitext(path)[1].lower()
    if ext == ".gif":
        return write_gif(path, frames, fps)
    if ext in (".mp4", ".m4v"):
        return write_mp4(path, frames, fps)
    if ext == ".png":
        return write_png(path, filmstrip([frames]))
    raise DataError(f"Output {path!r} must end in .gif, .mp4 or .png. Received {ext or 'none'!r}")


def _match_channels(videos: list[np.ndarray]) -> list[np.ndarray]:
    if any(v.shape[-1] == 3 for v in videos):
        return [np.repeat(v, 3, axis=-1) if v.shape[-1] == 1 else v for v in videos]
    return videos


def side_by_side(clips: Sequence, pad: int = 2, pad_value: int = 128) -> np.ndarray:
    """Places clips next to each other in one video.

    Shorter clips hold black frames after their end, so a context-only
    clip can sit beside context + prediction. Heights must match.

    Args:
        clips: clips (T_i, H, W_i, C).
        pad: grey pixels between clips.

    Returns:
        uint8 (max T_i, H, sum W_i + pads, C).
    """
    videos = _match_channels([_as_video(c) for c in clips])
    heights = {v.shape[1] for v in videos}
    if len(heights) != 1:
        raise DataError(f"Clips placed side by side need one height. Received {sorted(heights)}")
    t = max(len(v) for v in videos)
    h, c = videos[0].shape[1], videos[0].shape[3]
    parts = []
    for i, v in enumerate(videos):
        if len(v) < t:
            v = np.concatenate([v, np.zeros((t - len(v),) + v.shape[1:], np.uint8)])
        parts.append(v)
        if i < len(videos) - 1 and pad:
            parts.append(np.full((t, h, pad, c), pad_value, np.uint8))
    return np.concatenate(parts, axis=2)


def tile(clips: Sequence, columns: int, pad: int = 2, pad_value: int = 128) -> np.ndarray:
    """Arranges clips of one size in a grid, as one video (T, rows*H, columns*W, C)."""
    videos = _match_channels([_as_video(c) for c in clips])
    if not videos:
        raise DataError("tile needs at least one clip.")
    rows = []
    for r in range(0, len(videos), columns):
        row = list(videos[r:r + columns])
        while len(row) < columns:
            row.append(np.zeros_like(videos[0]))
        rows.append(side_by_side(row, pad, pad_value))
    t = max(len(r) for r in rows)
    padded = []
    for i, r in enumerate(rows):
        if len(r) < t:
            r = np.concatenate([r, np.zeros((t - len(r),) + r.shape[1:], np.uint8)])
        padded.append(r)
        if i < len(rows) - 1 and pad:
            padded.append(np.full((t, pad, r.shape[2], r.shape[3]), pad_value, np.uint8))
    return np.concatenate(padded, axis=1)


def filmstrip(rows: Sequence, pad: int = 2, pad_value: int = 128) -> np.ndarray:
    """One still image: row i shows the frames of clip i from left to right.

    Use it for context | truth | prediction grids: pass
    `[concat(context, truth), concat(context, prediction)]`.

    Returns:
        uint8 (rows*H + pads, max T*W + pads, C).
    """
    videos = _match_channels([_as_video(c) for c in rows])
    lines = []
    for v in videos:
        frames = [f for f in v]
        lines.append(side_by_side([f[None] for f in frames], pad, pad_value)[0])
    width = max(line.shape[1] for line in lines)
    c = lines[0].shape[2]
    out = []
    for i, line in enumerate(lines):
        if line.shape[1] < width:
            line = np.concatenate(
                [line, np.zeros((line.shape[0], width - line.shape[1], c), np.uint8)], axis=1)
        out.append(line)
        if i < len(lines) - 1 and pad:
            out.append(np.full((pad, width, c), pad_value, np.uint8))
    return np.concatenate(out, axis=0)


def plot_curves(path: str, curves: Mapping[str, Sequence[float]], title: str = "",
                xlabel: str = "predicted frame", ylabel: str = "",
                x: Sequence[float] | None = None) -> str:
    """Plots named curves (e.g. PSNR per predicted step for model and baselines) to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not curves:
        raise DataError("plot_curves needs at least one curve.")
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for name, values in curves.items():
        values = np.asarray(values, dtype=float)
        xs = np.arange(1, len(values) + 1) if x is None else np.asarray(x)
        ax.plot(xs, values, marker="o", markersize=3, label=name)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    _ensure_dir(path)
    tmp = _tmp_path(path)
    fig.savefig(tmp, format="png")
    plt.close(fig)
    return _finish(tmp, path)


def sample_video(context: np.ndarray, target: np.ndarray, prediction: np.ndarray) -> np.ndarray:
    """One video of clips stacked vertically; each row: context+truth | context+prediction."""
    rows = []
    for c, t, p in zip(context, target, prediction):
        truth = np.concatenate([c, t], axis=0)
        pred = np.concatenate([c, p], axis=0)
        rows.append(side_by_side([truth, pred]))
    return tile(rows, columns=1)
