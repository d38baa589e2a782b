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
