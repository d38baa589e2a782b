import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from export import contract as C
from export.savedmodel import export_savedmodel, next_version
from vidgen.errors import VidgenError

# The command line TF installs beside the interpreter running the tests.
SAVED_MODEL_CLI = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    base = tmp_path_factory.mktemp("models")
    return str(base), export_savedmodel(tiny_run, str(base), "vidgen")


def horizons(horizon: int, batch: int):
    """The `horizon` input: one value per clip."""
    return tf.constant(C.horizon_input(horizon, batch))


def run_serving_default(path: str, context: np.ndarray, horizon: int, tmp_path) -> np.ndarray:
    """`saved_model_cli run` of serving_default (TF's session loader, as TF Serving's)."""
    np.save(tmp_path / "context.npy", context)
    np.save(tmp_path / "horizon.npy", C.horizon_input(horizon, len(context)))
    subprocess.run([SAVED_MODEL_CLI, "run", "--dir", path, "--tag_set", "serve",
                    "--signature_def", "serving_default",
                    "--inputs", f"context={tmp_path / 'context.npy'};"
                                f"horizon={tmp_path / 'horizon.npy'}",
                    "--outdir", str(tmp_path / "out")], capture_output=True, check=True)
    return np.load(tmp_path / "out" / "frames.npy")


def session_run(path: str, context: np.ndarray, horizon: np.ndarray) -> np.ndarray:
    """serving_default through TF's session loader in this process (what saved_model_cli
    and TF Serving do: load the MetaGraph into a Session, feed the signature's tensors)."""
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], path)
        sig = meta.signature_def[C.SERVING_DEFAULT]
        return sess.run(sig.outputs[C.FRAMES].name,
                        {sig.inputs[C.CONTEXT].name: context, sig.inputs[C.HORIZON].name: horizon})


def test_contract_names_are_explicit():
    spec = C.Contract(frame_size=8, channels=1, state_shapes=[(2, 2, 4), (8, 8, 1)])
    assert list(spec.inputs(C.SERVING_DEFAULT)) == ["context", "horizon"]
    # Batch first everywhere: TF Serving's batching concatenates every input on dimension 0.
    assert spec.inputs(C.SERVING_DEFAULT)["horizon"] == C.TensorInfo("int32", (None,))
    assert spec.inputs(C.PREDICT_UINT8)["horizon"].shape == (None,)
    assert C.horizon_input(7, 3).tolist() == [7, 7, 7] and C.horizon_input(7, 3).dtype == "int32"
    assert spec.inputs(C.PREDICT_UINT8)["context"].dtype == "uint8"
    assert spec.outputs(C.PREDICT_UINT8)["frames"].dtype == "uint8"
    assert list(spec.inputs(C.STEP)) == ["frame", "state_0", "state_1"]
    assert list(spec.outputs(C.STEP)) == ["next_frame", "state_0", "state_1"]
    assert spec.inputs(C.STEP)["state_1"].shape == (None, 8, 8, 1)
    assert C.Contract(8, 1, [(2, 2, 4)], batch=1).inputs(C.SEQUENCE, 5)["context"].shape == (
        1, 5, 8, 8, 1)
    with pytest.raises(KeyError, match="Unknown signature"):
        spec.inputs("classify")


def test_layout_versions_and_no_leftovers(exported, tiny_run):
    base, path = exported
    assert path == os.path.join(base, "vidgen", "1")
    assert os.path.isfile(os.path.join(path, "saved_model.pb"))
    assert next_version(os.path.join(base, "vidgen")) == 2
    with pytest.raises(VidgenError, match="already exists"):
        export_savedmodel(tiny_run, base, "vidgen", version=1)
    # Only numeric version directories are left where TF Serving looks.
    assert os.listdir(os.path.join(base, "vidgen")) == ["1"]


def test_warmup_requests_and_model_card(exported):
    from tensorflow_serving.apis import prediction_log_pb2

    _, path = exported
    extra = os.path.join(path, "assets.extra")
    logs = [prediction_log_pb2.PredictionLog.FromString(r.numpy())
            for r in tf.data.TFRecordDataset(os.path.join(extra, C.WARMUP_FILE))]
    assert sorted(log.predict_log.request.model_spec.signature_name for log in logs) == sorted(
        C.SAVEDMODEL_SIGNATURES)
    for log in logs:
        request = log.predict_log.request
        assert request.model_spec.name == "vidgen"
        if request.model_spec.signature_name == C.SERVING_DEFAULT:
            assert set(request.inputs) == {"context", "horizon"}
            assert tf.make_ndarray(request.inputs["context"]).shape == (1, 3, 16, 16, 1)
        if request.model_spec.signature_name != C.STEP:   # batchable: rank 1, as context
            assert tf.make_ndarray(request.inputs["horizon"]).tolist() == [3]
    with open(os.path.join(extra, C.MODEL_CARD)) as f:
        card = json.load(f)
    assert card["version"] == 1 and card["frames"]["size"] == 16
    assert card["signatures"]["step"]["inputs"]["state_0"]["shape"] == [None, 4, 4, 8]
    assert card["config"]["data"]["context"] == 3


