"""Decoding and conforming frames: video files, resize, crop, channels.

Folders of frame images are read by `vidgen.data.frame_folders`.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable
from typing import Optional

import cv2
import numpy as np

from vidgen.errors import DataArgumentError, DataError

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")


def natural_key(name: str) -> list:
    """Sort key that orders `frame2.png` before `frame10.png`."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def cover_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """(h, w) with the shorter side resized to `size`, the aspect ratio kept."""
    scale = size / min(height, width)
    return max(size, int(round(height * scale))), max(size, int(round(width * scale)))


def shrink(frame: np.ndarray, size: int) -> np.ndarray:
    """Resizes one (H, W, C) frame so its shorter side is `size`, only when it is larger.

    Used while decoding, so a clip is held at the size `conform` needs, not at
    the file's (a 4K video is never held whole in memory).
    """
    h, w = frame.shape[:2]
    if not size or min(h, w) <= size:
        return frame
    nh, nw = cover_shape(h, w, size)
    out = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_AREA)
    return out.reshape(nh, nw, frame.shape[2]) if frame.ndim == 3 else out


def conform(frames: np.ndarray, size: int, channels: int, crop: str = "center",
            rng: Optional[np.random.Generator] = None) -> np.ndarray:
    """Converts a clip to square `size` frames with `channels` channels.

    The shorter side is resized to `size` (area interpolation when shrinking),
    then the longer side is cropped, at the centre or at a random offset that
    is the same for every frame of the clip.

    Args:
        frames: uint8 (T, H, W, C) with C in {1, 3} (RGB order).
        size: output height and width.
        channels: 1 (grayscale, ITU-R 601 luma) or 3 (RGB).
        crop: "center" or "random".
        rng: generator for random crops.

    Returns:
        uint8 (T, size, size, channels).
    """
    if frames.ndim != 4 or frames.shape[-1] not in (1, 3):
        raise DataError(
            f"Expected frames shaped (time, height, width, 1 or 3). Received: {frames.shape}")
    t, h, w, c = frames.shape
    if c != channels:
        if channels == 1:
            frames = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames])[..., None]
        else:
            frames = np.repeat(frames, 3, axis=-1)
    if (h, w) == (size, size):
        return np.ascontiguousarray(frames)
    nh, nw = cover_shape(h, w, size)
    if (nh, nw) == (h, w):
        out = frames
    else:
        interp = cv2.INTER_AREA if size < min(h, w) else cv2.INTER_LINEAR
        out = np.empty((t, nh, nw, channels), np.uint8)
        for i, frame in enumerate(frames):
            out[i] = cv2.resize(frame, (nw, nh), interpolation=interp).reshape(nh, nw, channels)
    if crop == "random" and rng is not None:
        top = int(rng.integers(nh - size + 1))
        left = int(rng.integers(nw - size + 1))
    else:
        top, left = (nh - size) // 2, (nw - size) // 2
    return np.ascontiguousarray(out[:, top:top + size, left:left + size])


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """What a video's header says: frames, frames per second (0: unknown), width, height."""

    frames: int
    fps: float
    width: int
    height: int


