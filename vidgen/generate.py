"""`vidgen generate`: continue a clip of your own with a trained model.

Optional post-processing (`vidgen.postprocess`): `--denoise` cleans the
generated frames only (the observed context frames are shown as they were
read); `--interpolate K` inserts K - 1 frames between each pair of frames
of the whole output, context and generated alike (the observed frames are
kept unchanged, new ones put between them, including between the last
observed and the first generated frame), so that the video has one frame
rate, K times the requested one, and lasts as long as without.

Input: only the frames used are decoded (`--start` .. `--start` + context +
horizon, the last `horizon` as the true continuation shown beside the
prediction when the input has them), each conformed to the model's frame
size as it is decoded. Frames smaller than the model's are refused, not
upscaled; a grayscale clip for an RGB model, or the reverse, is converted
with one logged warning.

Example:

    vidgen generate runs/quick --input clip.mp4 --context 10 --horizon 20 --out next.mp4
    vidgen generate runs/quick --input clip.mp4 --denoise learned --interpolate 4 --out smooth.mp4
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any, Optional

import cv2
import numpy as np

from vidgen import viz
from vidgen.data import frame_folders
from vidgen.data import frames as framelib
from vidgen.errors import ArgumentError, DataArgumentError, DataError

logger = logging.getLogger(__name__)

_CHANNEL_NAMES = {1: "grayscale", 3: "RGB"}


def check_input_kind(path: str) -> str:
    """"folder", "npy" or "video"; raises DataError for a missing or unsupported input."""
    if not os.path.exists(path):
        raise DataError(f"Input {path!r} does not exist: expected a video file, a folder of "
                        "frame images or an .npy clip.")
    if os.path.isdir(path):
        return "folder"
    lower = path.lower()
    if lower.endswith(".npy"):
        return "npy"
    if lower.endswith(framelib.VIDEO_EXTENSIONS):
        return "video"
    raise DataError(
        f"Input {path!r} is of an unsupported kind: expected a video "
        f"({', '.join(framelib.VIDEO_EXTENSIONS)}), a folder of frames or an .npy clip.")


def _load_npy(path: str, mmap: bool = False) -> np.ndarray:
    """The .npy clip as (T, H, W, C), C in {1, 3}; memory-mapped when `mmap` (read lazily)."""
    try:
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"Input {path!r} is not a readable .npy file: {e}") from None
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim != 4 or array.shape[-1] not in (1, 3):
        raise DataError(
            f"Input {path!r}: expected an .npy clip shaped (time, height, width) or (time, "
            f"height, width, 1 or 3). Received {array.shape}")
    if array.dtype != np.uint8 and not np.issubdtype(array.dtype, np.floating):
        raise DataError(f"Input {path!r}: expected uint8 or float frames. Received {array.dtype}")
    return array


def _npy_to_uint8(path: str, array: np.ndarray) -> np.ndarray:
    """uint8 frames of an .npy clip (float frames must be finite and in [0, 1])."""
    array = np.asarray(array)
    if array.dtype == np.uint8:
        return array
    if not np.isfinite(array).all():
        raise DataError(f"Input {path!r} contains NaN or Inf values.")
    if array.size and (array.min() < 0 or array.max() > 1):
        raise DataError(
            f"Input {path!r}: float frames must lie in [0, 1]. Received values in "
            f"[{array.min():.3g}, {array.max():.3g}]")
    return (array * 255 + 0.5).astype(np.uint8)


def read_clip(path: str) -> np.ndarray:
    """Reads a video file, a frame folder or an .npy clip as uint8 frames (T, H, W, C)."""
    kind = check_input_kind(path)
    if kind == "folder":
        frames, _ = frame_folders.read_frame_folder(path)
        return frames
    if kind == "npy":
        return _npy_to_uint8(path, _load_npy(path))
    return framelib.read_video(path)


def _undecodable(path: str) -> DataError:
    return DataError(
        f"Input {path!r} could not be decoded: expected a video that OpenCV or ffmpeg can "
        f"read, received a file of {os.path.getsize(path)} bytes with no decodable frame.")


def _video_frames(path: str, start: int, stop: Optional[int]) -> Iterator[np.ndarray]:
    """RGB frames start .. stop - 1 of a video; the decoder stops after frame stop - 1."""
    cap = cv2.VideoCapture(path)
    decoded = 0
    try:
        if cap.isOpened():
            # Frames before `start` are grabbed (decoded, never converted) rather than
            # skipped with CAP_PROP_POS_FRAMES: a seek lands on the nearest key frame
            # in some containers, which would silently shift the clip.
            while decoded < start and cap.grab():
                decoded += 1
            while stop is None or decoded < stop:
                ok, frame = cap.read()
                if not ok or frame is None:
                    break
                decoded += 1
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    finally:
        cap.release()
    if decoded == 0:
        # OpenCV's build may lack the codec; ffmpeg decodes more.
        yield from _ffmpeg_frames(path, start, stop)


def _ffmpeg_frames(path: str, start: int, stop: Optional[int]) -> Iterator[np.ndarray]:
    try:
        import imageio_ffmpeg  # only for the files OpenCV cannot decode
    except ImportError:  # pragma: no cover - imageio-ffmpeg is a pinned requirement
        raise _undecodable(path) from None
    try:
        reader = imageio_ffmpeg.read_frames(path)
        meta = next(reader)
    except (RuntimeError, OSError, StopIteration, KeyError, ValueError):
        raise _undecodable(path) from None
    w, h = meta["size"]
    decoded = 0
    try:
        for raw in reader:
            if stop is not None and decoded >= stop:
                break
            decoded += 1
            if decoded > start:
                yield np.frombuffer(raw, np.uint8).reshape(h, w, 3)
    except (RuntimeError, OSError):
        pass  # a truncated file: the frames before the damage are the clip
    finally:
        reader.close()
    if decoded == 0:
        raise _undecodable(path)


def _folder_frames(path: str, start: int, stop: Optional[int]) -> Iterator[np.ndarray]:
    names, _ = frame_folders.frame_folder_names(path)
    first = None
    for name in names[start:stop]:
        frame = frame_folders.read_image(os.path.join(path, name))
        if first is None:
            first = (name, frame.shape)
        else:
            framelib.check_same_size(os.path.join(path, name), frame, first)
        yield frame


def _npy_frames(path: str, start: int, stop: Optional[int]) -> Iterator[np.ndarray]:
    array = _load_npy(path, mmap=True)
    yield from _npy_to_uint8(path, array[start:stop])


def iter_frames(path: str, start: int = 0, stop: Optional[int] = None
                 ) -> Iterator[np.ndarray]:
    """Yields the uint8 (H, W, C) frames start .. stop - 1 of an input, reading no further.

    Args:
        path: a video file, a folder of frame images or an .npy clip.
        start: first frame.
        stop: one past the last frame (None: to the end).

    Raises:
        DataError: the input is missing, of an unsupported kind or cannot be decoded.
    """
    kind = check_input_kind(path)
    reader = {"folder": _folder_frames, "npy": _npy_frames, "video": _video_frames}[kind]
    return reader(path, start, stop)


def load_input_clip(input_path: str, frame_size: int, channels: int, context: int,
                    start: int = 0, horizon: Optional[int] = None) -> tuple[np.ndarray, int]:
    """Reads a clip for a model: frames from `start`, conformed, float32 in [0, 1].

    Only frames `start` .. `start + context + horizon - 1` are decoded, and each
    is conformed (`vidgen.data.frames.conform`, as in training) as soon as it is
    decoded, so a long or 4K video is never held whole in memory. Frames smaller
    than the model's are refused rather than upscaled: upscaling invents detail
    the model never saw in training, and its predictions would say nothing about
    the video. A grayscale clip for an RGB model (or the reverse) is converted,
    with one warning.

    Args:
        input_path: a video file, a folder of frame images or an .npy clip.
        frame_size: the model's frame height and width.
        channels: the model's channels (1 or 3).
        context: frames the model observes; the clip must have at least these.
        start: first frame of the input to use.
        horizon: frames after the context to read too, as the true continuation
            when the input has them (None: every frame to the end).

    Returns:
        (frames (T, frame_size, frame_size, channels), T: frames read from `start`).

    Raises:
        VidgenError: a bad argument, or (DataError) an unreadable, too short or too
            small input.
    """
    if context <= 0:
        raise ArgumentError(f"{{context}} must be positive. Received: {context}", "context")
    if start < 0:
        raise ArgumentError(f"{{start}} must be >= 0. Received: {start}", "start")
    stop = None if horizon is None else start + context + max(horizon, 0)
    clip: list[np.ndarray] = []
    for frame in iter_frames(input_path, start, stop):
        if not clip:
            _check_frame(input_path, frame, frame_size, channels)
        clip.append(framelib.conform(frame[None], frame_size, channels)[0])
    if len(clip) < context:
        raise DataArgumentError(
            f"Input {input_path!r} has {len(clip)} frames from frame {start}; {{context}} "
            f"{context} needs at least {context}: use a smaller {{context}}"
            + (" or {start}" if start else "") + " or a longer clip.", "context", "start")
    return np.stack(clip).astype(np.float32) / 255.0, len(clip)


def _check_frame(path: str, frame: np.ndarray, frame_size: int, channels: int) -> None:
    """Refuses frames smaller than the model's; logs a channel conversion once."""
    h, w, c = frame.shape
    if min(h, w) < frame_size:
        raise DataError(
            f"Input {path!r} has {w}x{h} frames, smaller than the model's "
            f"{frame_size}x{frame_size}: expected frames at least {frame_size} pixels on "
            "their shorter side (they are not upscaled, that would invent detail the model "
            "never saw).")
    if c != channels:
        how = ("to grayscale (ITU-R 601 luma)" if channels == 1
               else "to RGB (the gray value repeated in each channel)")
        logger.warning("Input %r has %s frames but the model takes %s frames: converted %s.",
                       path, _CHANNEL_NAMES[c], _CHANNEL_NAMES[channels], how)


