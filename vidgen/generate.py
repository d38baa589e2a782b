"""`vidgen generate`: continue a clip of your own with a trained model.

Optional post-processing (`vidgen.postprocess`): `--denoise` cleans the
generated frames only (the observed context frames are shown as they were
read); `--interpolate K` inserts K - 1 frames between each pair of frames
of the whole output, context and generated alike (the observed frames are
kept unchanged, new ones put between them, including between the last
observed and the first generated frame), so that the video has one frame
rate, K times the requested one, and lasts as long as without.

Example:

    vidgen generate runs/quick --input clip.mp4 --context 10 --horizon 20 --out next.mp4
    vidgen generate runs/quick --input clip.mp4 --denoise learned --interpolate 4 --out smooth.mp4
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from vidgen import viz
from vidgen.data import frames as framelib
from vidgen.errors import DataError, VidgenError


def read_clip(path: str) -> np.ndarray:
    """Reads a video file, a frame folder or an .npy clip as uint8 or float frames (T, H, W, C)."""
    if not os.path.exists(path):
        raise DataError(f"Input {path!r} does not exist: expected a video file, a folder of "
                        "frame images or an .npy clip.")
    if os.path.isdir(path):
        frames, _ = framelib.read_frame_folder(path)
        return frames
    lower = path.lower()
    if lower.endswith(".npy"):
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise DataError(f"Input {path!r} is not a readable .npy file: {e}") from None
        if array.ndim == 3:
            array = array[..., None]
        if array.ndim != 4 or array.shape[-1] not in (1, 3):
            raise DataError(
                f"Input {path!r}: expected an .npy clip shaped (time, height, width) or (time, "
                f"height, width, 1 or 3). Received {array.shape}")
        if array.dtype == np.uint8:
            return array
        if np.issubdtype(array.dtype, np.floating):
            if not np.isfinite(array).all():
                raise DataError(f"Input {path!r} contains NaN or Inf values.")
            if array.min() < 0 or array.max() > 1:
                raise DataError(
                    f"Input {path!r}: float frames must lie in [0, 1]. Received values in "
                    f"[{array.min():.3g}, {array.max():.3g}]")
            return (array * 255 + 0.5).astype(np.uint8)
        raise DataError(f"Input {path!r}: expected uint8 or float frames. Received {array.dtype}")
    if lower.endswith(framelib.VIDEO_EXTENSIONS):
        return framelib.read_video(path)
    raise DataError(
        f"Input {path!r} is of an unsupported kind: expected a video "
        f"({', '.join(framelib.VIDEO_EXTENSIONS)}), a folder of frames or an .npy clip.")


def load_input_clip(input_path: str, frame_size: int, channels: int, context: int,
                    start: int = 0) -> tuple[np.ndarray, int]:
    """Reads a clip for a model: frames from `start`, conformed, float32 in [0, 1].

    Returns:
        (frames (T, frame_size, frame_size, channels), frames in the input from `start`).
    """
    if context <= 0:
        raise VidgenError(f"--context must be positive. Received: {context}")
    if start < 0:
        raise VidgenError(f"--start must be >= 0. Received: {start}")
    raw = read_clip(input_path)[start:]
    if len(raw) < context:
        raise DataError(
            f"Input {input_path!r} has {len(raw)} frames from frame {start}; --context "
            f"{context} needs at least {context}.")
    clip = framelib.conform(raw, frame_size, channels)
    return clip.astype(np.float32) / 255.0, int(len(raw))


def _smooth(clip: np.ndarray, interpolate: int, method: str) -> np.ndarray:
    if interpolate == 1 or len(clip) < 2:
        return clip
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
        raise VidgenError(f"--out must end in .mp4, .gif or .png. Received: {out!r}")


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
        Paths written, the frame counts used and the post-processing applied.
    """
    from vidgen.evaluate import load_run
    from vidgen.postprocess import DENOISERS, INTERPOLATORS
    from vidgen.postprocess.checks import check_factor

    if denoise != "none" and denoise not in DENOISERS:
        raise VidgenError(f"--denoise must be one of none, {', '.join(DENOISERS)}. "
                          f"Received: {denoise!r}")
    if interpolate_method not in INTERPOLATORS:
        raise VidgenError(f"--interpolate-method must be one of {', '.join(INTERPOLATORS)}. "
                          f"Received: {interpolate_method!r}")
    interpolate = check_factor(interpolate)
    if samples <= 0:
        raise VidgenError(f"--samples must be positive. Received: {samples}")
    if horizon <= 0:
        raise VidgenError(f"--horizon must be positive. Received: {horizon}")
    check_output_path(out)
    cfg, model = load_run(run_dir)
    denoiser = None
    if denoise == "learned":
        from vidgen.postprocess.training import load_denoiser

        denoiser = load_denoiser(run_dir)
    context = context or cfg.data.context
    frames, total = load_input_clip(input_path, cfg.data.frame_size, cfg.data.channels,
                                    context, start)
    futures = np.asarray(model.rollout(frames[None, :context], horizon, num_samples=samples,
                                       seed=seed))[0]
    if denoise != "none":
        from vidgen.postprocess import denoise as denoise_clip

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
