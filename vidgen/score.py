"""`vidgen score`: per-frame anomaly scores of a video from the model's prediction error.

A model of p(v_t | v_<t) trained on a camera's ordinary footage predicts its
next frame well when nothing unusual happens; an object that moves against
the flow, a cut, or time running backwards makes the prediction poor. The
video is streamed through the model's one-step function, one frame at a
time and teacher-forced (every prediction is made from the true previous
frames), so the cost per frame is constant and a long video is never held
whole: each frame is decoded, conformed to the model's size and channels
(shorter side resized, centre crop, as `vidgen generate` reads a clip) and
fed. After the first `context` frames, frame t is scored by the PSNR of the
model's prediction of it, normalised per video as in Liu et al. 2018:

    score_t = 1 - (PSNR_t - min_t PSNR) / (max_t PSNR - min_t PSNR)

so 1 is the least predictable frame of the video and 0 the most. The same
is computed for copy-last (the previous frame as the prediction), the
baseline a model must beat. MSE follows `vidgen.metrics` (per-frame sum over
pixels and channels of frames in [0, 1]); PSNR is per frame, peak 1.

Example:

    vidgen score runs/natural --input camera.mp4 --out scores.csv --plot scores.png

    from vidgen.score import score_video
    result = score_video("runs/natural", "camera.mp4", "scores.csv")
    result["peaks"]          # [{"frame": 412, "score": 1.0, ...}, ...]

Reference:
    W. Liu, W. Luo, D. Lian, S. Gao, "Future Frame Prediction for Anomaly
    Detection - A New Baseline", CVPR 2018.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import os
import time
from collections.abc import Iterable, Iterator
from typing import Any, Optional

import cv2
import numpy as np

from vidgen import fileio
from vidgen import metrics as M
from vidgen.calibration import floored
from vidgen.data import frames as framelib
from vidgen.errors import ArgumentError, DataArgumentError, DataError
from vidgen.generate import check_input_kind, iter_frames
from vidgen.run_dir import load_run
from vidgen.score_plot import plot_scores
from vidgen.step_streamer import StepStreamer

log = logging.getLogger(__name__)

CSV_COLUMNS = ("frame", "time_s", "mse", "psnr", "score",
               "copy_last_mse", "copy_last_psnr", "copy_last_score")
_CHANNEL_NAMES = {1: "grayscale", 3: "RGB"}


class FrameReader:
    """The frames of a video file, a frame folder or an .npy clip, one at a time.

    Iterating decodes from the start again (`vidgen.generate.iter_frames`), so
    the frames can be read twice (the plot's thumbnails) without holding the
    video.

    Args:
        path: a video file, a folder of frame images or an .npy clip.

    Attributes:
        fps: frames per second from the video's header, or None (folders,
            .npy clips, a header without a rate).
    """

    def __init__(self, path: str):
        self.path = path
        self.fps: Optional[float] = None
        if check_input_kind(path) == "video":
            cap = cv2.VideoCapture(path)
            rate = cap.get(cv2.CAP_PROP_FPS) if cap.isOpened() else 0.0
            cap.release()
            self.fps = float(rate) if rate and np.isfinite(rate) and rate > 0 else None

    def __iter__(self) -> Iterator[np.ndarray]:
        """Yields uint8 frames (H, W, C), C in {1, 3}, RGB order."""
        return iter_frames(self.path)


def conformed_frames(frames: Iterable[np.ndarray], size: int, channels: int,
                     name: str = "Input") -> Iterator[np.ndarray]:
    """Resizes and centre-crops each frame to (size, size, channels), as `generate` reads a clip.

    Args:
        frames: uint8 frames (H, W, C).
        size: the model's frame size.
        channels: the model's channels; other channels are converted (logged once).
        name: what the frames are called in errors and the log (e.g. the path).

    Yields:
        uint8 (size, size, channels).

    Raises:
        DataError: a frame is smaller than `size` on its shorter side (the model
            would see an upscaled, blurred frame).
    """
    noted = False
    for frame in frames:
        if frame.ndim == 2:
            frame = frame[..., None]
        h, w, c = frame.shape
        if min(h, w) < size:
            raise DataError(
                f"{name} has {w}x{h} frames, smaller than the model's {size}x{size}: expected "
                f"frames at least {size} pixels on their shorter side.")
        if c != channels and not noted:
            log.info("%s has %s frames; the model takes %s frames: converting every frame.",
                     name, _CHANNEL_NAMES.get(c, f"{c}-channel"), _CHANNEL_NAMES[channels])
            noted = True
        yield framelib.conform(frame[None], size, channels)[0]


@dataclasses.dataclass
class FrameErrors:
    """Prediction errors of the scored frames of one video (all arrays of one length).

    Attributes:
        frames: index of each scored frame in the video.
        mse, psnr: the model's error on each (per-frame sum of squares; dB).
        copy_last_mse, copy_last_psnr: the previous frame's error as a prediction.
        frames_read: frames decoded, context included.
        step_seconds: time of the model steps after the first (which traces).
        steps_timed: the steps `step_seconds` covers.
        seconds: wall time of the whole pass (decoding, conforming, errors).
    """

    frames: np.ndarray
    mse: np.ndarray
    psnr: np.ndarray
    copy_last_mse: np.ndarray
    copy_last_psnr: np.ndarray
    frames_read: int
    step_seconds: float
    steps_timed: int
    seconds: float

    @property
    def ms_per_frame(self) -> float:
        """Milliseconds per model step, tracing excluded."""
        return 1000.0 * self.step_seconds / max(1, self.steps_timed)

    @property
    def score(self) -> np.ndarray:
        return anomaly_scores(self.psnr)

    @property
    def copy_last_score(self) -> np.ndarray:
        return anomaly_scores(self.copy_last_psnr)


def frame_errors(prediction: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(MSE, PSNR) of one frame (H, W, C) in [0, 1], with `vidgen.metrics`' conventions."""
    pred, true = prediction[None, None], truth[None, None]
    return float(M.mse_per_step(pred, true)[0]), float(M.psnr_frames(pred, true)[0, 0])