def _smooth(clip: np.ndarray, interpolate: int, method: str) -> np.ndarray:
    if interpolate == 1 or len(clip) < 2:
        return clip
    # Imported when used, as in `generate`: `vidgen.postprocess` imports Keras.
    from vidgen.postprocess import interpolate as interpolate_clip

    return interpolate_clip(clip, interpolate, method)


def write_continuation(out: str, frames: np.ndarray, prediction: np.ndarray, context: int,
                       fps: float, interpolate: int = 1,
                       interpolate_method: str = "flow") -> list[str]:
    """Writes context + prediction to `out`, and `OUT_compare.EXT` when the truth is known.

    Args:
        out: .mp4, .gif or .png path.
        frames: the input frames (T, H, W, C) in [0, 1]; the first `context` were observed.
        prediction: the predicted frames (horizon, H, W, C).
        context: frames observed.
        fps: frames per second of the input; the output has `fps * interpolate`.
        interpolate: K - 1 frames are inserted between each pair of output frames
            (the true continuation in the comparison too).
        interpolate_method: "flow" or "linear" (`vidgen.postprocess.interpolate`).

    Returns:
        Paths written.
    """
    horizon = len(prediction)
    continuation = np.concatenate([frames[:context], prediction])
    out_fps = fps * interpolate
    smooth = _smooth(continuation, interpolate, interpolate_method)
    written = [viz.write_video(out, smooth, out_fps)]
    truth = frames[context:context + horizon]
    if len(truth) == horizon:
        # The input is long enough: show what really happened beside the prediction.
        root, ext = os.path.splitext(out)
        real = _smooth(frames[:context + horizon], interpolate, interpolate_method)
        compare = viz.side_by_side([real, smooth])
        written.append(viz.write_video(f"{root}_compare{ext}", compare, out_fps))
    return written