@pytest.mark.slow   # saved_model_cli: a TensorFlow process
def test_saved_model_cli_show_lists_signatures(exported):
    _, path = exported
    out = subprocess.run([SAVED_MODEL_CLI, "show", "--dir", path, "--all"],
                         capture_output=True, text=True, check=True).stdout
    for key in C.SAVEDMODEL_SIGNATURES:
        assert f"signature_def['{key}']" in out
    for name in ("inputs['context']", "inputs['horizon']", "outputs['frames']",
                 "inputs['frame']", "inputs['state_0']", "outputs['next_frame']"):
        assert name in out
    for generated in ("input_1", "output_0", "args_0"):
        assert generated not in out
    horizon = out.split("inputs['horizon'] tensor_info:")[1].split("name:")[0]
    assert "DT_INT32" in horizon and "shape: (-1)" in horizon


def test_horizon_is_batched_in_the_signature_defs(exported):
    from serving.servable import read_meta_graph

    _, path = exported
    signature_defs = read_meta_graph(path).signature_def
    for key in (C.SERVING_DEFAULT, C.PREDICT_UINT8):
        info = signature_defs[key].inputs[C.HORIZON]
        assert [d.size for d in info.tensor_shape.dim] == [-1]
    for key in C.SAVEDMODEL_SIGNATURES:   # every input batched: TF Serving can batch them
        for info in signature_defs[key].inputs.values():
            assert info.tensor_shape.dim[0].size == -1


def test_batching_params_file_parses_as_batching_parameters(exported):
    from google.protobuf import text_format

    from serving.batching_parameters import BatchingOptions, BatchingParameters

    _, path = exported
    file = os.path.join(path, C.BATCHING_PARAMS_FILE)   # where TF Serving looks for it
    with open(file) as f:
        message = text_format.Parse(f.read(), BatchingParameters())
    assert message.max_batch_size.value == 16 and not message.pad_variable_length_inputs
    options = BatchingOptions.from_file(file, per_model=True)
    assert (options.max_batch_size, options.batch_timeout_micros,
            options.max_enqueued_batches) == (16, 2000, 8)


@pytest.mark.slow   # saved_model_cli: a TensorFlow process
def test_session_loader_matches_keras(exported, tiny_model, tmp_path):
    """saved_model_cli run: TF's session-based loader, the one TF Serving uses."""
    _, path = exported
    _, model = tiny_model
    context = np.random.default_rng(1).random((2, 4, 16, 16, 1), dtype=np.float32)
    got = run_serving_default(path, context, 5, tmp_path)   # horizon [5, 5]
    want = np.asarray(model.rollout(context, 5))
    assert got.shape == (2, 5, 16, 16, 1)
    np.testing.assert_allclose(got, want, atol=1e-5)
    # The same loader in-process, and different horizons in one batch (what TF Serving's
    # batching makes of two requests with different horizons): refused by the graph.
    np.testing.assert_allclose(session_run(path, context, C.horizon_input(5, 2)), got,
                               atol=1e-6)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="horizon must hold the same value for every clip of the batch"):
        session_run(path, context, np.int32([5, 3]))


def test_uint8_and_step_signatures_match_keras(exported, tiny_model):
    _, path = exported
    _, model = tiny_model
    loaded = tf.saved_model.load(path)
    clip = np.random.default_rng(2).integers(0, 256, (1, 3, 16, 16, 1), dtype=np.uint8)
    got = loaded.signatures[C.PREDICT_UINT8](context=tf.constant(clip),
                                             horizon=horizons(4, 1))[C.FRAMES].numpy()
    want = np.asarray(model.rollout(clip.astype(np.float32) / 255.0, 4))
    assert got.dtype == np.uint8
    assert np.abs(got.astype(int) - np.round(want * 255).astype(int)).max() <= 1

    states = [np.random.default_rng(3).random((1,) + s, dtype=np.float32)
              for s in model.state_shapes]
    frame = clip[:, 0].astype(np.float32) / 255.0
    feeds = {C.FRAME: frame, **{C.state_name(i): s for i, s in enumerate(states)}}
    out = loaded.signatures[C.STEP](**{k: tf.constant(v) for k, v in feeds.items()})
    want_frame, want_states = model.step(frame, states)
    np.testing.assert_allclose(out[C.NEXT_FRAME].numpy(), want_frame, atol=1e-5)
    for i, s in enumerate(want_states):
        np.testing.assert_allclose(out[C.state_name(i)].numpy(), s, atol=1e-5)


