import json
import os

import imageio.v2 as imageio
import keras
import numpy as np
import pytest

from tests.conftest import moving_square, write_mp4
from tests.tiny import tiny_run_config
from vidgen.cli import main
from vidgen.config import Config
from vidgen.errors import VidgenError
from vidgen.evaluate import evaluate
from vidgen.generate import generate
from vidgen.run_dir import load_run
from vidgen.training.train import _as_trained, train


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = str(tmp_path_factory.mktemp("runs") / "tiny")
    summary = train(tiny_run_config(), run)
    assert summary["epochs_run"] == 2 and not summary["interrupted"]
    return run


def test_run_directory_holds_everything(run_dir):
    for name in ("config.json", "model.keras", "metrics.json", "training.json",
                 "checkpoints/last.keras", "checkpoints/best.json",
                 "backup/state.json", "backup/epoch-0002.weights.h5", "logs/history.csv",
                 "samples/epoch_001.gif", "samples/epoch_002.gif", "samples/test.gif",
                 "samples/test_grid.png", "plots/psnr_per_step.png", "plots/ssim_per_step.png"):
        assert os.path.isfile(os.path.join(run_dir, name)), name
    assert any(f.startswith("events") for f in os.listdir(os.path.join(run_dir, "logs", "train")))
    assert not [f for root, _, files in os.walk(run_dir) for f in files if ".tmp" in f]
    history = open(os.path.join(run_dir, "logs/history.csv")).read().splitlines()
    assert len(history) == 3 and "val_frame_mse" in history[0]


def test_metrics_json_compares_model_with_baselines(run_dir):
    report = json.load(open(os.path.join(run_dir, "metrics.json")))
    # Digits are dark: the all-black frame is kept beside copy-last and flow extrapolation.
    assert set(report["results"]) == {"model", "copy_last", "flow", "black"}
    assert report["black_frame"]["included"]
    assert report["best_baseline"]["mse"] in {"copy_last", "flow", "black"}
    assert report["clips"] == 4 and report["horizon"] == 3
    for result in report["results"].values():
        assert len(result["psnr"]["per_step"]) == 3
        assert 0.0 <= result["ssim"]["mean"] <= 1.0
    black = report["results"]["black"]["mse"]["mean"]
    assert black > 0
    assert report["flops_per_sequence"] > 0
    assert report["training"]["sequences_per_second"] > 0


def test_reload_in_keras_and_predict(run_dir):
    model = keras.saving.load_model(os.path.join(run_dir, "model.keras"))
    context = np.random.default_rng(0).random((2, 3, 16, 16, 1)).astype("float32")
    assert model.predict(context, verbose=0).shape == (2, 3, 16, 16, 1)
    assert model.rollout(context, 6).shape == (2, 6, 16, 16, 1)


def test_resume_continues_from_backup(run_dir, tmp_path):
    import shutil

    copy = str(tmp_path / "run")
    shutil.copytree(run_dir, copy)
    cfg_path = os.path.join(copy, "config.json")
    cfg = json.load(open(cfg_path))
    cfg["train"]["epochs"] = 3
    json.dump(cfg, open(cfg_path, "w"))
    summary = train(None, copy, resume=True, evaluate_after=False)
    # Two epochs were done: only the third runs.
    assert summary["epochs_run"] == 1
    history = open(os.path.join(copy, "logs/history.csv")).read().splitlines()
    assert [line.split(",")[0] for line in history[1:]] == ["0", "1", "2"]


def test_existing_run_is_not_overwritten(run_dir):
    with pytest.raises(VidgenError, match="already holds a run; pass resume to continue it or "
                                          "choose another run_dir"):
        train(tiny_run_config(), run_dir)


def test_evaluate_on_other_data(run_dir, tmp_path):
    clips = np.stack([moving_square(8, 16, 16, channels=1, phase=i) for i in range(6)])
    path = tmp_path / "clips.npy"
    np.save(path, clips)
    report = evaluate(run_dir, data=str(path), progress=False)
    assert report["data"] == str(path) and report["clips"] >= 1


