"""A .tflite that describes itself (its model card), run where TensorFlow cannot be imported."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema

from export import contract as C
from export.runner import StepRunner
from export.tflite import export_tflite
from export.tflite_metadata import CARD_NAME, read_card, read_metadata, with_metadata
from vidgen.errors import VidgenError
from vidgen.generate import load_input_clip

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONTEXT, HORIZON = 3, 4
FLOOR = 0.5   # about the median of the tiny model's predictions: zeroes half of them

# Run in a child process: makes TensorFlow, Keras and the rest of vidgen[full] impossible
# to import (as where only vidgen[lite] is installed), runs a command line, saves the
# frames it writes and prints the child's peak memory. The peak is VmHWM: ru_maxrss
# would count the parent's memory too (Linux keeps it across the fork and exec).
DRIVER = """
import importlib, sys
import numpy as np

BLOCKED = {"tensorflow", "keras", "tensorflow_serving", "tensorboard", "scipy",
           "matplotlib", "prometheus_client", "grpc"}

class Blocker:
    def find_spec(self, name, path=None, target=None):
        if sys.argv[1] == "block" and name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None

sys.meta_path.insert(0, Blocker())
module, capture, argv = sys.argv[2], sys.argv[3], sys.argv[4:]
if module == "export.cli":
    import vidgen.generate as generate
    write = generate.write_continuation

    def capturing(out, frames, prediction, *args, **kwargs):
        np.save(capture, prediction)
        return write(out, frames, prediction, *args, **kwargs)

    generate.write_continuation = capturing
code = importlib.import_module(module).main(argv)
loaded = sorted(m for m in BLOCKED if m in sys.modules)
with open("/proc/self/status") as f:
    peak = next(line.split()[1] for line in f if line.startswith("VmHWM:"))
print(f"RESULT code={code} loaded={','.join(loaded) or '-'} maxrss_kb={peak}")
"""


@pytest.fixture(scope="module")
def floored_run(tiny_run, tmp_path_factory):
    """`tiny_run` with an output floor (FLOOR) that zeroes part of every predicted frame."""
    from vidgen.run_dir import load_run

    run = str(tmp_path_factory.mktemp("floored_run") / "run")
    shutil.copytree(tiny_run, run)
    _, model = load_run(run)
    model.output_floor = FLOOR
    model.save(os.path.join(run, "model.keras"))
    return run


@pytest.fixture(scope="module")
def floored_tflite(floored_run, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("floored_tflite"))
    return {q: export_tflite(floored_run, q, out_dir=out, calibration_clips=4, sequence=False,
                             report_clips=0)["step"] for q in ("float32", "int8")}


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "clip.npy"
    np.save(path, np.random.default_rng(3).integers(0, 256, (8, 20, 20), dtype=np.uint8))
    return str(path)


def keras_frames(run: str, clip: str) -> np.ndarray:
    """The Keras model's rollout (with its floor) of the frames run-tflite reads from `clip`."""
    from vidgen.run_dir import load_run

    _, model = load_run(run)
    frames, _ = load_input_clip(clip, 16, 1, CONTEXT, horizon=HORIZON)
    return np.asarray(model.rollout(frames[None, :CONTEXT], HORIZON))[0]


def test_tflite_carries_its_model_card(floored_tflite):
    for quantize, path in floored_tflite.items():
        card = read_card(path)
        assert card["output_floor"]["value"] == pytest.approx(FLOOR)
        assert card["frames"]["size"] == 16 and card["frames"]["channels"] == 1
        assert card["signature"] == C.STEP and card["quantize"] == quantize
        runner = StepRunner(path)
        assert runner.card == card and runner.output_floor == pytest.approx(FLOOR)
        assert card["state_names"] == runner.state_names
        # The converter's own metadata is kept beside the card.
        assert read_metadata(path, "min_runtime_version") is not None
        # Tensor data stays 16-byte aligned (the schema's force_align) after the rewrite.
        model = schema.Model.GetRootAs(open(path, "rb").read(), 0)
        starts = [model.Buffers(i)._tab.Vector(model.Buffers(i)._tab.Offset(4))
                  for i in range(model.BuffersLength()) if model.Buffers(i).DataLength()]
        assert starts and all(start % 16 == 0 for start in starts)


def test_sequence_model_card_says_its_frames_are_floored(float_tflite):
    card = read_card(float_tflite["sequence"])
    assert card["signature"] == C.SEQUENCE and "floored already" in card["output_floor"]["meaning"]
    assert read_card(float_tflite["step"])["signature"] == C.STEP


