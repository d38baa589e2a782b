import pytest

from vidgen.errors import ConfigError, VidgenError
from vidgen.training.distribute import make_strategy, per_replica_batch, resolve_name


def test_auto_is_the_default_strategy_on_one_cpu(monkeypatch):
    import tensorflow as tf

    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert resolve_name("auto") == "default"
    strategy, name = make_strategy("auto")
    assert name == "default" and strategy is tf.distribute.get_strategy()
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["localhost:1"]}}')
    assert resolve_name("auto") == "multiworker"


def test_bad_strategy_requests_are_clear(monkeypatch):
    with pytest.raises(ConfigError, match="strategy must be one of"):
        resolve_name("horovod")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(VidgenError, match="needs TF_CONFIG"):
        make_strategy("multiworker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(VidgenError, match="not valid JSON"):
        make_strategy("multiworker")
    with pytest.raises(VidgenError, match="no TPU could be reached"):
        make_strategy("tpu")


def test_global_batch_is_split_across_replicas():
    assert per_replica_batch(16, 4) == 4
    with pytest.raises(ConfigError, match="divisible by the 3 replicas"):
        per_replica_batch(16, 3)


def test_mixed_bfloat16_on_cpu_trains_and_outputs_float32(tmp_path):
    import json
    import os

    import keras
    import numpy as np

    from tests.tiny import tiny_run_config
    from vidgen.run_dir import load_run
    from vidgen.training.train import train

    for adversarial in ("none", "hinge"):
        cfg = tiny_run_config(**{"runtime.mixed_precision": "true", "train.epochs": 1,
                                 "train.adversarial": adversarial,
                                 "model.frame_critic_filters": [4],
                                 "model.video_critic_filters": [4]})
        run = str(tmp_path / adversarial)
        train(cfg, run)
        assert keras.mixed_precision.dtype_policy().name == "float32"  # not leaked
        _, model = load_run(run)  # a loaded model computes in float32 (the global policy)
        out = np.asarray(model.rollout(np.random.rand(2, 3, 16, 16, 1).astype("float32"), 2))
        assert out.dtype == np.float32 and 0.0 <= out.min() and out.max() <= 1.0
        metrics = json.load(open(os.path.join(run, "metrics.json")))
        assert np.isfinite(metrics["results"]["model"]["mse"]["mean"])
    # What train() builds under the policy: bfloat16 compute, float32 variables and frames.
    from vidgen.training.build import build_model, compile_model, precision_policy

    assert precision_policy(cfg) == "mixed_bfloat16"
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        model = compile_model(build_model(cfg), cfg)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    generator = model.generator
    assert generator.encoder.down1.compute_dtype == "bfloat16"
    assert generator.encoder.down1.kernel.dtype == "float32"
    clips = np.random.rand(2, 6, 16, 16, 1).astype("float32")
    logs = model.train_on_batch(clips[:, :3], clips[:, 3:], return_dict=True)
    assert all(np.isfinite(v) for v in logs.values())
    assert model.rollout(clips[:, :3], 2).dtype == "float32"