def check_output_path(out: str) -> None:
    """Rejects an output path that is not .mp4, .gif or .png."""
    ext = os.path.splitext(out)[1].lower()
    if ext not in (".mp4", ".gif", ".png"):
        raise ArgumentError(f"{{out}} must end in .mp4, .gif or .png. Received: {out!r}", "out")


def generate(run_dir: str, input_path: str, out: str, context: int = 0, horizon: int = 20,
             start: int = 0, fps: float = 4.0, samples: int = 1,
             seed: int = 0, denoise: str = "none", interpolate: int = 1,
             interpolate_method: str = "flow") -> dict[str, Any]:
    """Continues `input_path` with the run's model and writes the result.

    Args:
        run_dir: a run directory with model.keras.
        input_path: a video, a frame folder or an .npy clip.
        out: output .mp4, .gif or .png (filmstrip).
        context: frames given to the model (default: the run's context).
        horizon: frames to generate.
        start: first frame of the input to use.
        fps: frames per second of the output.
        samples: futures to draw; more than one also writes `OUT_samples.EXT`,
            a grid with the true continuation (when known) and every sample.
        seed: seed of the sampled futures (the same seed, the same futures).
        denoise: "none", "nlmeans", "median" or "learned" (RUN/denoiser.keras),
            applied to the generated frames only.
        interpolate: K: K - 1 frames inserted between each pair of output
            frames, written at `fps * K`.
        interpolate_method: "flow" (optical flow) or "linear" (cross-fade).

    Returns:
        Paths written, the frame counts used ("input_frames": frames read from
        `start`, at most context + horizon) and the post-processing applied.
    """
    # Imported when used: `vidgen.postprocess` and `vidgen.run_dir` import Keras, and
    # importing this module must not (the LiteRT runner reads and writes clips with it).
    from vidgen.postprocess import DENOISERS, INTERPOLATORS
    from vidgen.postprocess import denoise as denoise_clip
    from vidgen.postprocess.checks import check_factor
    from vidgen.postprocess.training import load_denoiser
    from vidgen.run_dir import load_run

    if denoise != "none" and denoise not in DENOISERS:
        raise ArgumentError(f"{{denoise}} must be one of none, {', '.join(DENOISERS)}. "
                            f"Received: {denoise!r}", "denoise")
    if interpolate_method not in INTERPOLATORS:
        raise ArgumentError(f"{{interpolate_method}} must be one of "
                            f"{', '.join(INTERPOLATORS)}. Received: {interpolate_method!r}",
                            "interpolate_method")
    interpolate = check_factor(interpolate)
    if samples <= 0:
        raise ArgumentError(f"{{samples}} must be positive. Received: {samples}", "samples")
    if horizon <= 0:
        raise ArgumentError(f"{{horizon}} must be positive. Received: {horizon}", "horizon")
    check_output_path(out)
    cfg, model = load_run(run_dir)
    denoiser = None
    if denoise == "learned":
        denoiser = load_denoiser(run_dir)
    context = context or cfg.data.context
    frames, total = load_input_clip(input_path, cfg.data.frame_size, cfg.data.channels,
                                    context, start, horizon)
    futures = np.asarray(model.rollout(frames[None, :context], horizon, num_samples=samples,
                                       seed=seed))[0]
    if denoise != "none":
        futures = np.stack([denoise_clip(f, denoise, model=denoiser) for f in futures])
    written = write_continuation(out, frames, futures[0], context, fps, interpolate,
                                 interpolate_method)
    if samples > 1:
        observed = frames[:context]
        clips = [np.concatenate([observed, f]) for f in futures]
        truth = frames[:context + horizon]
        if len(truth) == context + horizon:
            clips.insert(0, truth)
        clips = [_smooth(c, interpolate, interpolate_method) for c in clips]
        root, ext = os.path.splitext(out)
        columns = int(np.ceil(np.sqrt(len(clips))))
        written.append(viz.write_video(f"{root}_samples{ext}", viz.tile(clips, columns),
                                       fps * interpolate))
    return {"written": written, "context": context, "horizon": horizon, "input_frames": total,
            "samples": samples, "denoise": denoise, "interpolate": interpolate,
            "interpolate_method": interpolate_method, "fps": fps * interpolate}
