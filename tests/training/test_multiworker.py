"""Multi-worker training with real processes: two workers on 127.0.0.1 with TF_CONFIG."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from tests.tiny import tiny_overrides, tiny_run_config
from vidgen import fileio
from vidgen.errors import VidgenError
from vidgen.training import multiworker
from vidgen.training.build import build_model, compile_model
from vidgen.training.distribute import check_tf_config
from vidgen.training.multiworker import PREEMPTED_EXIT_CODE

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TINY = tiny_overrides()
GAN = {"train.adversarial": "hinge", "model.frame_critic_filters": [4],
       "model.video_critic_filters": [4], "model.critic_frames": 2}


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


# Worker 1's replica logs a NaN loss from step 6 on (its weights stay finite): only
# that one replica goes non-finite, as a bad shard or an overflow on one host would.
NAN_ON_WORKER_1 = """
import json, os, sys
if json.loads(os.environ["TF_CONFIG"])["task"]["index"] == 1:
    import tensorflow as tf
    from vidgen.models.predictor_training import PredictorTraining
    train_step = PredictorTraining.train_step
    def poisoned(self, data):
        logs = train_step(self, data)
        nan = tf.where(self.optimizer.iterations >= 6, float("nan"), 0.0)
        return {**logs, "loss": logs["loss"] + nan}
    PredictorTraining.train_step = poisoned
from vidgen.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _start_workers(run, overrides, ports, logs, code=None):
    """Starts one `vidgen train --strategy multiworker` process per port.

    `code`: a script run instead of `-m vidgen.cli` (it calls `vidgen.cli.main`); from
    a file, as AutoGraph converts the model's code wrongly under `python -c`.
    """
    start = ["-m", "vidgen.cli"]
    if code:
        script = os.path.join(logs, "worker.py")
        with open(script, "w") as f:
            f.write(code)
        start = [script]
    command = [sys.executable, *start, "train", "--preset", "quick",
               "--data", "digits", "--run-dir", run, "--resume", "--no-evaluate",
               "--strategy", "multiworker"]
    for key, value in overrides.items():
        text = value if isinstance(value, str) else json.dumps(value)  # strings as is
        command += ["--set", f"{key}={text}"]
    workers = [f"127.0.0.1:{p}" for p in ports]
    processes = []
    for index in range(len(ports)):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_CONFIG": json.dumps(tf_config)}
        log = open(os.path.join(logs, f"worker-{index}.log"), "w")
        processes.append(subprocess.Popen(command, cwd=ROOT, env=env, stdout=log,
                                          stderr=subprocess.STDOUT, text=True))
    return processes


def _wait(processes, logs, timeout=300):
    codes = []
    for index, process in enumerate(processes):
        try:
            codes.append(process.wait(timeout=timeout))
        except subprocess.TimeoutExpired:
            for p in processes:
                p.kill()
            pytest.fail(f"worker {index} hung:\n{_log(logs, index)[-3000:]}")
    return codes


def _log(logs, index):
    with open(os.path.join(logs, f"worker-{index}.log")) as f:
        return f.read()


def _variables(checkpoint_dir):
    """Every variable of the latest checkpoint in `checkpoint_dir` (a tf.train.Checkpoint)."""
    path = tf.train.latest_checkpoint(checkpoint_dir)
    assert path, f"no checkpoint in {checkpoint_dir}"
    reader = tf.train.load_checkpoint(path)
    return path, {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
                  if name.startswith(("model_variables", "optimizer", "g_optimizer",
                                      "d_optimizer", "steps_done"))}


def _assert_same_weights(run):
    chief_path, chief = _variables(os.path.join(run, "preemption"))
    worker_path, worker = _variables(os.path.join(run, "workers", "worker-1", "preemption"))
    assert os.path.basename(chief_path) == os.path.basename(worker_path)
    assert chief.keys() == worker.keys() and any("model_variables" in k for k in chief)
    for name, value in chief.items():
        np.testing.assert_array_equal(value, worker[name], err_msg=name)
    return chief


