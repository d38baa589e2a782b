"""What each post-processing step changes: a table, a bar chart and example frames.

Reads the "postprocess" section of the metrics.json of one or more runs (made
by `vidgen evaluate RUN --postprocess ...`), writes bench/postprocess.json,
a bar chart of the change in PSNR / SSIM and the cost per frame of every step
(docs/postprocess.png), and example frames of held-out test clips
(docs/postprocess_examples.png): truth, prediction, each denoiser; dropped
real frames, linear and flow interpolation.

A step measured in several runs (e.g. two learned denoisers, trained with the
L2 and the L1 loss in copies of one run) is labelled with its loss.

    python -m bench.postprocess runs/quick runs/quick-l1
"""

from __future__ import annotations

import argparse
import os
import platform

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from vidgen import __version__
from vidgen.data.pipeline import make_dataset
from vidgen.errors import VidgenError
from vidgen.fileio import read_json, write_json_atomic
from vidgen.postprocess import denoise, interpolate
from vidgen.postprocess.training import load_denoiser
from vidgen.run_dir import RunPaths, load_run

matplotlib.use("Agg")   # the figures are files: no display needed

WHERE = {"denoise": ("generated", "noisy_truth"), "interpolate": ("real", "generated")}


def _label(run: str, name: str, several: bool) -> str:
    if not (several and name == "denoise:learned"):
        return name
    # The denoiser's training summary sits beside it: same name, .json.
    summary = read_json(RunPaths(run).denoiser_summary, {})
    return f"{name} ({summary.get('loss', '?')})"


def collect(runs: list[str]) -> list[dict]:
    """One row per (step, where it was scored) from the runs' metrics.json."""
    rows, seen = [], set()
    learned = sum(1 for r in runs if "denoise:learned" in _section(r))
    for run in runs:
        for name, entry in _section(run).items():
            if name == "conventions":
                continue
            label = _label(run, name, learned > 1)
            if label in seen:
                continue
            seen.add(label)
            for where in WHERE[entry["kind"]]:
                if where not in entry:
                    continue
                r = entry[where]
                rows.append({"step": label, "on": where, "frames": r["frames"],
                             "psnr_without": r["without"]["psnr"],
                             "psnr_with": r["with"]["psnr"],
                             "ssim_without": r["without"]["ssim"],
                             "ssim_with": r["with"]["ssim"],
                             "psnr_change": r["change"]["psnr"],
                             "ssim_change": r["change"]["ssim"],
                             "ms_per_frame": entry["ms_per_frame"], "run": run})
    order = {"denoise": 0, "interpolate": 1}
    return sorted(rows, key=lambda r: (order[r["step"].split(":")[0]], r["step"]))


def _section(run: str) -> dict:
    path = RunPaths(run).metrics
    report = read_json(path)
    if report is None:
        raise VidgenError(f"{run!r} has no metrics.json: run `vidgen evaluate {run} "
                          "--postprocess all` first.")
    if "postprocess" not in report:
        raise VidgenError(f"{path!r} has no postprocess section: run `vidgen evaluate {run} "
                          "--postprocess all`.")
    return report["postprocess"]


def markdown(rows: list[dict]) -> str:
    lines = ["| step | scored on | PSNR without -> with | change | SSIM without -> with | "
             "change | ms / frame |", "|---|---|---|---:|---|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['step']} | {r['on']} | {r['psnr_without']:.2f} -> {r['psnr_with']:.2f} | "
            f"{r['psnr_change']:+.2f} | {r['ssim_without']:.3f} -> {r['ssim_with']:.3f} | "
            f"{r['ssim_change']:+.3f} | {r['ms_per_frame']:.2f} |")
    return "\n".join(lines)


