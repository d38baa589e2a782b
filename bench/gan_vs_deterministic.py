"""Deterministic vs adversarial/stochastic predictor, trained with the same time budget.

Reads the metrics.json of two finished runs (e.g. `make train`'s `quick` run
and a `quick_gan` run), prints the comparison the GAN is judged by,
writes it to bench/gan_vs_deterministic.json and draws a side-by-side GIF
of held-out clips: truth | deterministic | GAN | GAN samples.

    python -m bench.gan_vs_deterministic runs/quick-... runs/quick_gan-... \\
        [--gif docs/gan_vs_deterministic.gif] [--samples 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform

import numpy as np

from vidgen import __version__, viz
from vidgen.data.pipeline import make_dataset
from vidgen.errors import VidgenError
from vidgen.fileio import read_json, write_json_atomic
from vidgen.run_dir import RunPaths, load_run


def read_metrics(run: str) -> dict:
    metrics = read_json(RunPaths(run).metrics)
    if metrics is None:
        raise VidgenError(f"{run!r} has no metrics.json: run `vidgen evaluate {run}` first.")
    return metrics


def compare(det: dict, gan: dict) -> dict:
    """The GAN's three criteria from two evaluation reports of the same test split.

    Sharper than the deterministic model, MSE within 10% of it, best-of-N SSIM above
    its SSIM.
    """
    if (det["data"], det["split"], det["clips"]) != (gan["data"], gan["split"], gan["clips"]):
        raise VidgenError("The two runs were evaluated on different clips: "
                          f"{det['data']}/{det['split']}/{det['clips']} vs "
                          f"{gan['data']}/{gan['split']}/{gan['clips']}.")
    d, g = det["results"]["model"], gan["results"]["model"]
    out = {
        "deterministic": {k: d[k]["mean"] for k in ("mse", "psnr", "ssim", "sharpness")},
        "gan": {k: g[k]["mean"] for k in ("mse", "psnr", "ssim", "sharpness")},
        "training": {"deterministic": det.get("training"), "gan": gan.get("training")},
    }
    out["criteria"] = {
        "gan_sharpness_closer_to_real": abs(1 - g["sharpness"]["mean"])
        < abs(1 - d["sharpness"]["mean"]),
        "gan_mse_within_10_percent": g["mse"]["mean"] <= 1.10 * d["mse"]["mean"],
        "gan_mse_ratio": g["mse"]["mean"] / d["mse"]["mean"],
    }
    if "stochastic" in gan:
        out["gan_stochastic"] = gan["stochastic"]
        out["criteria"]["best_of_n_ssim_at_least_deterministic"] = (
            gan["stochastic"]["ssim_best"] >= d["ssim"]["mean"])
    return out


def side_by_side_gif(det_run: str, gan_run: str, path: str, clips: int, samples: int) -> str:
    """truth | deterministic | GAN | GAN samples for a few held-out clips, one GIF."""
    cfg, det = load_run(det_run)
    _, gan = load_run(gan_run)
    context, target = next(iter(make_dataset(cfg, "test", batch_size=clips)))
    context, target = np.asarray(context), np.asarray(target)
    horizon = target.shape[1]
    rows = []
    det_pred = np.asarray(det.rollout(context, horizon))
    gan_pred = np.asarray(gan.rollout(context, horizon, num_samples=samples + 1, seed=0))
    for i in range(clips):
        row = [np.concatenate([context[i], target[i]]), np.concatenate([context[i], det_pred[i]])]
        row += [np.concatenate([context[i], gan_pred[i, s]]) for s in range(samples + 1)]
        rows.append(viz.side_by_side(row))
    return viz.write_gif(path, np.concatenate(rows, axis=1), fps=4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("deterministic", help="run directory of the deterministic model")
    parser.add_argument("gan", help="run directory of the GAN")
    parser.add_argument("--out", default=os.path.join("bench", "gan_vs_deterministic.json"))
    parser.add_argument("--gif", default=None, help="also write the side-by-side GIF here")
    parser.add_argument("--clips", type=int, default=3)
    parser.add_argument("--samples", type=int, default=2, help="extra GAN samples per clip")
    args = parser.parse_args()
    result = compare(read_metrics(args.deterministic), read_metrics(args.gan))
    result.update(runs={"deterministic": args.deterministic, "gan": args.gan},
                  machine=f"{platform.machine()}, {os.cpu_count()} CPUs",
                  vidgen=__version__)
    if args.gif:
        result["gif"] = side_by_side_gif(args.deterministic, args.gan, args.gif, args.clips,
                                         args.samples)
    write_json_atomic(args.out, result)
    print(json.dumps({k: result[k] for k in ("deterministic", "gan", "criteria")}, indent=2))
    if "gan_stochastic" in result:
        print("GAN best-of-N:", json.dumps(result["gan_stochastic"]))


if __name__ == "__main__":
    main()
