"""Decoding and conforming frames: video files, image files, resize, crop, channels."""

from __future__ import annotations

import os
import re
from typing import Optional

import cv2
import numpy as np

from vidgen.errors import DataError

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")


def natural_key(name: str) -> list:
    """Sort key that orders `frame2.png` before `frame10.png`."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


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
    scale = size / min(h, w)
    nh, nw = max(size, int(round(h * scale))), max(size, int(round(w * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    out = np.empty((t, nh, nw, channels), np.uint8)
    for i, frame in enumerate(frames):
        out[i] = cv2.resize(frame, (nw, nh), interpolation=interp).reshape(nh, nw, channels)
    if crop == "random" and rng is not None:
        top = int(rng.integers(nh - size + 1))
        left = int(rng.integers(nw - size + 1))
    else:
        top, left = (nh - size) // 2, (nw - size) // 2
    return np.ascontiguousarray(out[:, top:top + size, left:left + size])


def read_video(path: str, frame_stride: int = 1, max_frames: int = 0) -> np.ndarray:
    """Decodes a video file with OpenCV, falling back to ffmpeg (imageio-ffmpeg).

    Args:
        path: a video file.
        frame_stride: keep every n-th frame.
        max_frames: stop after this many kept frames (0: all).

    Returns:
        uint8 (T, H, W, 3), RGB.

    Raises:
        DataError: the file is missing or no frame can be decoded from it.
    """
    if not os.path.isfile(path):
        raise DataError(f"Video file {path!r} does not exist.")
    frames = _read_opencv(path, frame_stride, max_frames)
    if not frames:
        frames = _read_ffmpeg(path, frame_stride, max_frames)
    if not frames:
        raise DataError(
            f"Video file {path!r} could not be decoded: expected a readable "
            f"{'/'.join(e.lstrip('.') for e in VIDEO_EXTENSIONS)} video, received a "
            f"file of {os.path.getsize(path)} bytes with no decodable frame.")
    return np.stack(frames)


def _read_opencv(path: str, frame_stride: int, max_frames: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(path)
    frames: list[np.ndarray] = []
    try:
        if not cap.isOpened():
            return frames
        index = 0
        while True:
            ok, frame = cap.read()
            if not ok or frame is None:
                break
            if index % frame_stride == 0:
                frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
                if max_frames and len(frames) >= max_frames:
                    break
            index += 1
    finally:
        cap.release()
    return frames


def _read_ffmpeg(path: str, frame_stride: int, max_frames: int) -> list[np.ndarray]:
    try:
        import imageio_ffmpeg
    except ImportError:  # pragma: no cover - imageio-ffmpeg is a pinned requirement
        return []
    frames: list[np.ndarray] = []
    try:
        reader = imageio_ffmpeg.read_frames(path)
        meta = next(reader)
        w, h = meta["size"]
        for index, raw in enumerate(reader):
            if index % frame_stride == 0:
                frames.append(np.frombuffer(raw, np.uint8).reshape(h, w, 3).copy())
                if max_frames and len(frames) >= max_frames:
                    break
        reader.close()
    except (RuntimeError, OSError, StopIteration, KeyError, ValueError):
        return frames
    return frames


def read_image(path: str) -> np.ndarray:
    """Reads one image as uint8 (H, W, C), C in {1, 3}, RGB order."""
    image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DataError(
            f"Frame {path!r} is not a readable image: expected a png/jpg/bmp file.")
    if image.dtype != np.uint8:
        image = (image / (np.iinfo(image.dtype).max / 255.0)).astype(np.uint8) \
            if np.issubdtype(image.dtype, np.integer) else np.clip(image * 255, 0, 255).astype(
                np.uint8)
    if image.ndim == 2:
        return image[..., None]
    if image.shape[2] == 4:
        image = image[..., :3]
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_frame_folder(folder: str) -> tuple[np.ndarray, list[str]]:
    """Reads a folder of frame images in natural sort order.

    Returns:
        (uint8 frames (T, H, W, C), names of non-image files that were ignored).

    Raises:
        DataError: no images, an unreadable image, or frames of mixed sizes.
    """
    if not os.path.isdir(folder):
        raise DataError(f"Frame folder {folder!r} does not exist.")
    names = sorted(os.listdir(folder), key=natural_key)
    images = [n for n in names if n.lower().endswith(IMAGE_EXTENSIONS)]
    ignored = [n for n in names if n not in images and not n.startswith(".")
               and os.path.isfile(os.path.join(folder, n))]
    if not images:
        raise DataError(
            f"Frame folder {folder!r} holds no frames: expected "
            f"{'/'.join(e.lstrip('.') for e in IMAGE_EXTENSIONS)} files, received "
            f"{len(names)} other entries.")
    frames = [read_image(os.path.join(folder, n)) for n in images]
    first = frames[0].shape
    for name, frame in zip(images, frames):
        if frame.shape[:2] != first[:2]:
            raise DataError(
                f"Frame {os.path.join(folder, name)!r} is {frame.shape[1]}x{frame.shape[0]} "
                f"but the clip's first frame {images[0]!r} is {first[1]}x{first[0]}: "
                "all frames of a clip must have one size.")
    channels = max(f.shape[2] for f in frames)
    if channels == 3:
        frames = [np.repeat(f, 3, axis=-1) if f.shape[2] == 1 else f for f in frames]
    return np.stack(frames), ignored