def bar_chart(rows: list[dict], path: str) -> str:
    """Change in PSNR, change in SSIM and ms per frame of every step, one panel each."""
    main = [r for r in rows if (r["on"], r["step"].split(":")[0]) in
            (("generated", "denoise"), ("real", "interpolate"))]
    labels = [f"{r['step']}\n({'generated' if r['on'] == 'generated' else 'real, K=2'})"
              for r in main]
    colors = ["tab:blue" if r["step"].startswith("denoise") else "tab:orange" for r in main]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2), dpi=100)
    panels = (("psnr_change", "change in PSNR (dB)"), ("ssim_change", "change in SSIM"),
              ("ms_per_frame", "ms per frame (2-core CPU)"))
    y = np.arange(len(main))
    for ax, (key, title) in zip(axes, panels):
        values = [r[key] for r in main]
        ax.barh(y, values, color=colors)
        ax.set_title(title)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks(y, labels if ax is axes[0] else [""] * len(y), fontsize=8)
        ax.invert_yaxis()
        ax.grid(axis="x", alpha=0.3)
        for yi, v in zip(y, values):
            ax.annotate(f"{v:+.2f}" if key != "ms_per_frame" else f"{v:.1f}", (v, yi),
                        fontsize=7, va="center", xytext=(3 if v >= 0 else -3, 0),
                        textcoords="offset points", ha="left" if v >= 0 else "right")
        ax.margins(x=0.25)
    fig.suptitle("Post-processing on 256 held-out digit clips: denoising the model's "
                 "predictions, interpolating real clips with every other frame dropped",
                 fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def examples(runs: list[str], path: str, clip: int = 0) -> str:
    """Frames of one held-out test clip under every step, a labelled grid."""
    cfg, model = load_run(runs[0])
    context, target = next(iter(make_dataset(cfg, "test", batch_size=clip + 1)))
    context, target = np.asarray(context)[clip], np.asarray(target)[clip]
    pred = np.asarray(model.rollout(context[None], len(target)))[0]
    rows = [("truth", target), ("prediction", pred),
            ("+ nlmeans", denoise(pred, "nlmeans")), ("+ median", denoise(pred, "median"))]
    for run in runs:
        if os.path.isfile(RunPaths(run).denoiser):
            label = _label(run, "denoise:learned", len(runs) > 1).replace("denoise:", "+ ")
            rows.append((label, denoise(pred, "learned", load_denoiser(run))))
    real = np.concatenate([context, target])
    kept = real[::2]
    dropped = real[1:len(real) - 1:2]
    rows += [("dropped real frames", dropped),
             ("linear, K=2", interpolate(kept, 2, "linear")[1::2]),
             ("flow, K=2", interpolate(kept, 2, "flow")[1::2])]
    width = max(len(frames) for _, frames in rows)
    h, w = target.shape[1:3]
    fig, axes = plt.subplots(len(rows), 1, figsize=(width * 0.9, len(rows) * 0.95), dpi=100)
    for ax, (label, frames) in zip(axes, rows):
        strip = np.ones((h, width * (w + 2))) * 0.5
        for i, f in enumerate(frames):
            strip[:, i * (w + 2):i * (w + 2) + w] = f[..., 0] if f.shape[-1] == 1 else f.mean(-1)
        ax.imshow(strip, cmap="gray", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    fig.tight_layout(h_pad=0.2)
    fig.subplots_adjust(left=0.17)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run directories evaluated with --postprocess")
    parser.add_argument("--out", default=os.path.join("bench", "postprocess.json"))
    parser.add_argument("--chart", default=os.path.join("docs", "postprocess.png"))
    parser.add_argument("--examples", default=os.path.join("docs", "postprocess_examples.png"))
    parser.add_argument("--clip", type=int, default=0, help="test clip shown in the examples")
    args = parser.parse_args()
    rows = collect(args.runs)
    result = {"rows": rows, "runs": args.runs, "vidgen": __version__,
              "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
              "chart": bar_chart(rows, args.chart),
              "examples": examples(args.runs, args.examples, args.clip)}
    write_json_atomic(args.out, result)
    print(markdown(rows))


if __name__ == "__main__":
    main()
