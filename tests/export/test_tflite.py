import os
import subprocess
import sys

import numpy as np
import pytest

from export import contract as C
from export.cli import main
from export.report import build_report
from export.runner import StepRunner, load_interpreter
from export.tflite import check_options, export_tflite, load_clips
from vidgen.errors import ArgumentError, DataArgumentError, VidgenError


def op_names(path: str) -> set[str]:
    interpreter = load_interpreter(path)
    return {op["op_name"] for op in interpreter._get_ops_details()}


def test_float32_step_model_matches_keras(float_tflite, tiny_model):
    cfg, model = tiny_model
    report = float_tflite["report"]["variants"]["float32"]
    assert float_tflite["report"]["targets"]["float32_max_abs_diff"]["pass"]
    assert os.path.isfile(float_tflite["step"].replace(".tflite", ".md"))
    assert report["max_abs_diff"] <= 1e-4
    assert abs(report["ssim_drop"]) <= 1e-4
    runner = StepRunner(float_tflite["step"])
    assert runner.state_names == C.for_model(model).state_names()
    assert runner.frame_shape == (16, 16, 1)
    # Streaming through the interpreter is the Keras rollout.
    clip = load_clips(cfg, "test", 1)[0]
    got = runner.rollout(clip[:3], 4)
    want = np.asarray(model.rollout(clip[None, :3], 4))[0]
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_builtin_ops_only(float_tflite, int8_tflite):
    for path in (float_tflite["step"], float_tflite["sequence"], int8_tflite["step"],
                 int8_tflite["sequence"]):
        ops = op_names(path)
        assert ops and not any(op.startswith("Flex") for op in ops), (path, ops)


def test_sequence_model_matches_keras(float_tflite, tiny_model):
    cfg, model = tiny_model
    interpreter = load_interpreter(float_tflite["sequence"])
    run = interpreter.get_signature_runner(C.SEQUENCE)
    assert set(run.get_input_details()) == {C.CONTEXT}
    assert set(run.get_output_details()) == {C.FRAMES}
    clip = load_clips(cfg, "test", 1)[:, :3]
    got = run(context=clip)[C.FRAMES]
    np.testing.assert_allclose(got, np.asarray(model.rollout(clip, 3)), atol=1e-4)


def test_int8_is_integer_smaller_and_close(int8_tflite, float_tflite):
    interpreter = load_interpreter(int8_tflite["step"])
    dtypes = {t["dtype"] for t in interpreter.get_tensor_details()}
    assert np.int8 in dtypes
    assert os.path.getsize(int8_tflite["step"]) < os.path.getsize(float_tflite["step"])
    report = int8_tflite["report"]["variants"]["int8"]
    # A random tiny model: no quality claim, but int8 must track the float model.
    assert report["mean_abs_diff"] < 0.02 and report["max_abs_diff"] < 0.2
    assert set(report["step_ms"]) == {"1", "2"}


def test_int8_with_uint8_io(tiny_run, tmp_path):
    written = export_tflite(tiny_run, "int8", out_dir=str(tmp_path), io="uint8",
                            calibration_clips=4, sequence=False, report_clips=0)
    runner = StepRunner(written["step"])
    assert runner.input_details[C.FRAME]["dtype"] == np.uint8
    frames = runner.rollout(np.zeros((2, 16, 16, 1), np.float32), 3)
    assert frames.dtype == np.float32 and frames.shape == (3, 16, 16, 1)
    assert frames.min() >= 0.0 and frames.max() <= 1.0
    assert os.path.basename(written["step"]) == "step_int8_iouint8.tflite"


def test_option_errors(tiny_run, tmp_path, capsys):
    # The library names its arguments; `vidgen-export` names its flags.
    with pytest.raises(ArgumentError, match="^quantize must be one of") as error:
        check_options("int4")
    assert error.value.with_flags().startswith("--quantize must be one of")
    with pytest.raises(ArgumentError, match="^io uint8 needs quantize int8") as error:
        check_options("float16", "uint8")
    assert "needs --quantize int8" in error.value.with_flags()
    assert main(["tflite", tiny_run, "--quantize", "float16", "--io", "uint8"]) == 2
    assert "error: --io uint8 needs --quantize int8" in capsys.readouterr().err
    with pytest.raises(VidgenError, match="could not be read"):
        export_tflite(tiny_run, "int8", out_dir=str(tmp_path),
                      data=str(tmp_path / "missing.npy"))
    assert not list(tmp_path.glob("*.tflite"))


