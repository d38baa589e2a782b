import dataclasses
import json

import pytest

from vidgen.config import Config, DataConfig, apply_overrides
from vidgen.errors import ConfigError
from vidgen.presets import PRESETS, get_preset


def test_json_round_trip(tmp_path):
    cfg = apply_overrides(get_preset("quick"), ["data.frame_size=32", "train.batch_size=4"])
    path = tmp_path / "config.json"
    cfg.to_json(path)
    assert Config.from_json(path) == cfg
    assert json.loads(path.read_text())["data"]["frame_size"] == 32
    assert not list(tmp_path.glob("*.tmp*"))


def test_configs_are_frozen():
    cfg = get_preset("quick")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.data.frame_size = 3


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_is_valid(name):
    assert get_preset(name).data.window == 20


def test_overrides_parse_json_types():
    cfg = apply_overrides(get_preset("quick"), [
        "model.core_filters=[16, 16, 16]",
        "data.augment_flip=true", "data.val_fraction=0.2", "data.source=123",
        "data.context=5"])
    assert cfg.data.augment_flip is True
    assert cfg.data.val_fraction == 0.2
    assert cfg.data.source == "123"
    assert cfg.data.context == 5 and cfg.data.window == 15
    assert cfg.model.core_filters == (16, 16, 16)


def test_unknown_key_names_key_and_valid_ones():
    with pytest.raises(ConfigError, match=r"data\.frame_sise.*data\.frame_size"):
        apply_overrides(get_preset("quick"), ["data.frame_sise=64"])
    with pytest.raises(ConfigError, match="Valid sections: data, model, runtime, train"):
        apply_overrides(get_preset("quick"), ["dta.frame_size=64"])
    with pytest.raises(ConfigError, match="Unknown config key data.bogus"):
        Config.from_dict({"data": {"bogus": 1}})


@pytest.mark.parametrize("override, message", [
    ("data.frame_size=0", "frame_size must be positive"),
    ("data.frame_size=abc", "expects an integer"),
    ("data.channels=2", "channels must be 1 or 3"),
    ("data.augment_flip=1", "expects true or false"),
    ("data.crop=left", "crop must be 'center' or 'random'"),
    ("data.clip_length=5", "clip_length must be 0 or at least"),
    ("data.val_fraction=0.95", "training keeps some sources"),
    ("data.min_digits=4", r"max_digits must be >= data.min_digits"),
    ("frame_size", "must look like section.key=value"),
    ("model.core_filters=[]", "core_filters must be one or more"),
    ("model.core_filters=[32, \"a\"]", "expects an integer"),
    ("model.cell=rnn", "cell must be 'lstm' or 'gru'"),
    ("model.dna_kernel=4", "dna_kernel must be a positive odd number"),
    ("train.lr_schedule=step", "lr_schedule must be 'cosine' or 'constant'"),
    ("train.bce_weight=0", "must be positive. Received all zeros"),
])
def test_bad_values_are_reported(override, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(get_preset("quick"), [override])


def test_unknown_preset():
    valid = "Valid presets: moving_mnist, natural, quick, quick_gan, shapes"
    with pytest.raises(ConfigError, match=valid):
        get_preset("fast")


def test_from_json_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        Config.from_json(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        Config.from_json(bad)


def test_defaults_match_dataclass():
    assert Config().data == DataConfig()


def test_runtime_settings_have_their_own_section():
    cfg = apply_overrides(Config(), ["runtime.mixed_precision=true", "runtime.strategy=default"])
    assert cfg.runtime.mixed_precision and cfg.runtime.strategy == "default"
    assert not hasattr(cfg.train, "strategy")
    with pytest.raises(ConfigError, match="runtime.strategy must be 'auto', 'default', "
                                          "'mirrored', 'multiworker' or 'tpu'"):
        apply_overrides(Config(), ["runtime.strategy=gpus"])


def test_moved_keys_name_their_new_home_and_old_files_still_load(tmp_path):
    with pytest.raises(ConfigError, match="'train.mixed_precision' is now "
                                          "'runtime.mixed_precision'"):
        apply_overrides(Config(), ["train.mixed_precision=true"])
    # A config.json written before the runtime section existed.
    old = Config().to_dict()
    old["train"].update(strategy="mirrored", jit_compile=True)
    del old["runtime"]
    path = tmp_path / "config.json"
    path.write_text(json.dumps(old))
    cfg = Config.from_json(path)
    assert cfg.runtime.strategy == "mirrored" and cfg.runtime.jit_compile
    assert cfg.runtime.mixed_precision is False


def test_presets_are_variants_of_quick_that_change_only_what_they_say():
    from vidgen.presets import QUICK

    quick = QUICK.to_dict()
    natural = PRESETS["natural"].to_dict()
    changed = {f"{s}.{k}" for s in quick for k in quick[s] if quick[s][k] != natural[s][k]}
    assert changed == {"data.source", "data.channels", "data.augment_flip", "model.head",
                       "model.dna_kernel", "train.epochs", "train.val_batches",
                       "train.learning_rate", "train.bce_weight", "train.l1_weight",
                       "train.time_budget_minutes"}
