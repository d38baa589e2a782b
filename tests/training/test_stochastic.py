import json
import os

import imageio.v2 as imageio
import numpy as np
import pytest

from tests.conftest import moving_square
from tests.tiny import tiny_run_config
from vidgen.cli import main
from vidgen.generate import generate
from vidgen.training.train import train


@pytest.fixture(scope="module")
def stochastic_gan_run(tmp_path_factory):
    """A VideoGAN whose generator has a latent variable, trained for one short epoch."""
    run = str(tmp_path_factory.mktemp("runs") / "stochastic")
    cfg = tiny_run_config(**{"train.adversarial": "nonsaturating", "train.epochs": 1,
                             "model.latent_dim": 2, "model.frame_critic_filters": [4],
                             "model.video_critic_filters": [4]})
    summary = train(cfg, run)
    assert summary["epochs_run"] == 1
    return run


def test_evaluate_reports_sharpness_best_of_n_and_diversity(stochastic_gan_run):
    report = json.load(open(os.path.join(stochastic_gan_run, "metrics.json")))
    stochastic = report["stochastic"]
    assert stochastic["samples"] == 10
    assert stochastic["psnr_best"] >= stochastic["psnr_mean"]
    assert stochastic["ssim_best"] >= stochastic["ssim_mean"]
    assert stochastic["diversity_mse"] > 0
    assert report["results"]["black"]["sharpness"]["mean"] == 0.0
    assert report["results"]["model"]["sharpness"]["mean"] > 0.0
    history = open(os.path.join(stochastic_gan_run, "logs", "history.csv")).read()
    assert "kl" in history.splitlines()[0]


def test_generate_writes_a_grid_of_samples(stochastic_gan_run, tmp_path):
    clip = tmp_path / "clip.npy"
    np.save(clip, moving_square(8, 16, 16, channels=1))
    out = str(tmp_path / "out.gif")
    result = generate(stochastic_gan_run, str(clip), out, horizon=5, samples=3, seed=2)
    assert result["written"][-1] == str(tmp_path / "out_samples.gif")
    grid = imageio.mimread(result["written"][-1])
    assert len(grid) == 3 + 5 and grid[0].shape[1] > 2 * 16  # truth + 3 samples, 2 columns
    assert main(["generate", stochastic_gan_run, "--input", str(clip), "--out", out,
                 "--samples", "0"]) == 2


def test_gan_benchmark_compares_runs_and_draws_the_gif(stochastic_gan_run, tmp_path):
    from bench.gan_vs_deterministic import compare, read_metrics, side_by_side_gif

    report = read_metrics(stochastic_gan_run)
    result = compare(report, report)
    assert result["criteria"]["gan_mse_ratio"] == 1.0
    assert not result["criteria"]["gan_sharpness_closer_to_real"]  # equal is not closer
    assert "best_of_n_ssim_at_least_deterministic" in result["criteria"]
    other = dict(report, clips=report["clips"] + 1)
    with pytest.raises(Exception, match="different clips"):
        compare(report, other)
    gif = side_by_side_gif(stochastic_gan_run, stochastic_gan_run, str(tmp_path / "s.gif"),
                           clips=2, samples=1)
    frames = imageio.mimread(gif)
    assert len(frames) == 6 and frames[0].shape[1] > 4 * 16  # truth, det, GAN, 1 sample