def test_step_runner_rejects_bad_inputs(float_tflite):
    runner = StepRunner(float_tflite["step"])
    states = runner.initial_states()
    frame = np.zeros((16, 16, 1), np.float32)
    with pytest.raises(VidgenError, match=r"expected a dict with keys \['state_0'"):
        runner.step(frame, {"h": states["state_0"]})
    with pytest.raises(VidgenError, match=r"Input 'frame': expected shape \(1, 16, 16, 1\)"):
        runner.step(np.zeros((32, 32, 1), np.float32), states)
    with pytest.raises(VidgenError, match="expected float32 values"):
        runner.step(np.zeros((16, 16, 1), np.uint8), states)
    with pytest.raises(VidgenError, match="NaN or Inf"):
        runner.step(np.full((16, 16, 1), np.nan, np.float32), states)
    with pytest.raises(VidgenError, match="does not exist"):
        StepRunner(str(float_tflite["step"]) + ".missing")
    with pytest.raises(VidgenError, match="has no 'step' signature"):
        StepRunner(float_tflite["sequence"])


@pytest.mark.slow   # a command-line process per case
@pytest.mark.parametrize("damage", ["garbage", "truncated", "flipped"])
def test_corrupt_tflite_is_an_error_not_a_crash(float_tflite, tmp_path, damage):
    content = bytearray(open(float_tflite["step"], "rb").read())
    if damage == "garbage":
        content = bytearray(np.random.default_rng(0).bytes(4000))
    elif damage == "truncated":
        content = content[:len(content) // 3]
    else:
        # Header intact, the FlatBuffer tables behind it scrambled.
        rng = np.random.default_rng(0)
        for i in rng.integers(16, len(content) // 2, 300):
            content[i] = int(rng.integers(0, 256))
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(bytes(content))
    clip = tmp_path / "clip.npy"
    np.save(clip, np.zeros((5, 16, 16), np.uint8))
    # In a subprocess: a native crash would show as a negative return code.
    result = subprocess.run(
        [sys.executable, "-m", "export.cli", "run-tflite", str(bad), "--input", str(clip),
         "--context", "3", "--horizon", "2", "--out", str(tmp_path / "out.gif")],
        capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(C.__file__)))
    assert result.returncode == 2, result.stderr[-2000:]
    assert "vidgen-export: error:" in result.stderr
    assert "bad.tflite" in result.stderr
    assert not (tmp_path / "out.gif").exists()


def test_run_tflite_streams_a_clip(float_tflite, tmp_path):
    clip = tmp_path / "clip.npy"
    np.save(clip, np.random.default_rng(0).integers(0, 255, (8, 24, 24), dtype=np.uint8))
    out = tmp_path / "out.gif"
    assert main(["run-tflite", float_tflite["step"], "--input", str(clip), "--context", "3",
                 "--horizon", "5", "--out", str(out)]) == 0
    assert out.exists() and (tmp_path / "out_compare.gif").exists()
    # Too short for the context: one sentence, exit code 2.
    assert main(["run-tflite", float_tflite["step"], "--input", str(clip), "--context", "9",
                 "--horizon", "5", "--out", str(out)]) == 2


def test_report_writes_tables_and_targets(tiny_run, tmp_path):
    report = build_report(tiny_run, ("float32", "int8"), out_dir=str(tmp_path), clips=4,
                          calibration_clips=4, progress=False)
    assert set(report["variants"]) == {"float32", "int8"}
    assert set(report["targets"]) == {"float32_max_abs_diff", "int8_ssim_drop",
                                      "int8_size_ratio"}
    assert report["targets"]["float32_max_abs_diff"]["pass"]
    assert (tmp_path / "report.json").exists()
    table = (tmp_path / "report.md").read_text()
    assert "| float32 |" in table and "| int8 |" in table


def test_stochastic_model_exports_with_a_noise_input(stochastic_run, tmp_path):
    import tensorflow as tf

    from export.savedmodel import export_savedmodel

    path = export_savedmodel(stochastic_run, str(tmp_path / "models"), "vidgen")
    loaded = tf.saved_model.load(path)
    step_inputs = loaded.signatures[C.STEP].structured_input_signature[1]
    assert step_inputs[C.NOISE].shape.as_list() == [None, 1, 1, 2]
    frames = loaded.signatures[C.SERVING_DEFAULT](context=tf.zeros((2, 3, 16, 16, 1)),
                                                  horizon=tf.constant([2, 2]))[C.FRAMES]
    assert frames.shape == (2, 2, 16, 16, 1)

    written = export_tflite(stochastic_run, "float32", out_dir=str(tmp_path / "tfl"),
                            report_clips=2)
    # Given the same noise, the interpreter reproduces Keras.
    assert written["report"]["variants"]["float32"]["max_abs_diff"] <= 1e-4
    runner = StepRunner(written["step"])
    assert runner.noise_shape == (1, 1, 2) and C.NOISE not in runner.state_names
    a = runner.rollout(np.zeros((3, 16, 16, 1), np.float32), 2)
    b = runner.rollout(np.zeros((3, 16, 16, 1), np.float32), 2)
    assert a.shape == (2, 16, 16, 1) and not np.allclose(a, b)  # random noise when not given


def test_step_runner_floors_returned_frames_only(float_tflite):
    runner = StepRunner(float_tflite["step"])
    clip = np.random.default_rng(5).random((3, 16, 16, 1), dtype=np.float32)
    raw = runner.rollout(clip, 4)
    floored = runner.rollout(clip, 4, floor=0.45)
    assert (raw < 0.45).any() and (raw >= 0.45).any()
    np.testing.assert_array_equal(floored, np.where(raw < 0.45, 0.0, raw))


@pytest.fixture(scope="module")
def rgb_flow_run(tmp_path_factory):
    """A tiny RGB model with the footage head ("flow"), its gate and residual moved off 0."""
    from tests.tiny import tiny_run_config
    from vidgen.training.build import build_model

    run = tmp_path_factory.mktemp("rgb_flow_run")
    cfg = tiny_run_config(**{"data.channels": 3, "model.head": "flow", "model.dna_kernel": 5})
    model = build_model(cfg)
    out = model.decoder.out
    rng = np.random.default_rng(0)
    out.kernel.assign(np.asarray(out.kernel) + 0.05 * rng.standard_normal(out.kernel.shape))
    model.save(os.path.join(run, "model.keras"))
    cfg.to_json(os.path.join(run, "config.json"))
    return str(run)


def test_rgb_flow_model_exports_float_and_int8(rgb_flow_run, tmp_path):
    from vidgen.run_dir import load_run

    cfg, model = load_run(rgb_flow_run)
    written = export_tflite(rgb_flow_run, "float32", out_dir=str(tmp_path / "f"),
                            report_clips=2)
    assert written["report"]["variants"]["float32"]["max_abs_diff"] <= 1e-4
    runner = StepRunner(written["step"])
    assert runner.frame_shape == (16, 16, 3)
    clip = load_clips(cfg, "test", 1)[0]
    np.testing.assert_allclose(runner.rollout(clip[:3], 3),
                               np.asarray(model.rollout(clip[None, :3], 3))[0], atol=1e-4)
    int8 = export_tflite(rgb_flow_run, "int8", out_dir=str(tmp_path / "q"),
                         calibration_clips=4, report_clips=2)
    for path in (int8["step"], int8["sequence"]):
        ops = op_names(path)
        assert ops and not any(op.startswith("Flex") for op in ops), (path, ops)
    report = int8["report"]["variants"]["int8"]
    assert report["mean_abs_diff"] < 0.03 and report["max_abs_diff"] < 0.3, report
    # The flow head's ABS, RELU and clips too: every op of both step models in XNNPACK.
    from export.xnnpack import undelegated_ops

    for path in (written["step"], int8["step"]):
        assert undelegated_ops(open(path, "rb").read()) == [], path
        # The warp's shifted copies are slices, not one-hot convolutions (slow in int8).
        assert one_hot_shift_convolutions(path, cfg.model.dna_kernel) == 0, path


def one_hot_shift_convolutions(path: str, taps: int) -> int:
    """CONV_2D ops of a .tflite with a 1-input-channel, `taps`-output filter (a shift)."""
    interpreter = load_interpreter(path)
    shapes = {t["index"]: tuple(t["shape"]) for t in interpreter.get_tensor_details()}
    return sum(1 for op in interpreter._get_ops_details() if op["op_name"] == "CONV_2D"
               and shapes[op["inputs"][1]][0] == taps and shapes[op["inputs"][1]][-1] == 1)


def test_every_op_of_the_step_models_runs_in_xnnpack(float_tflite, int8_tflite):
    from export.xnnpack import delegation, undelegated_ops

    for path in (float_tflite["step"], int8_tflite["step"]):
        content = open(path, "rb").read()
        assert undelegated_ops(content) == [], path
        assert delegation(content)[1] == 1, path
    ops = op_names(int8_tflite["step"])
    assert "MIRROR_PAD" not in ops and "SOFTMAX" not in ops, ops


def test_mirror_pad_matrix_pads_symmetrically():
    from export.xnnpack import mirror_pad_matrix

    row = np.arange(1.0, 6.0, dtype=np.float32)
    np.testing.assert_array_equal(row @ mirror_pad_matrix(5, 2),
                                  np.pad(row, 2, mode="symmetric"))


def test_load_clips_keeps_the_data_errors_arguments(monkeypatch):
    """A data error's config keys stay arguments, so the command line names their flags."""
    from tests.tiny import tiny_run_config

    def unreadable(*args, **kwargs):
        raise DataArgumentError("frames are too small, so use {data.frame_size}=8.",
                                "data.frame_size")

    monkeypatch.setattr("export.tflite.make_dataset", unreadable)
    with pytest.raises(ArgumentError) as raised:
        load_clips(tiny_run_config(), "test", 1)
    assert "so use --set data.frame_size=8. Pass --data." in raised.value.with_flags()
    assert "so use data.frame_size=8. Pass data." in str(raised.value)
