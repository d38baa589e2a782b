"""The benchmark's pure parts: ratios, checks, commands, the report and the README table."""

import json
import os

import numpy as np
import pytest

from bench import report as R
from bench import run as B
from bench import speed as S


def metric(mean, steps=3):
    return {"mean": mean, "per_step": [mean * (0.8 + 0.2 * i) for i in range(steps)]}


def model_report(mse, ssim, clips=8, copy_mse=120.0, black_mse=100.0, flops=1.5e9):
    def row(m, s):
        return {"mse": metric(m), "mae": metric(2 * m), "psnr": metric(40.0 - m / 10),
                "ssim": metric(s), "ssim_uniform7": metric(s), "sharpness": metric(0.5)}

    return {"clips": clips, "context": 3, "horizon": 3, "frame_size": 16, "split": "test",
            "data": "shards", "conventions": {}, "parameters": 1000, "flops_per_sequence": flops,
            "training": {"sequences_per_second": 10.0, "train_seconds": 360.0, "epochs_run": 4,
                         "stopped_by_time_budget": True},
            "results": {"model": row(mse, ssim), "copy_last": row(copy_mse, 0.6),
                        "black": row(black_mse, 0.7)}}


def fake_results():
    reports = {"quick": model_report(60.0, 0.5), "gan": model_report(66.0, 0.55),
               "tutorial": model_report(150.0, 0.2, flops=100e9)}
    reports["gan"]["stochastic"] = {"samples": 2, "psnr_best": 30.0, "psnr_mean": 29.0,
                                    "ssim_best": 0.6, "ssim_mean": 0.55, "diversity_mse": 3.0}
    trainings = {k: {"run": f"runs/{k}", "trained_in_this_run": True} for k in reports}
    quality = B.quality_section(reports, trainings)
    quality["ratios"] = B.quality_ratios(quality)
    results = {
        "mode": "smoke", "command": "make bench-smoke", "created": "2026-11-24T00:00:00+00:00",
        "machine": {"cpu": "test cpu", "cores": 2, "ram_gb": 8.0, "platform": "linux",
                    "load_average_at_start": [1.0, 1.0, 1.0], "load_average_at_end": [2, 2, 2]},
        "versions": {"python": "3.11", "tensorflow": "2.21.0", "keras": "3.15.1",
                     "ai-edge-litert": "2.3.0"},
        "git": {"commit": "0123456789abcdef", "dirty": False},
        "settings": {"budget_min": 6.0}, "datasets": {"digits": quality},
        "matmul": {"start": {"size": 64, "gflops_per_s": 100.0},
                   "end": {"size": 64, "gflops_per_s": 90.0}},
        "phases": [{"phase": "train quick", "seconds": 360.0}], "total_seconds": 1500.0,
    }
    results["speed"] = {
        "step_gflops": {"quick": 0.1, "gan": 0.1, "tutorial": 6.0},
        "training": B.training_speed(quality, {"quick": 0.1, "gan": 0.1, "tutorial": 6.0},
                                     100.0),
        "inference": {
            "keras": {k: {"step_ms": 2.0 * (1 + 40 * (k == "tutorial")),
                          "rollout_ms_per_predicted_frame": 3.0, "rollout_ms": 30.0}
                      for k in reports},
            "tflite": {"quick": {"clips": 2, "variants": {
                "float32": {"size_bytes": 600_000, "step_ms": {"1": 1.0, "2": 0.8},
                            "max_abs_diff": 1e-7, "psnr": 30.0, "ssim": 0.5, "ssim_drop": 0.0},
                "int8": {"size_bytes": 180_000, "step_ms": {"1": 0.5, "2": 0.4},
                         "max_abs_diff": 0.2, "psnr": 29.0, "ssim": 0.49, "ssim_drop": 0.01}}}},
        },
        "cost_vs_length": {"lengths": [10, 20], "ms_per_frame": {
            "quick, streaming (Keras step)": [2.0, 2.0],
            "quick, re-run (Keras)": [20.0, 40.0],
            "tutorial, re-run (Keras, the tutorial's loop)": [800.0, 1600.0],
            "tutorial, streaming (Keras step)": [80.0, 80.0]}},
        "memory": {"training": {"quick": {"peak_rss_mb": 900.0, "measured": "process"}},
                   "inference": [{"model": "quick", "runtime": "Keras", "peak_rss_mb": 650.0}],
                   "idle_tensorflow_process_mb": 600.0},
        "pipeline": {"batch": 16, "prepared_clips_per_s": 2000.0,
                     "generator_clips_per_s": 500.0},
    }
    results["headline"] = B.headline(results)
    return results


