import json
import os

import imageio.v2 as imageio
import pytest

from vidgen.cli import main
from vidgen.errors import VidgenError
from vidgen.postprocess import ResidualDenoiser
from vidgen.postprocess.evaluation import Step, parse_steps, table
from vidgen.postprocess.training import load_denoiser

STEPS = "denoise:nlmeans,denoise:learned,interpolate:flow,interpolate:linear"


def test_train_denoiser_writes_model_and_summary(post_run):
    assert isinstance(load_denoiser(post_run), ResidualDenoiser)
    with open(os.path.join(post_run, "denoiser.json")) as f:
        summary = json.load(f)
    assert summary["steps"] == 3 and summary["pairs"] == "both"
    assert summary["train_clips"] == 4 and summary["validation"]["clips"] == 2
    assert {"psnr_before", "psnr_after", "ssim_before", "ssim_after"} <= set(
        summary["validation"])


@pytest.mark.parametrize("extra, message", [
    (["--window", "2"], "window must be a positive odd number"),
    (["--steps", "0"], "--steps must be positive. Received: 0"),
    (["--out", "denoiser.h5"], "--out must end in .keras"),
])
def test_train_denoiser_errors(tiny_run, extra, message, capsys):
    assert main(["postprocess", "train-denoiser", tiny_run, "--quiet"] + extra) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_generate_denoised_and_interpolated(post_run, clip_npy, tmp_path, capsys):
    out = str(tmp_path / "next.gif")
    assert main(["generate", post_run, "--input", clip_npy, "--out", out, "--horizon", "3",
                 "--denoise", "learned", "--interpolate", "2"]) == 0
    assert "denoised (learned) and interpolated x2 (flow, 8 fps)" in capsys.readouterr().out
    # 3 context + 3 generated frames, one frame inserted between each pair.
    assert len(imageio.mimread(out)) == 11
    assert len(imageio.mimread(str(tmp_path / "next_compare.gif"))) == 11
    out = str(tmp_path / "fades.gif")
    assert main(["generate", post_run, "--input", clip_npy, "--out", out, "--horizon", "2",
                 "--denoise", "nlmeans", "--interpolate", "3", "--interpolate-method",
                 "linear"]) == 0
    assert len(imageio.mimread(out)) == 13


@pytest.mark.parametrize("extra, message", [
    (["--interpolate", "0"], "must be an integer >= 1"),
    (["--denoise", "learned"], "No learned denoiser at"),
])
def test_generate_errors(tiny_run, clip_npy, tmp_path, extra, message, capsys):
    out = str(tmp_path / "x.gif")
    assert main(["generate", tiny_run, "--input", clip_npy, "--out", out] + extra) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not os.path.exists(out)


@pytest.fixture(scope="module")
def evaluated(post_run):
    """The post_run's evaluation report with every step measured on 2 test clips."""
    from vidgen.evaluate import evaluate

    return evaluate(post_run, max_clips=2, postprocess=STEPS, progress=False)


def test_evaluate_postprocess(post_run, evaluated):
    with open(os.path.join(post_run, "metrics.json")) as f:
        section = json.load(f)["postprocess"]
    assert section == json.loads(json.dumps(evaluated["postprocess"]))
    assert set(section) == {"conventions", *STEPS.split(",")}
    for name in ("denoise:nlmeans", "denoise:learned"):
        entry = section[name]
        assert entry["generated"]["frames"] == 2 * 3 and entry["ms_per_frame"] > 0
        assert entry["noisy_truth"]["frames"] == 2 * 3
        r = entry["generated"]
        assert r["change"]["psnr"] == pytest.approx(r["with"]["psnr"] - r["without"]["psnr"])
        assert 0 <= r["with"]["ssim"] <= 1
    for name in ("interpolate:flow", "interpolate:linear"):
        entry = section[name]
        assert entry["k"] == 2 and entry["ms_per_frame"] > 0
        # 6 real frames: 0, 2, 4 kept, 1 and 3 interpolated; 3 generated: 1 interpolated.
        assert entry["real"]["frames"] == 2 * 2 and entry["generated"]["frames"] == 2 * 1
    lines = table(section).splitlines()
    assert len(lines) == 1 + 2 * 4 and lines[-1].startswith("interpolate:linear")


def test_benchmark_table_chart_and_examples(post_run, evaluated, tmp_path):
    from bench.postprocess import bar_chart, collect, examples, markdown

    rows = collect([post_run])
    assert [(r["step"], r["on"]) for r in rows][:2] == [("denoise:learned", "generated"),
                                                        ("denoise:learned", "noisy_truth")]
    assert markdown(rows).count("\n") == len(rows) + 1
    assert imageio.imread(bar_chart(rows, str(tmp_path / "chart.png"))).ndim == 3
    assert imageio.imread(examples([post_run], str(tmp_path / "examples.png"))).ndim == 3


@pytest.mark.parametrize("spec, message", [
    ("denoise", "expects a comma-separated list of KIND:METHOD"),
    ("blur:gauss", "expects a comma-separated list"),
    ("denoise:gauss", "Unknown denoise method 'gauss'"),
    ("interpolate:flow:1", "an integer >= 2"),
    ("denoise:nlmeans:2", "only interpolation takes a factor"),
    ("denoise:learned", "No learned denoiser at"),
])
def test_evaluate_postprocess_errors(tiny_run, spec, message, capsys):
    assert main(["evaluate", tiny_run, "--max-clips", "1", "--postprocess", spec]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_parse_steps():
    assert [s.name for s in parse_steps("all")] == [
        "denoise:nlmeans", "denoise:median", "denoise:learned", "interpolate:linear",
        "interpolate:flow"]
    steps = parse_steps(" interpolate:flow:4, denoise:median,denoise:median")
    assert steps == [Step("interpolate", "flow", 4), Step("denoise", "median")]
    assert steps[0].name == "interpolate:flow:4"
    with pytest.raises(VidgenError, match="Received item ''"):
        parse_steps("")
