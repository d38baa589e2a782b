"""The config -> model factories: every hyper-parameter reaches the model, once."""

import dataclasses

import pytest

from tests.tiny import tiny_run_config
from vidgen.config import ModelConfig
from vidgen.models import VideoGAN, VideoPredictor
from vidgen.training.build import CRITIC_FIELDS, build_model, model_kwargs

# A value other than the default for every ModelConfig field that reaches the predictor.
NON_DEFAULT = {"encoder_filters": (4, 6), "core_filters": (6,), "cell": "gru", "kernel_size": 5,
               "decoder_filters": (6, 4), "head": "dna", "dna_kernel": 5, "cdna_kernels": 3,
               "difference_input": False, "sampling_steps": 7, "context_loss_weight": 0.5,
               "latent_dim": 2, "kl_weight": 0.01, "output_floor": 0.25}


def test_every_model_field_is_a_predictor_argument_or_sizes_a_critic():
    accepted = set(VideoPredictor.hyper_parameters())
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    assert fields - set(CRITIC_FIELDS) <= accepted
    assert set(CRITIC_FIELDS) <= fields and not set(CRITIC_FIELDS) & accepted
    # The test's own list covers every predictor field: a new field must be added here.
    assert set(NON_DEFAULT) == fields - set(CRITIC_FIELDS)


def test_every_field_reaches_the_model_and_survives_get_config():
    base = tiny_run_config()
    cfg = dataclasses.replace(base, model=dataclasses.replace(base.model, **NON_DEFAULT),
                              train=dataclasses.replace(base.train, seed=3)).validate()
    kwargs = model_kwargs(cfg)
    model = build_model(cfg)
    config = model.get_config()
    rebuilt = VideoPredictor.from_config(config)
    for name, value in NON_DEFAULT.items():
        assert kwargs[name] == value, name
        assert _plain(config[name]) == _plain(value), name
        assert _plain(getattr(rebuilt, name)) == _plain(value), name
    assert (kwargs["frame_size"], kwargs["channels"], kwargs["horizon"], kwargs["seed"]) == (
        16, 1, 3, 3)


def test_critic_fields_size_the_critics():
    cfg = tiny_run_config(**{"train.adversarial": "hinge", "model.frame_critic_filters": "[4]",
                             "model.video_critic_filters": "[]", "model.critic_frames": 2})
    gan = build_model(cfg)
    assert isinstance(gan, VideoGAN)
    assert gan.frame_critic is not None and gan.video_critic is None
    assert gan.critic_frames == 2


def _plain(value):
    return list(value) if isinstance(value, (tuple, list)) else value


@pytest.mark.parametrize("key", ["model.head", "model.cell"])
def test_model_kwargs_follow_overrides(key):
    value = {"model.head": "pixels", "model.cell": "gru"}[key]
    cfg = tiny_run_config(**{key: value})
    assert model_kwargs(cfg)[key.split(".")[1]] == value