def anomaly_scores(psnr) -> np.ndarray:
    """1 - PSNR min-max normalised over the video (Liu et al. 2018): 1 is the least predictable.

    A video whose frames all have the same PSNR scores 0 everywhere.
    """
    psnr = np.asarray(psnr, np.float64)
    if psnr.size == 0:
        return psnr
    low, high = psnr.min(), psnr.max()
    if high <= low:
        return np.zeros_like(psnr)
    return 1.0 - (psnr - low) / (high - low)


def score_frames(model, frames: Iterable[np.ndarray], context: int,
                 name: str = "The video") -> FrameErrors:
    """Streams frames through the model, teacher-forced, and measures each prediction.

    Frame t (t >= context) is compared with the model's prediction made from
    frames 0..t-1 (and with frame t-1, copy-last). The model's output floor,
    if any, is applied to the prediction that is scored, as `rollout` would.

    Args:
        model: a `VideoPredictor`.
        frames: frames at the model's size and channels, uint8 or float in [0, 1].
        context: frames fed before the first scored frame (at least 1).
        name: what the video is called in errors.

    Returns:
        `FrameErrors` of frames context, context + 1, ...

    Raises:
        DataError: fewer than context + 1 frames.
    """
    if context <= 0:
        raise ArgumentError(f"{{context}} must be positive. Received: {context}", "context")
    streamer = StepStreamer(model)
    floor = float(getattr(model, "output_floor", 0.0) or 0.0)
    rows: list[tuple[int, float, float, float, float]] = []
    prediction = previous = None
    step_seconds, steps = 0.0, 0
    start = time.perf_counter()
    count = 0
    for t, frame in enumerate(frames):
        count = t + 1
        if frame.dtype == np.uint8:
            frame = frame.astype(np.float32) / 255.0
        if t >= context:
            mse, psnr = frame_errors(floored(prediction, floor), frame)
            copy_mse, copy_psnr = frame_errors(previous, frame)
            rows.append((t, mse, psnr, copy_mse, copy_psnr))
        tick = time.perf_counter()
        prediction = streamer(frame)
        if t > 0:
            step_seconds += time.perf_counter() - tick
            steps += 1
        previous = frame
    if not rows:
        raise DataArgumentError(
            f"{name} has {count} frames; scoring with {{context}} {context} needs at least "
            f"{context + 1} (the context, then the frames to score).", "context")
    columns = np.asarray(rows, np.float64)
    return FrameErrors(frames=columns[:, 0].astype(np.int64), mse=columns[:, 1],
                       psnr=columns[:, 2], copy_last_mse=columns[:, 3],
                       copy_last_psnr=columns[:, 4], frames_read=count,
                       step_seconds=step_seconds, steps_timed=steps,
                       seconds=time.perf_counter() - start)