def test_run_tflite_floors_like_keras_without_floor_flag(floored_run, floored_tflite, clip,
                                                         tmp_path, monkeypatch):
    import vidgen.generate
    from export.cli import main

    written = {}
    write = vidgen.generate.write_continuation

    def capture(out, frames, prediction, *args, **kwargs):
        written[out] = prediction
        return write(out, frames, prediction, *args, **kwargs)

    monkeypatch.setattr("vidgen.generate.write_continuation", capture)
    want = keras_frames(floored_run, clip)
    assert (want == 0).mean() > 0.1 and (want > FLOOR).mean() > 0.1   # the floor matters
    runs = {"float32": [], "int8": [], "override": ["--floor", "0"]}
    for name, extra in runs.items():
        model = floored_tflite["float32" if name == "override" else name]
        out = str(tmp_path / f"{name}.gif")
        assert main(["run-tflite", model, "--input", clip, "--context", str(CONTEXT),
                     "--horizon", str(HORIZON), "--out", out] + extra) == 0
    np.testing.assert_allclose(written[str(tmp_path / "float32.gif")], want, atol=1e-5)
    # int8 tracks the floored Keras frames (a random tiny model: loosely).
    int8 = written[str(tmp_path / "int8.gif")]
    assert np.abs(int8 - want).mean() < 0.03
    assert ((int8 == 0) == (want == 0)).mean() > 0.9
    # --floor overrides the card: 0 returns the frames unfloored.
    raw = written[str(tmp_path / "override.gif")]
    assert (raw > 0).all() and np.allclose(np.where(raw < FLOOR, 0, raw), want, atol=1e-5)


def test_file_without_card_and_bad_cards(floored_tflite, clip, tmp_path, capsys):
    from ai_edge_litert.tools import flatbuffer_utils

    from export.cli import main

    content = open(floored_tflite["float32"], "rb").read()
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
    model.metadata = [m for m in model.metadata if m.name.decode() != CARD_NAME]
    bare = tmp_path / "bare.tflite"
    bare.write_bytes(bytes(flatbuffer_utils.convert_object_to_bytearray(model)))
    runner = StepRunner(str(bare))   # exported before models carried a card: no floor
    assert runner.card is None and runner.output_floor == 0.0
    for value, message in [(b"not json", "could not be read"),
                           (b"[1]", "must be a JSON object"),
                           (json.dumps({"output_floor": {"value": 1.5}}).encode(),
                            "must be in \\[0, 1\\)")]:
        bad = tmp_path / "bad.tflite"
        bad.write_bytes(with_metadata(content, CARD_NAME, value))
        with pytest.raises(VidgenError, match=message):
            StepRunner(str(bad))
    argv = ["run-tflite", floored_tflite["float32"], "--input", clip, "--out",
            str(tmp_path / "out.gif"), "--context", "3", "--floor", "1.5"]
    assert main(argv) == 2
    assert "--floor must be in [0, 1). Received: 1.5" in capsys.readouterr().err


def run_driver(tmp_path, block: bool, module: str, argv: list[str]) -> dict:
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    capture = tmp_path / f"{module}.npy"
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run([sys.executable, str(driver), "block" if block else "open", module,
                             str(capture)] + argv, capture_output=True, text=True, env=env,
                            cwd=str(tmp_path), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    line = [x for x in result.stdout.splitlines() if x.startswith("RESULT ")][-1]
    fields = dict(f.split("=", 1) for f in line.split()[1:])
    return {"code": int(fields["code"]), "loaded": fields["loaded"],
            "maxrss_mb": int(fields["maxrss_kb"]) / 1024,
            "frames": np.load(capture) if capture.exists() else None, "stderr": result.stderr}


@pytest.mark.slow   # two command-line processes, one with TensorFlow
def test_run_tflite_without_tensorflow(floored_run, floored_tflite, clip, tmp_path):
    """run-tflite where TensorFlow and Keras cannot be imported: same frames, less memory."""
    args = ["--input", clip, "--context", str(CONTEXT), "--horizon", str(HORIZON)]
    lite = run_driver(tmp_path, True, "export.cli",
                      ["run-tflite", floored_tflite["float32"], "--out",
                       str(tmp_path / "lite.gif")] + args)
    assert lite["code"] == 0 and lite["loaded"] == "-", lite["stderr"][-2000:]
    assert (tmp_path / "lite.gif").exists() and (tmp_path / "lite_compare.gif").exists()
    np.testing.assert_allclose(lite["frames"], keras_frames(floored_run, clip), atol=1e-5)
    # The same continuation through TensorFlow and the Keras model (`vidgen generate`).
    keras = run_driver(tmp_path, False, "vidgen.cli",
                       ["generate", floored_run, "--out", str(tmp_path / "keras.gif")] + args)
    assert keras["code"] == 0 and "tensorflow" in keras["loaded"]
    print(f"peak memory: run-tflite {lite['maxrss_mb']:.0f} MB without TensorFlow, "
          f"vidgen generate {keras['maxrss_mb']:.0f} MB")
    assert lite["maxrss_mb"] < 150 and lite["maxrss_mb"] < keras["maxrss_mb"] / 3


def test_commands_that_need_tensorflow_say_how_to_install_it(tiny_run, tmp_path):
    result = run_driver(tmp_path, True, "export.cli", ["tflite", tiny_run, "--out",
                                                       str(tmp_path / "t")])
    assert result["code"] == 2 and "Traceback" not in result["stderr"]
    # The first module of vidgen[full] it reaches (scipy, before TensorFlow) is named.
    assert "which is not installed" in result["stderr"]
    assert 'pip install "vidgen[full]"' in result["stderr"]