def test_bad_requests_are_rejected_by_the_graph(exported):
    _, path = exported
    serve = tf.saved_model.load(path).signatures[C.SERVING_DEFAULT]
    context = tf.zeros((1, 2, 16, 16, 1))
    with pytest.raises(tf.errors.InvalidArgumentError, match="horizon must be >= 1"):
        serve(context=context, horizon=horizons(0, 1))
    with pytest.raises(tf.errors.InvalidArgumentError, match="horizon must be <= 1000"):
        serve(context=context, horizon=horizons(C.MAX_HORIZON + 1, 1))
    with pytest.raises(tf.errors.InvalidArgumentError, match="at least one frame"):
        serve(context=tf.zeros((1, 0, 16, 16, 1)), horizon=horizons(2, 1))
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="horizon must hold the same value for every clip of the batch"):
        serve(context=tf.zeros((2, 2, 16, 16, 1)), horizon=tf.constant([2, 3]))
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="horizon must hold one value per clip of context"):
        serve(context=tf.zeros((2, 2, 16, 16, 1)), horizon=horizons(2, 3))


def test_bad_export_arguments(tiny_run, tmp_path):
    with pytest.raises(VidgenError, match="not a run directory"):
        export_savedmodel(str(tmp_path), str(tmp_path / "m"), "vidgen")
    with pytest.raises(VidgenError, match="Model name"):
        export_savedmodel(tiny_run, str(tmp_path / "m"), "../escape")
    with pytest.raises(VidgenError, match="positive integer"):
        export_savedmodel(tiny_run, str(tmp_path / "m"), "vidgen", version=0)
    empty_run = tmp_path / "run"
    empty_run.mkdir()
    (empty_run / "config.json").write_text(open(os.path.join(tiny_run, "config.json")).read())
    with pytest.raises(VidgenError, match="has no model.keras"):
        export_savedmodel(str(empty_run), str(tmp_path / "m"), "vidgen")
    assert not (tmp_path / "m" / "vidgen").exists() or not os.listdir(tmp_path / "m" / "vidgen")


def test_a_floored_model_serves_floored_frames_and_streams_unfloored_ones(tiny_run, tmp_path):
    import shutil

    import keras

    from vidgen.run_dir import load_run

    run = str(tmp_path / "run")
    shutil.copytree(tiny_run, run)
    _, model = load_run(run)
    model.output_floor = 0.45
    keras.saving.save_model(model, os.path.join(run, "model.keras"))
    path = export_savedmodel(run, str(tmp_path / "models"), "vidgen")  # verifies parity
    loaded = tf.saved_model.load(path)
    context = np.random.default_rng(4).random((2, 3, 16, 16, 1), dtype=np.float32)
    served = loaded.signatures[C.SERVING_DEFAULT](
        context=tf.constant(context), horizon=horizons(4, 2))[C.FRAMES].numpy()
    raw = np.asarray(model.rollout(context, 4, floor=False))
    assert (raw < 0.45).any() and (raw >= 0.45).any()
    np.testing.assert_allclose(served, np.where(raw < 0.45, 0.0, raw), atol=1e-5)
    frame, states = model.observe(context)
    feeds = {C.FRAME: np.asarray(frame),
             **{C.state_name(i): np.asarray(s) for i, s in enumerate(states)}}
    streamed = loaded.signatures[C.STEP](**{k: tf.constant(v) for k, v in feeds.items()})
    np.testing.assert_allclose(streamed[C.NEXT_FRAME].numpy(), raw[:, 1], atol=1e-5)
    with open(os.path.join(path, "assets.extra", C.MODEL_CARD)) as f:
        assert json.load(f)["output_floor"]["value"] == pytest.approx(0.45)