def test_evaluate_cli_out_dir_leaves_the_run_as_it_was(run_dir, tmp_path, capsys):
    metrics = os.path.join(run_dir, "metrics.json")
    before = open(metrics).read()
    out = tmp_path / "eval"
    assert main(["evaluate", run_dir, "--out", str(out), "--max-clips", "2"]) == 0
    assert str(out / "metrics.json") in capsys.readouterr().out
    assert json.loads((out / "metrics.json").read_text())["clips"] == 2
    assert (out / "plots").is_dir() and (out / "samples").is_dir()
    assert open(metrics).read() == before


def test_evaluate_names_a_relative_data_path_not_found_from_here(run_dir, tmp_path,
                                                                 monkeypatch, capsys):
    import shutil

    project = tmp_path / "project"
    (project / "clips").mkdir(parents=True)
    np.save(project / "clips" / "c.npy",
            np.stack([moving_square(8, 16, 16, channels=1, phase=i) for i in range(6)]))
    run = project / "runs" / "r"
    shutil.copytree(run_dir, run)
    config = json.loads((run / "config.json").read_text())
    config["data"]["source"] = "clips/c.npy"
    (run / "config.json").write_text(json.dumps(config))
    monkeypatch.chdir(tmp_path)
    assert main(["evaluate", str(run), "--out", str(tmp_path / "e1")]) == 2
    err = capsys.readouterr().err
    assert "'clips/c.npy' is not found from" in err and "--data" in err
    monkeypatch.chdir(project)
    assert main(["evaluate", "runs/r", "--out", str(tmp_path / "e2")]) == 0


def test_generate_from_video_and_npy(run_dir, tmp_path):
    video = write_mp4(tmp_path / "in.mp4", moving_square(12, 40, 60))
    out = str(tmp_path / "out.gif")
    result = generate(run_dir, video, out, horizon=5)
    assert result["context"] == 3
    frames = imageio.mimread(out)
    assert len(frames) == 3 + 5 and frames[0].shape[:2] == (16, 16)
    compare = imageio.mimread(str(tmp_path / "out_compare.gif"))
    assert compare[0].shape[1] > 32, "real and generated side by side"
    npy = tmp_path / "clip.npy"
    np.save(npy, moving_square(4, 16, 16, channels=1).astype(np.float32) / 255)
    out = generate(run_dir, str(npy), str(tmp_path / "o.mp4"), context=4, horizon=2)
    assert out["written"] == [str(tmp_path / "o.mp4")]


@pytest.mark.parametrize("make_input, message", [
    (lambda d: write_mp4(d / "short.mp4", moving_square(2, 16, 16)), "has 2 frames"),
    (lambda d: str(d / "missing.mp4"), "does not exist"),
    (lambda d: (np.save(d / "nan.npy", np.full((5, 16, 16), np.nan, np.float32)),
                str(d / "nan.npy"))[1], "NaN"),
    (lambda d: (np.save(d / "big.npy", np.full((5, 16, 16), 3.0, np.float32)),
                str(d / "big.npy"))[1], r"must lie in \[0, 1\]"),
])
def test_generate_bad_inputs(run_dir, tmp_path, make_input, message):
    with pytest.raises(VidgenError, match=message):
        generate(run_dir, make_input(tmp_path), str(tmp_path / "o.gif"), horizon=2)


def test_run_without_model(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(tiny_run_config().to_dict()))
    with pytest.raises(VidgenError, match="has no model.keras"):
        load_run(str(tmp_path))
    with pytest.raises(VidgenError, match="not a run directory"):
        load_run(str(tmp_path / "nothing"))