def test_quality_ratios_and_headline():
    results = fake_results()
    h = results["headline"]
    assert h["quick_mse_vs_best_baseline"] == pytest.approx(0.6)
    assert h["quick_mse_vs_tutorial"] == pytest.approx(0.4)
    assert h["gan_mse_vs_quick"] == pytest.approx(1.1)
    assert h["tutorial_flops_vs_quick"] == pytest.approx(60.0)
    assert h["tutorial_rerun_vs_quick_streaming_at_T20"] == 800.0
    assert h["quick_rerun_vs_quick_streaming_at_T20"] == 20.0
    assert h["quick_rerun_cost_T20_vs_T10"] == 2.0
    assert h["tflite_int8_vs_float32_speed_1_thread"] == 2.0
    assert h["tflite_int8_vs_float32_size"] == 0.3
    assert h["matmul_rate_end_vs_start"] == 0.9


def test_training_speed_counts_forward_and_backward():
    t = fake_results()["speed"]["training"]["quick"]
    # 5 steps (3 context + 3 predicted - 1) of 0.1 GFLOPs forward, x 3 (forward +
    # backward) x 10 sequences/s; the 10 -> 10 rollout's own count is kept beside it.
    assert t["forward_gflops_per_sequence"] == 0.5 and t["train_gflops_per_sequence"] == 1.5
    assert t["achieved_gflops_per_s"] == 15.0 and t["fraction_of_matmul_rate"] == 0.15
    assert t["rollout_gflops_per_sequence"] == 1.5


def test_models_scored_on_other_clips_are_refused():
    reports = {"quick": model_report(60.0, 0.5), "gan": model_report(60.0, 0.5, copy_mse=99.0)}
    with pytest.raises(B.BenchError, match="same clips"):
        B.same_clips(reports)
    B.same_clips({"quick": model_report(60.0, 0.5), "gan": model_report(70.0, 0.4)})


def test_parse_runs(tmp_path):
    (tmp_path / "model.keras").write_bytes(b"")
    assert B.parse_runs([f"quick={tmp_path}"]) == {"quick": str(tmp_path)}
    with pytest.raises(B.BenchError, match="NAME=RUN_DIR"):
        B.parse_runs(["fast=runs/x"])
    with pytest.raises(B.BenchError, match="not a finished run"):
        B.parse_runs([f"gan={tmp_path / 'missing'}"])


def test_train_commands_share_data_and_budget():
    settings = B.smoke_settings()
    quick = B.train_command("quick", "shards", "runs/q", settings)
    assert quick[:3] == ["-m", "vidgen.cli", "train"] and "quick" in quick
    assert "train.time_budget_minutes=0.5" in quick and "data.frame_size=32" in quick
    gan = B.train_command("gan", "shards", "runs/g", settings)
    assert "quick_gan" in gan and "train.time_budget_minutes=0.5" in gan
    tutorial = B.train_command("tutorial", "shards", "runs/t", settings)
    assert tutorial[:2] == ["-m", "bench.baselines"]
    assert tutorial[tutorial.index("--budget-min") + 1] == "0.5"
    probe = B.train_command("quick", "shards", "runs/p", settings, probe=True)
    assert "train.steps_per_epoch=1" in probe and not any("time_budget" in a for a in probe)


def test_full_run_is_sized_for_half_an_hour():
    # The default (7 min per model) keeps `make bench` under 28 minutes on 2 cores.
    assert B.full_settings(7.0, 64).expected_minutes(3) <= 28
    assert B.full_settings(7.0, 64).expected_minutes(0) < 6