@pytest.fixture(scope="module")
def rgb_flow_exported(tmp_path_factory):
    """(SavedModel path, Keras model) of a tiny RGB model with the footage head ("flow")."""
    from tests.footage_helpers import make_rgb_flow_run
    from vidgen.run_dir import load_run

    root = tmp_path_factory.mktemp("rgb_flow")
    run = make_rgb_flow_run(root / "run")
    return export_savedmodel(run, str(root / "models"), "footage"), load_run(run)[1]


def test_rgb_flow_model_every_signature_matches_keras(rgb_flow_exported):
    from tests.footage_helpers import rgb_clip

    path, model = rgb_flow_exported
    loaded = tf.saved_model.load(path)
    assert set(loaded.signatures) == set(C.SAVEDMODEL_SIGNATURES)
    context = rgb_clip(2, 4, seed=5)
    got = loaded.signatures[C.SERVING_DEFAULT](context=tf.constant(context),
                                               horizon=horizons(3, 2))[C.FRAMES].numpy()
    want = np.asarray(model.rollout(context, 3))
    assert got.shape == (2, 3, 16, 16, 3)
    # Not copy-last: the parity below tests the warp, not an identity.
    assert np.abs(want - context[:, -1:]).max() > 1e-3
    np.testing.assert_allclose(got, want, atol=1e-5)

    clip8 = np.round(context * 255).astype(np.uint8)
    got8 = loaded.signatures[C.PREDICT_UINT8](context=tf.constant(clip8),
                                              horizon=horizons(3, 2))[C.FRAMES].numpy()
    want8 = np.asarray(model.rollout(clip8.astype(np.float32) / 255.0, 3))
    assert got8.dtype == np.uint8 and got8.shape == (2, 3, 16, 16, 3)
    assert np.abs(got8.astype(int) - np.round(want8 * 255).astype(int)).max() <= 1

    rng = np.random.default_rng(6)
    states = [rng.random((2,) + s, dtype=np.float32) for s in model.state_shapes]
    frame = context[:, 0]
    feeds = {C.FRAME: frame, **{C.state_name(i): s for i, s in enumerate(states)}}
    out = loaded.signatures[C.STEP](**{k: tf.constant(v) for k, v in feeds.items()})
    want_frame, want_states = model.step(frame, states)
    assert out[C.NEXT_FRAME].shape == (2, 16, 16, 3)
    np.testing.assert_allclose(out[C.NEXT_FRAME].numpy(), want_frame, atol=1e-5)
    for i, s in enumerate(want_states):
        np.testing.assert_allclose(out[C.state_name(i)].numpy(), s, atol=1e-5)


@pytest.mark.slow   # saved_model_cli: a TensorFlow process
def test_rgb_flow_model_runs_in_the_session_loader(rgb_flow_exported, tmp_path):
    """saved_model_cli run (TF Serving's loader) on RGB input, and the model card says RGB."""
    from tests.footage_helpers import rgb_clip

    path, model = rgb_flow_exported
    context = rgb_clip(1, 3, seed=7)
    got = run_serving_default(path, context, 2, tmp_path)
    np.testing.assert_allclose(got, np.asarray(model.rollout(context, 2)), atol=1e-5)
    with open(os.path.join(path, "assets.extra", C.MODEL_CARD)) as f:
        card = json.load(f)
    assert card["frames"]["channels"] == 3
    assert card["signatures"]["serving_default"]["inputs"]["context"]["shape"][-1] == 3
    assert card["config"]["model"]["head"] == "flow"


def test_an_export_is_fsynced_before_it_appears_and_a_full_disk_leaves_nothing(
        tiny_run, tmp_path, monkeypatch):
    import errno

    from export import savedmodel
    from vidgen import fileio

    synced, real_tree = [], fileio.fsync_tree
    monkeypatch.setattr(fileio, "fsync_tree", lambda p: (synced.append(
        sorted(os.listdir(p))), real_tree(p))[1])
    final = export_savedmodel(tiny_run, str(tmp_path / "m"), "vidgen")
    assert synced and "saved_model.pb" in synced[0] and os.path.isdir(final)

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(savedmodel, "verify", full_disk)
    with pytest.raises(OSError, match="No space left"):
        export_savedmodel(tiny_run, str(tmp_path / "m"), "vidgen")
    assert sorted(os.listdir(tmp_path / "m" / "vidgen")) == ["1"], "no version 2, no temp"


def test_next_version_ignores_names_that_are_not_versions(tmp_path):
    from export.savedmodel import next_version

    for name in ("3", "01", "\u0661\u0662", "9" * 250, "v7", ".tmp-4-x"):
        (tmp_path / name).mkdir()
    assert next_version(str(tmp_path)) == 4