def top_peaks(scores, count: int = 5, separation: int = 0) -> list[int]:
    """Positions of the `count` highest scores, at least `separation` positions apart.

    Args:
        scores: 1-D scores.
        count: peaks to return (fewer when the scores run out).
        separation: minimum distance between two peaks (default: max(5, len / 50)),
            so one event is not reported as several neighbouring frames.

    Returns:
        Positions into `scores`, highest score first.
    """
    scores = np.asarray(scores, np.float64)
    separation = separation or max(5, len(scores) // 50)
    chosen: list[int] = []
    for i in np.argsort(-scores, kind="stable"):
        if all(abs(int(i) - j) >= separation for j in chosen):
            chosen.append(int(i))
            if len(chosen) == count:
                break
    return chosen


def write_scores_csv(path: str, errors: FrameErrors, fps: Optional[float] = None) -> str:
    """Writes one row per scored frame (columns `CSV_COLUMNS`); `time_s` is empty without fps."""
    score, copy_score = errors.score, errors.copy_last_score
    with fileio.atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for i, frame in enumerate(errors.frames):
            writer.writerow([
                int(frame), "" if fps is None else f"{frame / fps:.3f}",
                f"{errors.mse[i]:.6g}", f"{errors.psnr[i]:.4f}", f"{score[i]:.6f}",
                f"{errors.copy_last_mse[i]:.6g}", f"{errors.copy_last_psnr[i]:.4f}",
                f"{copy_score[i]:.6f}"])
    return path


def _frames_at(frames: Iterable[np.ndarray], wanted: Iterable[int]) -> dict[int, np.ndarray]:
    """The frames at the `wanted` positions, reading no further than the last of them."""
    wanted = set(int(i) for i in wanted)
    found: dict[int, np.ndarray] = {}
    if not wanted:
        return found
    last = max(wanted)
    for t, frame in enumerate(frames):
        if t in wanted:
            found[t] = frame
        if t >= last:
            break
    return found


def _check_suffix(value: Optional[str], name: str, suffix: str) -> None:
    if value is not None and not value.lower().endswith(suffix):
        raise ArgumentError(f"{{{name}}} must end in {suffix}. Received: {value!r}", name)


def score_video(run_dir: str, input_path: str, out: str, plot: Optional[str] = None,
                context: int = 0, peaks: int = 5) -> dict[str, Any]:
    """Scores every frame of a video after the context; writes the CSV (and the plot).

    Args:
        run_dir: a run directory with model.keras and config.json.
        input_path: a video file, a folder of frames or an .npy clip.
        out: the CSV to write (`CSV_COLUMNS`).
        plot: a .png of the score over time with the peaks marked (None: no plot).
        context: frames fed before the first scored frame (default: the run's
            training context, `data.context`).
        peaks: peaks to report and mark.

    Returns:
        Frames read and scored, ms per frame, the peaks (frame, time, score,
        copy-last score), fps, the paths written.
    """
    _check_suffix(out, "out", ".csv")
    _check_suffix(plot, "plot", ".png")
    if peaks < 0:
        raise ArgumentError(f"{{peaks}} must be >= 0. Received: {peaks}", "peaks")
    if context < 0:
        raise ArgumentError(f"{{context}} must be positive. Received: {context}", "context")
    reader = FrameReader(input_path)
    cfg, model = load_run(run_dir)
    context = context or cfg.data.context
    size, channels = model.frame_size, model.channels
    name = f"Input {input_path!r}"
    errors = score_frames(model, conformed_frames(reader, size, channels, name), context, name)
    score = errors.score
    chosen = top_peaks(score, peaks) if peaks else []
    written = [write_scores_csv(out, errors, reader.fps)]
    if plot:
        in_time = sorted(chosen)
        images = _frames_at(conformed_frames(reader, size, channels, name),
                            [errors.frames[i] for i in in_time])
        thumbnails = [images[int(errors.frames[i])] for i in in_time]
        title = f"{os.path.basename(input_path)}: anomaly score (1 - normalised PSNR)"
        written.append(plot_scores(plot, errors.frames, score, errors.copy_last_score, in_time,
                                   thumbnails, title=title))
    fps = reader.fps
    peak_rows = [{"frame": int(errors.frames[i]),
                  "time_s": None if fps is None else round(float(errors.frames[i]) / fps, 3),
                  "score": float(score[i]), "copy_last_score": float(errors.copy_last_score[i]),
                  "psnr": float(errors.psnr[i])} for i in chosen]
    log.debug("Scored %d frames in %.2f s", len(errors.frames), errors.seconds)
    return {"input": input_path, "frames_read": errors.frames_read,
            "frames_scored": int(len(errors.frames)), "first_scored": int(errors.frames[0]),
            "context": context, "frame_size": size, "channels": channels, "fps": fps,
            "ms_per_frame": errors.ms_per_frame,
            "ms_per_frame_total": 1000.0 * errors.seconds / max(1, errors.frames_read),
            "mean_psnr": float(errors.psnr.mean()),
            "copy_last_mean_psnr": float(errors.copy_last_psnr.mean()),
            "peaks": peak_rows, "written": written}