@pytest.mark.slow
def test_two_workers_train_the_same_weights_and_only_the_chief_writes(tmp_path):
    run, logs = str(tmp_path / "run"), str(tmp_path)
    overrides = {**TINY, "train.epochs": 2, "train.steps_per_epoch": 4,
                 "train.output_floor_tolerance": 0.5}
    codes = _wait(_start_workers(run, overrides, _free_ports(2), logs), logs)
    assert codes == [0, 0], _log(logs, 0)[-3000:] + _log(logs, 1)[-3000:]
    variables = _assert_same_weights(run)
    assert int(variables["steps_done/.ATTRIBUTES/VARIABLE_VALUE"]) == 8
    # The chief writes the run; the other worker only its own folder.
    for path in ("model.keras", "checkpoints/last.keras", "logs/history.csv",
                 "samples/epoch_002.gif", "training.json"):
        assert os.path.isfile(os.path.join(run, path)), path
    worker_dir = os.path.join(run, "workers", "worker-1")
    assert sorted(os.listdir(worker_dir)) == ["config.json", "preemption", "training.json"]
    assert not [f for f in os.listdir(run) if f not in (
        "config.json", "model.keras", "checkpoints", "backup", "logs", "samples",
        "preemption", "training.json", "workers")]
    # Each worker read its own shard of the clips.
    chief = json.load(open(os.path.join(run, "training.json")))
    worker = json.load(open(os.path.join(worker_dir, "training.json")))
    assert chief["input_pipeline"] == [0, 2] and worker["input_pipeline"] == [1, 2]
    assert chief["first_batch_sha1"] != worker["first_batch_sha1"]
    assert chief["chief"] and not worker["chief"]
    # The same finish as a single-host run: budget flag, total time, the calibrated floor
    # recorded in config.json (which describes model.keras); a worker calibrates nothing.
    for summary in (chief, worker):
        assert summary["stopped_by_time_budget"] is False and summary["total_train_seconds"] > 0
    assert "output_floor" in chief and "output_floor" not in worker
    saved = json.load(open(os.path.join(run, "config.json")))["model"]["output_floor"]
    assert saved == chief["output_floor"]["floor"]
    history = open(os.path.join(run, "logs", "history.csv")).read().splitlines()
    assert len(history) == 3 and "val_frame_mse" in history[0]


@pytest.mark.slow
def test_gan_survives_sigterm_on_one_worker_and_resumes(tmp_path):
    run, logs = str(tmp_path / "run"), str(tmp_path)
    overrides = {**TINY, **GAN, "train.epochs": 3, "train.steps_per_epoch": 20}
    ports = _free_ports(2)
    processes = _start_workers(run, overrides, ports, logs)
    first_save = os.path.join(run, "workers", "worker-1", "preemption", "checkpoint")
    # Epoch 1's checkpoint, then SIGTERM at once: epochs 2 and 3 (40 steps, each a
    # collective between two processes) take far longer than this poll on any machine.
    deadline = time.monotonic() + 300
    while not os.path.isfile(first_save) and time.monotonic() < deadline:
        assert all(p.poll() is None for p in processes), _log(logs, 0)[-3000:]
        time.sleep(0.005)
    assert os.path.isfile(first_save), _log(logs, 0)[-3000:] + _log(logs, 1)[-3000:]
    processes[1].send_signal(signal.SIGTERM)  # preempt the non-chief in epoch 2
    codes = _wait(processes, logs)
    assert codes == [PREEMPTED_EXIT_CODE] * 2, _log(logs, 0)[-3000:] + _log(logs, 1)[-3000:]
    saved = _assert_same_weights(run)
    step = int(saved["steps_done/.ATTRIBUTES/VARIABLE_VALUE"])
    assert 20 <= step < 60
    assert "preempted; state saved" in _log(logs, 1)
    # The same command again: both workers resume from that step and finish.
    codes = _wait(_start_workers(run, overrides, _free_ports(2), logs), logs)
    assert codes == [0, 0], _log(logs, 0)[-3000:] + _log(logs, 1)[-3000:]
    for index in (0, 1):
        assert f"(step {step})" in _log(logs, index)
    final = _assert_same_weights(run)
    assert int(final["steps_done/.ATTRIBUTES/VARIABLE_VALUE"]) == 60
    assert json.load(open(os.path.join(run, "training.json")))["resumed_from_step"] == step
    assert any(k.startswith("d_optimizer") for k in final)