def test_cli_train_errors(tmp_path, capsys):
    # --resume of a run that never started: with a config it starts (the same command
    # restarts a preempted job); with nothing to go on it is an error.
    with pytest.raises(VidgenError, match="Cannot resume"):
        train(None, str(tmp_path / "x"), resume=True)
    assert main(["generate", str(tmp_path), "--input", "a.mp4", "--out", "o.gif"]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_load_in_a_fresh_process(run_dir):
    import subprocess
    import sys

    code = ("import numpy as np, keras, vidgen; "
            f"m = keras.saving.load_model({os.path.join(run_dir, 'model.keras')!r}); "
            "x = np.zeros((1, 3, 16, 16, 1), 'float32'); "
            "print(m.predict(x, verbose=0).shape, m.rollout(x, 4).shape)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "(1, 3, 16, 16, 1) (1, 4, 16, 16, 1)" in out.stdout


def test_ctrl_c_saves_and_resume_continues(tmp_path):
    class Interrupt(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if int(self.model.optimizer.iterations.numpy()) == 4:  # inside the second epoch
                raise KeyboardInterrupt

    run = str(tmp_path / "run")
    summary = train(tiny_run_config(), run, extra_callbacks=[Interrupt()])
    assert summary["interrupted"]
    assert os.path.isfile(os.path.join(run, "checkpoints", "interrupted.keras"))
    meta = json.load(open(os.path.join(run, "backup", "state.json")))
    assert meta["epoch"] == 1, "the backup holds the last finished epoch"
    summary = train(None, run, resume=True, evaluate_after=False)
    assert summary["epochs_run"] == 1 and not summary["interrupted"]


def test_training_calibrates_the_output_floor_and_evaluate_reports_both(tmp_path):
    run = str(tmp_path / "floor")
    cfg = tiny_run_config(**{"train.epochs": 1, "train.output_floor_tolerance": 0.5})
    summary = train(cfg, run, evaluate_after=False)
    result = summary["output_floor"]
    assert [c["floor"] for c in result["candidates"]][:3] == [0.0, 0.05, 0.1]
    assert result["clips"] == 4 and result["tolerance"] == 0.5
    _, model = load_run(run)
    assert model.output_floor == result["floor"]
    assert json.load(open(os.path.join(run, "training.json")))["output_floor"] == result
    # config.json describes model.keras: it records the calibrated floor.
    assert Config.from_json(os.path.join(run, "config.json")).model.output_floor == result["floor"]
    # The same command resumes the calibrated run (the floor is the calibration's, not a
    # difference from the command's config).
    more = tiny_run_config(**{"train.epochs": 2, "train.output_floor_tolerance": 0.5})
    resumed = train(more, run, resume=True, evaluate_after=False)
    assert resumed["epochs_run"] == 1
    # It trained unfloored (as the first run did) and calibrated again at the end.
    assert _as_trained(Config.from_json(os.path.join(run, "config.json"))).model.output_floor == 0
    assert (Config.from_json(os.path.join(run, "config.json")).model.output_floor
            == load_run(run)[1].output_floor == resumed["output_floor"]["floor"])
    # Whatever the calibration chose, a floored model is reported both ways.
    model.output_floor = 0.3
    keras.saving.save_model(model, os.path.join(run, "model.keras"))
    report = evaluate(run, progress=False)
    assert report["output_floor"] == pytest.approx(0.3)
    assert set(report["results"]) == {"model", "model_unfloored", "copy_last", "flow", "black"}
    floored, raw = report["results"]["model"], report["results"]["model_unfloored"]
    assert floored["mse"]["mean"] != raw["mse"]["mean"]
    assert floored["sharpness"]["mean"] != raw["sharpness"]["mean"]
    # --floor overrides the model's floor for one evaluation, without touching the file.
    report = evaluate(run, progress=False, floor=0.0, out_dir=str(tmp_path / "nofloor"))
    assert "model_unfloored" not in report["results"] and report["output_floor"] == 0.0
    assert report["results"]["model"]["mse"]["mean"] == pytest.approx(raw["mse"]["mean"])
    assert load_run(run)[1].output_floor == pytest.approx(0.3)
    assert main(["evaluate", run, "--floor", "1.5"]) == 2


def test_the_command_line_names_flags_where_the_library_names_arguments(run_dir, capsys):
    from vidgen import cli

    code = cli.main(["train", "--preset", "quick", "--run-dir", run_dir])
    err = capsys.readouterr().err
    assert code == 2
    assert "already holds a run; pass --resume to continue it or choose another --run-dir" in err
    code = cli.main(["train", "--run-dir", run_dir, "--resume", "--set", "model.cell=gru"])
    assert code == 2
    assert "--set can change only train.learning_rate" in capsys.readouterr().err


def test_argument_errors_name_arguments_in_python_and_flags_on_the_command_line():
    from vidgen.errors import ArgumentError

    error = ArgumentError("drop {cfg} or start a new {run_dir} ({other}, {})", "cfg", "run_dir")
    assert str(error) == "drop cfg or start a new run_dir ({other}, {})"
    assert error.with_flags({"cfg": "--preset/--data"}) == (
        "drop --preset/--data or start a new --run-dir ({other}, {})")
