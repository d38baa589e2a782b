"""The plot of `vidgen score`: the anomaly score over time, its peaks and their frames."""

from __future__ import annotations

import numpy as np

from vidgen import fileio


def plot_scores(path: str, frames, score, copy_last_score=None, peaks=(), thumbnails=(),
                labels=None, title: str = "") -> str:
    """Plots the score over time, marks and labels the peaks, shows their frames beneath.

    Args:
        path: output .png.
        frames: frame index of each score.
        score: the model's scores.
        copy_last_score: copy-last's scores, drawn faintly (None: not drawn).
        peaks: positions into `score` to mark.
        thumbnails: one image (H, W, C) uint8 per peak, or none.
        labels: 0/1 per frame: frames labelled 1 are shaded (the benchmark's injections).
        title: the plot's title.

    Returns:
        `path`.
    """
    # Imported here: choosing the Agg backend is a process-wide side effect, made only
    # when a plot is drawn, and matplotlib is a `vidgen[full]` dependency.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames, score = np.asarray(frames), np.asarray(score)
    rows = 2 if len(thumbnails) else 1
    fig = plt.figure(figsize=(10, 4.8 if rows == 2 else 3.6), dpi=100)
    grid = fig.add_gridspec(rows, max(1, len(thumbnails)),
                            height_ratios=[3, 1.3] if rows == 2 else [1])
    ax = fig.add_subplot(grid[0, :])
    if labels is not None:
        labels = np.asarray(labels, bool)
        for i in np.flatnonzero(labels):
            ax.axvspan(frames[i] - 0.5, frames[i] + 0.5, color="tab:red", alpha=0.15, lw=0)
    if copy_last_score is not None:
        ax.plot(frames, copy_last_score, color="0.6", lw=0.8, label="copy-last")
    ax.plot(frames, score, color="tab:blue", lw=1.0, label="model")
    for i in peaks:
        ax.plot(frames[i], score[i], "v", color="tab:red", markersize=6)
        ax.annotate(f"{int(frames[i])}", (frames[i], score[i]), textcoords="offset points",
                    xytext=(0, 6), ha="center", fontsize=8, color="tab:red")
    ax.set_xlim(frames[0] - 1, frames[-1] + 1)
    ax.set_ylim(-0.02, 1.12)
    ax.set_xlabel("frame")
    ax.set_ylabel("anomaly score")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    for k, (i, image) in enumerate(zip(peaks, thumbnails)):
        thumb = fig.add_subplot(grid[1, k])
        image = np.asarray(image)
        thumb.imshow(image[..., 0] if image.shape[-1] == 1 else image,
                     cmap="gray" if image.shape[-1] == 1 else None, vmin=0, vmax=255)
        thumb.set_title(f"frame {int(frames[i])}", fontsize=8)
        thumb.axis("off")
    fig.tight_layout()
    try:
        with fileio.atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    return path
