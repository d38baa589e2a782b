"""Anomaly detection from prediction error: injected anomalies in real footage, frame-level ROC AUC.

Each video is decoded at the model's frame size and channels (as `vidgen
score` reads it), then three anomalies are injected at seeded, non-
overlapping positions after the context, each followed by ordinary frames:

- object: a bright (or dark, whichever contrasts) square appears and moves
  for 10 frames against the dominant motion of the footage (the mean dense
  optical flow over those frames; a fixed seeded direction if the footage
  barely moves);
- jump: the video skips ahead 30 frames (the first frame after the skip);
- reverse: after frame r the video plays backwards for 10 frames (r-1 ..
  r-10), then forwards again from r-9: time runs backwards, with no cut at
  either end, so only a model of motion can see it.

Those frames are labelled 1, every other scored frame 0. Every frame after
the context is scored twice with `vidgen.score` (teacher-forced streaming,
1 - PSNR normalised per video; Liu et al. 2018): from the model's prediction
and from copy-last (the previous frame). The figure is the frame-level ROC
AUC of each score, per video, per anomaly kind (its frames against all
normal frames) and pooled over the videos (scores normalised per video, as
the method does). Natural cuts in the footage stay labelled 0.

    python -m bench.anomaly --run runs/natural --video bikes.mp4 --video carphone.mp4 \\
        --out runs/anomaly

Writes DIR/anomaly.json, DIR/anomaly.md and DIR/plots/VIDEO.png, and prints
the table.

Reference:
    W. Liu, W. Luo, D. Lian, S. Gao, "Future Frame Prediction for Anomaly
    Detection - A New Baseline", CVPR 2018.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import sys
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from bench.run import git_commit, machine_info
from vidgen.cli_common import flag_names
from vidgen.errors import ArgumentError, VidgenError
from vidgen.fileio import write_json_atomic
from vidgen.run_dir import load_run
from vidgen.score import FrameReader, conformed_frames, score_frames
from vidgen.score_plot import plot_scores

KINDS = ("object", "jump", "reverse")
OBJECT_FRAMES = 10
JUMP_FRAMES = 30
REVERSE_FRAMES = 10
MIN_GAP = 8          # ordinary frames before each anomaly (the model settles after one)


def roc_auc(scores, labels) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties count 1/2.

    The Mann-Whitney U statistic from average ranks.

    Raises:
        ValueError: `labels` has no positive or no negative.
    """
    scores = np.asarray(scores, np.float64).ravel()
    labels = np.asarray(labels).astype(bool).ravel()
    if scores.shape != labels.shape:
        raise ValueError(f"scores and labels differ in length: {scores.shape} vs {labels.shape}")
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if not positives or not negatives:
        raise ValueError(f"ROC AUC needs positives and negatives. Received {positives} "
                         f"positives and {negatives} negatives")
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = ((ends - counts + 1 + ends) / 2.0)[inverse]   # 1-based average ranks
    return float((ranks[labels].sum() - positives * (positives + 1) / 2.0)
                 / (positives * negatives))


@dataclasses.dataclass
class Injected:
    """A clip with injected anomalies.

    Attributes:
        frames: uint8 (T, H, W, C).
        labels: int (T,), 1 on anomalous frames.
        kinds: str (T,): "" or the anomaly kind of each frame.
        sources: int (T,): the index in the original video of each frame.
        events: one dict per anomaly: kind, first and last output frame, details.
    """

    frames: np.ndarray
    labels: np.ndarray
    kinds: np.ndarray
    sources: np.ndarray
    events: list[dict[str, Any]]


def frames_needed(context: int) -> int:
    """Source frames the three injections need after `context`, at the smallest gaps.

    The reverse segment replays frames it has shown, so it needs none of its own.
    """
    return context + 4 * MIN_GAP + OBJECT_FRAMES + JUMP_FRAMES + 1