def test_report_and_plots(tmp_path):
    results = fake_results()
    md = R.write_report(results, str(tmp_path))
    assert (tmp_path / "REPORT.md").read_text() == md
    for name in ("mse_per_step_digits.png", "cost_vs_length.png", "training_throughput.png",
                 "inference_step_ms.png"):
        assert (tmp_path / "plots" / name).stat().st_size > 1000, name
    assert "MSE, `quick` / tutorial ConvLSTM (same budget) | 0.4 |" in md
    assert "| vidgen `quick` | 60.0 |" in md and "TFLite int8, LiteRT 2 threads | 0.40" in md
    assert "3 -> 3" in md and "10 -> 10" not in md


def test_readme_table_replaces_only_between_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\nbefore\n{R.START}\nold table\n{R.END}\nafter\n")
    R.update_readme(str(readme), fake_results())
    text = readme.read_text()
    assert text.startswith("# title\n\nbefore\n") and text.endswith(f"{R.END}\nafter\n")
    assert "old table" not in text and "`make bench-smoke`" in text
    assert "[`bench/REPORT.md`](bench/REPORT.md)" in text
    once = text
    R.update_readme(str(readme), fake_results())
    assert readme.read_text() == once
    with pytest.raises(ValueError, match="bench:start"):
        R.replace_between_markers("no markers here", "x")


def test_report_cli_redraws_from_results_json(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(fake_results()))
    readme = tmp_path / "README.md"
    readme.write_text(f"{R.START}\n{R.END}\n")
    assert R.main(["--results", str(path), "--readme", str(readme)]) == 0
    assert (tmp_path / "REPORT.md").is_file() and "vidgen `quick`" in readme.read_text()


def test_median_ms_and_length_measurements():
    calls = []
    assert S.median_ms(lambda: calls.append(1), repeats=4) >= 0 and len(calls) == 5
    ms = S.streaming_ms_at(lambda f, s: (f, s), np.zeros(2), None, length=6, timed=3)
    assert ms >= 0
    seen = []
    S.rerun_ms_at(lambda x: seen.append(x.shape[1]), np.zeros((1, 9)), 7, repeats=2)
    assert set(seen) == {7}


def test_child_peak_memory_is_its_own(tmp_path):
    code = "import numpy as np; a = np.ones(300 * 2**20 // 8); print(a.sum() > 0)"
    result = S.run_child(["-c", code], log=str(tmp_path / "log"), quiet=True)
    assert result["returncode"] == 0 and result["stdout"].strip() == "True"
    assert 300 <= result["peak_rss_mb"] < 1000
    assert os.path.isfile(tmp_path / "log")
    # Not the parent's resident set (this process has TensorFlow loaded).
    small = S.run_child(["-c", "print(1)"], quiet=True)
    assert small["peak_rss_mb"] < 100
    failed = S.run_child(["-m", "json.tool", "/nonexistent"], quiet=True)
    assert failed["returncode"] != 0


def test_moving_mnist_file_is_prepared_at_the_benchmarks_shapes(tmp_path):
    # The standard layout: uint8 (20 frames, N sequences, 64, 64), split by sequence.
    rng = np.random.default_rng(0)
    path = str(tmp_path / "mnist_test_seq.npy")
    np.save(path, (rng.random((20, 30, 64, 64)) > 0.9).astype(np.uint8) * 255)
    data = B.prepare_shards(path, str(tmp_path / "shards"), B.smoke_settings(), "moving_mnist")
    assert sum(data["clips"].values()) >= 30 and data["clips"]["test"] > 0
    manifest = json.loads((tmp_path / "shards" / "manifest.json").read_text())
    assert manifest["frame_size"] == 32 and manifest["clip_length"] >= 8


def test_bad_command_lines_fail_in_one_sentence(tmp_path, capsys):
    assert B.main(["--smoke", "--out", str(tmp_path), "--mmnist", str(tmp_path / "no.npy")]) == 2
    assert "--mmnist" in capsys.readouterr().err
    assert B.main(["--smoke", "--out", str(tmp_path), "--runs", "best=runs/x"]) == 2
    with pytest.raises(SystemExit):
        B.main(["--smoke", "--out", os.path.join(B.ROOT, "bench")])