@pytest.mark.slow
def test_a_nan_on_one_replica_stops_every_worker_and_saves_nothing_after(tmp_path):
    run, logs = str(tmp_path / "run"), str(tmp_path)
    overrides = {**TINY, "train.epochs": 2, "train.steps_per_epoch": 4}
    processes = _start_workers(run, overrides, _free_ports(2), logs, code=NAN_ON_WORKER_1)
    codes = _wait(processes, logs)  # a worker left waiting in a collective fails here
    both = _log(logs, 0)[-3000:] + _log(logs, 1)[-3000:]
    assert codes == [2, 2], both
    tenth = json.load(open(os.path.join(run, "config.json")))["train"]["learning_rate"] / 10
    for index, own in ((0, run), (1, os.path.join(run, "workers", "worker-1"))):
        error = [line for line in _log(logs, index).splitlines() if "error:" in line]
        assert error == [
            "vidgen: error: Training stopped at step 6 (epoch 2) because the training loss "
            "(terms: bce, context frames) went non-finite on 1 of 2 replica(s) (loss=nan), "
            "before anything of this epoch was saved; the last good backup is "
            f"{os.path.join(own, 'preemption', 'ckpt-4')} (step 4), from which `vidgen train "
            f"--run-dir {run} --resume --set train.learning_rate={tenth:g}` on every worker "
            "continues."], both
        # No traceback of vidgen's. TensorFlow's PeerTerminationWatcher thread may print
        # one when the other worker's coordination service goes away first.
        log = _log(logs, index)
        assert log.count("Traceback") == log.count(
            "Exception in thread PeerTerminationWatcher"), log[-3000:]
    # Epoch 1's checkpoint is the last on both workers: epoch 2's was never written.
    chief = _assert_same_weights(run)
    assert int(chief["steps_done/.ATTRIBUTES/VARIABLE_VALUE"]) == 4
    for own in (run, os.path.join(run, "workers", "worker-1")):
        names = os.listdir(os.path.join(own, "preemption"))
        assert not [n for n in names if n.startswith(("ckpt-6", "ckpt-8"))], names
    assert all(np.isfinite(v).all() for k, v in chief.items() if v.dtype.kind == "f")


@pytest.mark.parametrize("spec, message", [
    ({"task": {"type": "worker", "index": 0}}, "no \"cluster\""),
    ({"cluster": {"worker": ["a:1"]}}, "no \"task\""),
    ({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}, "not in its"),
    ([1, 2], "no \"cluster\""),
])
def test_tf_config_mistakes_are_named(spec, message):
    with pytest.raises(VidgenError, match=message):
        check_tf_config(spec)


def test_checkpoints_are_fsynced_and_never_non_finite(tmp_path, monkeypatch):
    cfg = tiny_run_config()
    model = compile_model(build_model(cfg), cfg)
    manager = tf.train.CheckpointManager(multiworker.make_checkpoint(model),
                                         str(tmp_path / "preemption"), max_to_keep=2)
    synced = []
    monkeypatch.setattr(fileio, "fsync_path", synced.append)
    path = multiworker.save_finite(manager, 4, model)
    assert path == str(tmp_path / "preemption" / "ckpt-4")
    assert sorted(synced) == sorted([*(str(p) for p in (tmp_path / "preemption").glob(
        "ckpt-4.*")), str(tmp_path / "preemption" / "checkpoint"), manager.directory])
    assert len(synced) == 4   # index, data, the manager's state file, the folder
    kernel = model.trainable_weights[0]
    kernel.assign(np.full(kernel.shape, np.nan, "float32"))
    synced.clear()
    assert multiworker.save_finite(manager, 8, model) is None
    assert manager.latest_checkpoint == path and not synced
    assert not list((tmp_path / "preemption").glob("ckpt-8*"))