def dominant_motion(frames: np.ndarray) -> np.ndarray:
    """Mean dense optical flow (dx, dy) per frame over a uint8 clip (Farneback)."""
    gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) if f.shape[-1] == 3 else f[..., 0]
            for f in frames]
    flows = [cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 9, 3, 5, 1.1, 0).reshape(-1, 2)
             for a, b in zip(gray[:-1], gray[1:])]
    return np.concatenate(flows).mean(axis=0) if flows else np.zeros(2)


def paste_moving_square(frames: np.ndarray, direction: np.ndarray, speed: float,
                        rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
    """Pastes a square moving `speed` pixels per frame along `direction` (unit) over `frames`."""
    n, h, w, c = frames.shape
    side = max(3, h // 8)
    travel = speed * (n - 1)
    centre = np.array([w, h], np.float64) / 2 + rng.uniform(-0.15, 0.15, 2) * [w, h]
    start = centre - direction * travel / 2
    low, high = np.zeros(2), np.array([w - side, h - side], np.float64)
    start = np.clip(start, low, high)
    stop = np.clip(start + direction * travel, low, high)
    value = 20 if float(frames.mean()) / 255.0 > 0.5 else 235
    out = frames.copy()
    path = []
    for i in range(n):
        x, y = np.round(start + (stop - start) * (i / max(1, n - 1))).astype(int)
        out[i, y:y + side, x:x + side] = value
        path.append([int(x), int(y)])
    return out, {"side": side, "value": value, "path": path}


def inject(frames: np.ndarray, context: int, seed: int = 0) -> Injected:
    """Injects one object, one jump and one reverse segment (in a seeded order) after `context`.

    Args:
        frames: uint8 (T, H, W, C), at least `frames_needed(context)` frames.
        context: frames before the first scored frame; nothing is injected there.
        seed: seeds the order, the spacing, the object's position and fallback direction.

    Returns:
        `Injected`.

    Raises:
        VidgenError: the clip is too short for the three injections.
    """
    total = len(frames)
    need = frames_needed(context)
    if total < need:
        raise VidgenError(f"A clip of {total} frames is too short for the three injections "
                          f"after {context} frames of context: expected at least {need}.")
    rng = np.random.default_rng(seed)
    order = [KINDS[i] for i in rng.permutation(len(KINDS))]
    # Spread the spare source frames over the four gaps (before each event, and the tail).
    spare = total - need
    gaps = [MIN_GAP + int(g) for g in rng.multinomial(spare, np.full(4, 0.25))]
    sources = list(range(context + gaps[0]))
    labels = [0] * len(sources)
    kinds = [""] * len(sources)
    overlays: dict[int, np.ndarray] = {}
    events = []
    cursor = len(sources)   # the next source frame played forwards
    for kind, gap in zip(order, gaps[1:]):
        first = len(sources)
        if kind == "object":
            segment = np.arange(cursor, cursor + OBJECT_FRAMES)
            motion = dominant_motion(frames[segment])
            magnitude = float(np.hypot(*motion))
            if magnitude < 0.25:
                angle = rng.uniform(0, 2 * np.pi)
                direction = np.array([np.cos(angle), np.sin(angle)])
            else:
                direction = -motion / magnitude
            speed = max(1.5, 2.0 * magnitude)
            pasted, details = paste_moving_square(frames[segment], direction, speed, rng)
            for i in range(OBJECT_FRAMES):
                overlays[first + i] = pasted[i]
            details.update(dominant_motion=[round(float(v), 3) for v in motion],
                           direction=[round(float(v), 3) for v in direction],
                           speed=round(speed, 2))
            sources += segment.tolist()
            cursor += OBJECT_FRAMES
        elif kind == "jump":
            details = {"from_source": cursor - 1, "to_source": cursor + JUMP_FRAMES}
            cursor += JUMP_FRAMES
            segment = np.array([cursor])
            sources.append(cursor)
            cursor += 1
        else:
            segment = np.arange(cursor - 2, cursor - 2 - REVERSE_FRAMES, -1)
            details = {"after_source": cursor - 1}
            sources += segment.tolist()
            cursor = int(segment[-1]) + 1
        labels += [1] * len(segment)
        kinds += [kind] * len(segment)
        events.append({"kind": kind, "first": first, "last": len(sources) - 1,
                       "sources": [int(segment[0]), int(segment[-1])], **details})
        forward = list(range(cursor, cursor + gap))
        sources += forward
        labels += [0] * len(forward)
        kinds += [""] * len(forward)
        cursor += gap
    sources += list(range(cursor, total))
    labels += [0] * (total - cursor)
    kinds += [""] * (total - cursor)
    out = frames[np.asarray(sources)]
    for position, image in overlays.items():
        out[position] = image
    return Injected(out, np.asarray(labels), np.asarray(kinds), np.asarray(sources), events)


def decode(path: str, size: int, channels: int, max_frames: int = 0) -> tuple[np.ndarray, Any]:
    """A video's frames at the model's size and channels (uint8), and its frame rate."""
    reader = FrameReader(path)
    frames = []
    for frame in conformed_frames(reader, size, channels, f"Video {path!r}"):
        frames.append(frame)
        if max_frames and len(frames) >= max_frames:
            break
    return np.stack(frames), reader.fps


def aucs(score, copy_score, labels, kinds) -> dict[str, Any]:
    """ROC AUC of the model's and copy-last's scores, overall and per anomaly kind."""
    normal = labels == 0
    out = {"model": roc_auc(score, labels), "copy_last": roc_auc(copy_score, labels),
           "per_kind": {}}
    for kind in KINDS:
        keep = normal | (kinds == kind)
        if (kinds == kind).any():
            out["per_kind"][kind] = {"model": roc_auc(score[keep], labels[keep]),
                                     "copy_last": roc_auc(copy_score[keep], labels[keep])}
    return out


def benchmark(run_dir: str, videos: Sequence[str], out_dir: str, seed: int = 0,
              context: int = 0, max_frames: int = 0) -> dict[str, Any]:
    """Injects, scores and measures every video; writes anomaly.json, anomaly.md and plots."""
    cfg, model = load_run(run_dir)
    context = context or cfg.data.context
    size, channels = model.frame_size, model.channels
    per_video, pooled = [], {"score": [], "copy": [], "labels": [], "kinds": []}
    os.makedirs(os.path.join(out_dir, "plots"), exist_ok=True)
    for i, path in enumerate(videos):
        frames, fps = decode(path, size, channels, max_frames)
        clip = inject(frames, context, seed + i)
        errors = score_frames(model, clip.frames, context, f"Video {path!r}")
        labels, kinds = clip.labels[context:], clip.kinds[context:]
        score, copy_score = errors.score, errors.copy_last_score
        result = aucs(score, copy_score, labels, kinds)
        name = os.path.splitext(os.path.basename(path))[0]
        plot = plot_scores(os.path.join(out_dir, "plots", f"{name}.png"), errors.frames, score,
                           copy_score, labels=labels,
                           title=f"{name}: injected anomalies shaded, model AUC "
                                 f"{result['model']:.3f}, copy-last {result['copy_last']:.3f}")
        per_video.append({"video": path, "fps": fps, "source_frames": int(len(frames)),
                          "frames": int(len(clip.frames)), "scored_frames": int(len(score)),
                          "anomaly_frames": int(labels.sum()), "events": clip.events,
                          "ms_per_frame": round(errors.ms_per_frame, 2), "plot": plot,
                          "auc": result})
        pooled["score"].append(score)
        pooled["copy"].append(copy_score)
        pooled["labels"].append(labels)
        pooled["kinds"].append(kinds)
    cat = {k: np.concatenate(v) for k, v in pooled.items()}
    report = {
        "run": run_dir, "seed": seed, "context": context, "frame_size": size,
        "channels": channels, "model": {"head": getattr(model, "head", None),
                                        "parameters": int(model.count_params())},
        "injections": {"object_frames": OBJECT_FRAMES, "jump_frames": JUMP_FRAMES,
                       "reverse_frames": REVERSE_FRAMES, "min_gap": MIN_GAP},
        "videos": per_video,
        "pooled": {"scored_frames": int(len(cat["labels"])),
                   "anomaly_frames": int(cat["labels"].sum()),
                   "auc": aucs(cat["score"], cat["copy"], cat["labels"], cat["kinds"])},
        "machine": machine_info(), "git": git_commit(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench.anomaly"] + sys.argv[1:]),
    }
    write_json_atomic(os.path.join(out_dir, "anomaly.json"), report)
    with open(os.path.join(out_dir, "anomaly.md"), "w") as f:
        f.write(markdown(report))
    return report


def table(report: dict[str, Any]) -> str:
    """The AUC table (Markdown): a row per video and the pooled row."""
    lines = ["| video | scored frames | anomaly frames | model AUC | copy-last AUC | "
             "object (model / copy) | jump | reverse |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]

    def row(name, scored, anomalies, auc):
        kinds = [f"{auc['per_kind'][k]['model']:.3f} / {auc['per_kind'][k]['copy_last']:.3f}"
                 if k in auc["per_kind"] else "-" for k in KINDS]
        return (f"| {name} | {scored} | {anomalies} | {auc['model']:.3f} | "
                f"{auc['copy_last']:.3f} | " + " | ".join(kinds) + " |")

    for v in report["videos"]:
        lines.append(row(os.path.basename(v["video"]), v["scored_frames"], v["anomaly_frames"],
                         v["auc"]))
    p = report["pooled"]
    lines.append(row("**pooled**", p["scored_frames"], p["anomaly_frames"], p["auc"]))
    return "\n".join(lines)


def markdown(report: dict[str, Any]) -> str:
    m, g = report["machine"], report["git"]
    events = []
    for v in report["videos"]:
        where = ", ".join(f"{e['kind']} at frames {e['first']}-{e['last']} (source "
                          f"{e['sources'][0]}-{e['sources'][1]})" for e in v["events"])
        events.append(f"- {os.path.basename(v['video'])}: {v['source_frames']} source frames -> "
                      f"{v['frames']}; {where}; {v['ms_per_frame']} ms per frame")
    return "\n".join([
        "# Anomaly scores from prediction error: injected anomalies, frame-level ROC AUC",
        "",
        f"Run `{report['run']}` ({report['model']['parameters']:,} parameters, "
        f"{report['frame_size']}x{report['frame_size']}x{report['channels']}), context "
        f"{report['context']}, seed {report['seed']}. Score: 1 - PSNR min-max normalised per "
        "video (Liu et al., CVPR 2018), teacher-forced streaming; copy-last uses the previous "
        "frame as the prediction. Per kind: that kind's frames against all normal frames.",
        "",
        table(report),
        "",
        "Injections:",
        *events,
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores; {report['date']}; commit "
        f"`{(g.get('commit') or 'unknown')[:12]}`"
        + (" with uncommitted changes" if g.get("dirty") else "") + ".",
        "",
        f"    {report['command']}",
        "",
    ])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.anomaly",
        description="Inject anomalies into footage; ROC AUC of model vs copy-last scores.")
    parser.add_argument("--run", required=True, help="a run directory with model.keras")
    parser.add_argument("--video", action="append", required=True,
                        help="a video to inject anomalies into (repeatable)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--context", type=int, default=0,
                        help="frames before the first scored frame (default: the run's context)")
    parser.add_argument("--max-frames", type=int, default=0,
                        help="decode at most N frames per video (0: all)")
    args = parser.parse_args(argv)
    try:
        report = benchmark(args.run, args.video, args.out, seed=args.seed,
                           context=args.context, max_frames=args.max_frames)
    except VidgenError as e:
        message = e.with_flags(flag_names(parser)) if isinstance(e, ArgumentError) else str(e)
        print(f"bench.anomaly: error: {message}", file=sys.stderr)
        return 2
    print(table(report))
    print(f"Wrote {os.path.join(args.out, 'anomaly.json')} and anomaly.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