def probe_video(path: str) -> VideoInfo:
    """Reads a video's frame count, rate and size without decoding its frames.

    Raises:
        DataError: the file is missing or neither OpenCV nor ffmpeg can open it.
    """
    if not os.path.isfile(path):
        raise DataError(f"Video file {path!r} does not exist.")
    cap = cv2.VideoCapture(path)
    try:
        if cap.isOpened():
            frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
            info = VideoInfo(frames, float(cap.get(cv2.CAP_PROP_FPS) or 0.0),
                             int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
                             int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
            if frames <= 0 and info.width > 0:
                # Some containers (webm, mkv without an index) do not store a count.
                count = 0
                while cap.grab():
                    count += 1
                info = dataclasses.replace(info, frames=count)
            if info.frames > 0 and info.width > 0:
                return info
    finally:
        cap.release()
    info = _probe_ffmpeg(path)
    if info is None:
        raise _undecodable(path)
    return info


def _probe_ffmpeg(path: str) -> Optional[VideoInfo]:
    try:
        import imageio_ffmpeg
    except ImportError:  # pragma: no cover - imageio-ffmpeg is a pinned requirement
        return None
    try:
        reader = imageio_ffmpeg.read_frames(path)
        meta = next(reader)
        reader.close()
        frames, _ = imageio_ffmpeg.count_frames_and_secs(path)
    except (RuntimeError, OSError, StopIteration, KeyError, ValueError):
        return None
    if frames <= 0:
        return None
    w, h = meta["size"]
    return VideoInfo(int(frames), float(meta.get("fps") or 0.0), int(w), int(h))


def _undecodable(path: str) -> DataError:
    return DataError(
        f"Video file {path!r} could not be decoded: expected a readable "
        f"{'/'.join(e.lstrip('.') for e in VIDEO_EXTENSIONS)} video, received a "
        f"file of {os.path.getsize(path)} bytes with no decodable frame.")


def frame_step(source_fps: float, fps: float = 0.0, frame_stride: int = 1,
               path: str = "video") -> float:
    """Source frames per kept frame: `frame_stride`, times source_fps / fps when resampling.

    Raises:
        DataError: `fps` is above the source's rate or the source's rate is unknown.
    """
    if not fps:
        return float(frame_stride)
    if source_fps <= 0:
        raise DataArgumentError(
            f"Video {path!r} has no frame rate in its header, so data.fps={fps:g} cannot "
            "resample it: use {data.fps}=0 and {data.frame_stride}=N instead.",
            "data.fps", "data.frame_stride")
    if fps > source_fps * 1.001:
        raise DataArgumentError(
            f"Video {path!r} has {source_fps:g} fps, below data.fps={fps:g}: expected "
            f"data.fps <= {source_fps:g} (resampling never repeats frames), so use "
            f"{{data.fps}}={source_fps:g} or lower.", "data.fps")
    return frame_stride * source_fps / fps


def _index(j: int, step: float) -> int:
    # The nearest earlier source frame of output time j / fps; the epsilon keeps
    # exact ratios (50 fps -> 12.5 fps: step 4.0) exact despite float rounding.
    return int(np.floor(j * step + 1e-6))


def frame_indices(num_frames: int, step: float, start: int = 0, max_frames: int = 0
                  ) -> np.ndarray:
    """The source frame indices kept from `num_frames` frames, `step` source frames apart.

    Output frame j (counted from `start`, at most `max_frames` of them, 0: all)
    is source frame floor(j * step): the nearest earlier frame of its time.
    """
    count = int(np.ceil(num_frames / step)) + 1
    indices = np.floor(np.arange(count) * step + 1e-6).astype(np.int64)
    indices = indices[indices < num_frames][start:]
    return indices[:max_frames] if max_frames else indices


def read_video(path: str, frame_stride: int = 1, max_frames: int = 0, *, fps: float = 0.0,
               size: int = 0, start: int = 0) -> np.ndarray:
    """Decodes a video file with OpenCV, falling back to ffmpeg (imageio-ffmpeg).

    Frames are resampled while decoding (`fps`, then `frame_stride`), and each
    kept frame is shrunk to `size` at once, so memory holds
    frames x `size`^2 pixels, not frames x the file's resolution. Frames
    before `start` are skipped without conversion.

    Args:
        path: a video file.
        frame_stride: keep every n-th frame (after `fps` resampling).
        max_frames: stop after this many kept frames (0: all).
        fps: resample to this rate by taking, for each output time, the
            nearest earlier frame (0: the file's own rate).
        size: shrink frames whose shorter side is larger to this (0: keep).
        start: first kept frame to return, counted in kept frames.

    Returns:
        uint8 (T, H, W, 3), RGB.

    Raises:
        DataError: the file is missing, no frame can be decoded from it, or
            `fps` cannot be reached.

    Example:

        clip = read_video("street.mp4", fps=12.5, size=80, start=100, max_frames=20)
    """
    return np.stack(decode_video(path, frame_stride, max_frames, fps=fps, start=start,
                                 size_of=lambda j: size))


def decode_video(path: str, frame_stride: int = 1, max_frames: int = 0, *, fps: float = 0.0,
                 start: int = 0, size_of: Optional[Callable[[int], Optional[int]]] = None
                 ) -> list[Optional[np.ndarray]]:
    """`read_video` with a size per kept frame: one pass for segments stored at other sizes.

    Args:
        path, frame_stride, max_frames, fps, start: as for `read_video`.
        size_of: kept frame index j (counted from 0, not from `start`) ->
            the side to shrink it to (0: as decoded), or None: not needed,
            skipped without conversion and returned as None. None: all as decoded.

    Returns:
        One uint8 (H, W, 3) RGB frame or None per kept frame.
    """
    if not os.path.isfile(path):
        raise DataError(f"Video file {path!r} does not exist.")
    size_of = size_of or (lambda j: 0)
    frames = _read_opencv(path, frame_stride, max_frames, fps, size_of, start)
    if frames is None:
        frames = _read_ffmpeg(path, frame_stride, max_frames, fps, size_of, start)
    if not frames:
        if frames is not None and start:
            raise DataError(
                f"Video file {path!r} has no frame at or after kept frame {start}: expected "
                "a smaller start.")
        raise _undecodable(path)
    return frames


def _wanted(step: float, start: int, max_frames: int):
    j = start
    while not max_frames or j < start + max_frames:
        yield _index(j, step)
        j += 1


def _read_opencv(path, frame_stride, max_frames, fps, size_of, start):
    """Kept frames, or None when OpenCV cannot decode the file at all."""
    cap = cv2.VideoCapture(path)
    frames: list[np.ndarray] = []
    try:
        if not cap.isOpened():
            return None
        step = frame_step(cap.get(cv2.CAP_PROP_FPS) or 0.0, fps, frame_stride, path)
        wanted = _wanted(step, start, max_frames)
        target = next(wanted, None)
        index = 0
        any_frame = False
        while target is not None:
            if not cap.grab():
                break
            any_frame = True
            if index == target:
                size = size_of(start + len(frames))
                if size is None:
                    frames.append(None)
                else:
                    ok, frame = cap.retrieve()
                    if not ok or frame is None:
                        break
                    frames.append(cv2.cvtColor(shrink(frame, size), cv2.COLOR_BGR2RGB))
                target = next(wanted, None)
            index += 1
    finally:
        cap.release()
    return frames if any_frame else None


def _read_ffmpeg(path, frame_stride, max_frames, fps, size_of, start):
    try:
        import imageio_ffmpeg
    except ImportError:  # pragma: no cover - imageio-ffmpeg is a pinned requirement
        return []
    frames: list[np.ndarray] = []
    try:
        reader = imageio_ffmpeg.read_frames(path)
        meta = next(reader)
        w, h = meta["size"]
        step = frame_step(float(meta.get("fps") or 0.0), fps, frame_stride, path)
        wanted = _wanted(step, start, max_frames)
        target = next(wanted, None)
        for index, raw in enumerate(reader):
            if target is None:
                break
            if index == target:
                size = size_of(start + len(frames))
                frame = None if size is None else np.ascontiguousarray(
                    shrink(np.frombuffer(raw, np.uint8).reshape(h, w, 3), size))
                frames.append(frame)
                target = next(wanted, None)
        reader.close()
    except (RuntimeError, OSError, StopIteration, KeyError, ValueError):
        return frames
    return frames


def check_same_size(path: str, frame: np.ndarray, first: tuple[str, tuple[int, ...]]) -> None:
    """Refuses a frame of another size than the clip's first, naming both.

    Args:
        path: where `frame` was read.
        frame: the frame, (H, W, C).
        first: (name, shape) of the clip's first frame read.

    Raises:
        DataError: the two sizes differ.
    """
    name, shape = first
    if frame.shape[:2] != tuple(shape[:2]):
        raise DataError(
            f"Frame {path!r} is {frame.shape[1]}x{frame.shape[0]} but the clip's first frame "
            f"{name!r} is {shape[1]}x{shape[0]}: all frames of a clip must have one size.")
