import dataclasses
import inspect
import re

import keras
import numpy as np
import pytest

from tests.conftest import TINY_MODEL
from tests.harness import run_serialization_test
from vidgen.config import ModelConfig
from vidgen.config.model import CELL_NAMES, HEAD_NAMES
from vidgen.models import (
    CDNAHead,
    DNAHead,
    FlowHead,
    LatentPrior,
    PixelHead,
    SDNAHead,
    VideoPredictor,
)
from vidgen.models.video_predictor import CELLS, HEADS
from vidgen.training.losses import ReconstructionLoss

# ModelConfig fields that size a VideoGAN's critics: the only ones the predictor does not take.
CRITIC_FIELDS = {"frame_critic_filters", "video_critic_filters", "critic_frames"}


def _clips(batch=2, context=4, horizon=3, seed=0):
    rng = np.random.default_rng(seed)
    context_frames = rng.random((batch, context, 16, 16, 1)).astype("float32")
    target = rng.random((batch, horizon, 16, 16, 1)).astype("float32")
    return context_frames, target


@pytest.mark.parametrize("cell, head", [("lstm", "sdna"), ("lstm", "cdna"), ("lstm", "dna"),
                                        ("lstm", "flow"), ("gru", "pixels")])
def test_output_shapes_and_range(cell, head):
    model = VideoPredictor(**TINY_MODEL, cell=cell, head=head)
    context, _ = _clips()
    out = model(context)
    assert out.shape == (2, 3, 16, 16, 1)
    longer = np.asarray(model.rollout(context, 7))
    assert longer.shape == (2, 7, 16, 16, 1)
    assert longer.min() >= 0.0 and longer.max() <= 1.0
    np.testing.assert_allclose(longer[:, :3], np.asarray(out), atol=1e-5)


def test_dynamic_time_in_a_traced_function():
    import tensorflow as tf

    model = VideoPredictor(**TINY_MODEL)
    fn = tf.function(lambda x: model.rollout(x, 2),
                     input_signature=[tf.TensorSpec([None, None, 16, 16, 1])])
    for t in (1, 3, 6):
        context, _ = _clips(batch=1, context=t)
        out = fn(context)
        assert out.shape == (1, 2, 16, 16, 1)
        np.testing.assert_allclose(out, model.rollout(context, 2), atol=1e-5)


def test_causality_future_frames_do_not_change_earlier_predictions():
    """Prediction of frame t depends on frames < t only."""
    model = VideoPredictor(**TINY_MODEL)
    rng = np.random.default_rng(3)
    clip = rng.random((1, 8, 16, 16, 1)).astype("float32")
    states = model.initial_states(1)
    base = []
    for t in range(8):
        frame, states = model.step(clip[:, t], states)
        base.append(np.asarray(frame))
    for cut in (2, 5):
        changed = clip.copy()
        changed[:, cut:] = rng.random(changed[:, cut:].shape)
        states = model.initial_states(1)
        for t in range(8):
            frame, states = model.step(changed[:, t], states)
            # The output after input t predicts frame t+1; it may see inputs 0..t only.
            if t < cut:
                np.testing.assert_array_equal(np.asarray(frame), base[t])
            else:
                assert not np.allclose(np.asarray(frame), base[t])
    # The same through the training unroll: without teacher forcing the predictions of
    # the target frames never see the targets (other targets, the same predictions),
    # while a changed context frame changes them.
    context, target = clip[:, :4], clip[:, 4:7]
    context_preds, free, _ = model.unroll(context, target, 0.0)
    other_preds, other, _ = model.unroll(context, rng.random(target.shape).astype("float32"),
                                         0.0)
    np.testing.assert_array_equal(np.asarray(other), np.asarray(free))
    np.testing.assert_array_equal(np.asarray(other_preds), np.asarray(context_preds))
    np.testing.assert_allclose(np.asarray(free), np.asarray(model.rollout(context, 3)),
                               atol=1e-5)
    changed = context.copy()
    changed[:, -1] = 1.0 - changed[:, -1]
    assert not np.allclose(np.asarray(model.unroll(changed, target, 0.0)[1]), np.asarray(free))


def test_scheduled_sampling_feeds_truth_or_predictions():
    model = VideoPredictor(**TINY_MODEL, sampling_steps=10)
    context, target = _clips()
    _, teacher, _ = model.unroll(context, target, 1.0)
    _, free, _ = model.unroll(context, target, 0.0)
    rollout = model.rollout(context, 3)
    np.testing.assert_allclose(np.asarray(free), np.asarray(rollout), atol=1e-5)
    # Only the first predicted frame is the same: later ones consumed the true frames.
    np.testing.assert_allclose(np.asarray(teacher[:, 0]), np.asarray(free[:, 0]), atol=1e-6)
    assert not np.allclose(np.asarray(teacher[:, 1:]), np.asarray(free[:, 1:]))


def test_teacher_probability_decays_with_steps():
    model = VideoPredictor(**TINY_MODEL, sampling_steps=4)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=ReconstructionLoss())
    context, target = _clips(batch=4)
    history = model.fit(context, target, batch_size=2, epochs=3, verbose=0)
    # Steps 0..5: probability 1 - step/4, averaged per epoch of 2 steps.
    np.testing.assert_allclose(history.history["teacher_prob"], [0.875, 0.375, 0.0],
                               atol=1e-6)


def test_fit_step_changes_weights_and_losses_are_finite():
    model = VideoPredictor(**TINY_MODEL, cell="gru")
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=ReconstructionLoss(ssim_weight=1))
    before = [np.asarray(w).copy() for w in model.trainable_weights]
    context, target = _clips()
    history = model.fit(context, target, batch_size=2, epochs=1, verbose=0,
                        validation_data=(context, target))
    assert all(np.isfinite(v[0]) for v in history.history.values())
    assert "val_frame_mse" in history.history
    changed = [not np.array_equal(b, np.asarray(w))
               for b, w in zip(before, model.trainable_weights)]
    assert all(changed)


def test_config_and_keras_round_trip(tmp_path):
    context, _ = _clips()
    # 8 weights of the encoder and decoder, 2 per ConvGRU level (4 convolutions), none
    # in the "sdna" head.
    run_serialization_test(VideoPredictor, {**TINY_MODEL, "cell": "gru", "head": "sdna"},
                           context, tmp_path, expected_output_shape=(2, 3, 16, 16, 1),
                           expected_num_trainable_weights=4 + 8 + 8)
    model = VideoPredictor(**TINY_MODEL, cell="gru", sampling_steps=7)
    config = model.get_config()
    clone = VideoPredictor.from_config(config)
    for key in ("frame_size", "cell", "core_filters", "sampling_steps", "dna_kernel"):
        assert clone.get_config()[key] == config[key]
    context, _ = _clips()
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(np.asarray(loaded(context)), np.asarray(model(context)),
                               atol=1e-6)
    np.testing.assert_allclose(np.asarray(loaded.rollout(context, 5)),
                               np.asarray(model.rollout(context, 5)), atol=1e-6)


def test_output_floor_applies_to_returned_frames_only(tmp_path):
    model = VideoPredictor(**TINY_MODEL, output_floor=0.5)
    context, _ = _clips()
    raw = np.asarray(model.rollout(context, 4, floor=False))
    assert (raw > 0).all() and (raw < 0.5).any() and (raw >= 0.5).any()
    np.testing.assert_array_equal(np.asarray(model.rollout(context, 4)),
                                  np.where(raw < 0.5, 0.0, raw))
    np.testing.assert_array_equal(np.asarray(model(context)), np.asarray(
        model.rollout(context, 3)))
    # The fed-back frame, and what `step` returns, stay unfloored: the floored
    # rollout's later frames are the floor of the unfloored ones, not a rollout
    # of floored inputs.
    frame, states = model.observe(context)
    frame, _ = model.step(frame, states)
    np.testing.assert_allclose(np.asarray(frame), raw[:, 1], atol=1e-6)
    path = str(tmp_path / "floored.keras")
    model.save(path)
    assert keras.saving.load_model(path).output_floor == 0.5


@pytest.mark.parametrize("kwargs, message", [
    (dict(frame_size=18), "frame_size must be a positive multiple of 4"),
    (dict(channels=2), "channels must be 1 or 3"),
    (dict(cell="rnn"), "cell must be one of"),
    (dict(head="warp"), "head must be one of"),
    (dict(dna_kernel=4), "dna_kernel must be a positive odd number"),
    (dict(horizon=0), "horizon must be positive"),
    (dict(output_floor=1.0), "output_floor must be in"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        VideoPredictor(**{**TINY_MODEL, **kwargs})


def test_untrained_cdna_model_starts_near_copy_last():
    """Identity-initialised kernels: the first prediction is close to the last frame."""
    model = VideoPredictor(**TINY_MODEL)
    context, _ = _clips()
    first = np.asarray(model.rollout(context, 1))[:, 0]
    blend = np.abs(first - context[:, -1]).mean()
    assert blend < np.abs(first - context[:, 0]).mean()


def test_sharp_rollout_moves_whole_pixels():
    """Sharp inference takes one tap per pixel: a binary frame stays binary."""
    model = VideoPredictor(**TINY_MODEL, head="sdna", sharp=True)
    context = np.zeros((1, 3, 16, 16, 1), "float32")
    context[:, :, 4:8, 4:8] = 1.0
    sharp = np.asarray(model.rollout(context, 1))
    soft_model = VideoPredictor.from_config({**model.get_config(), "sharp": False})
    soft_model.set_weights(model.get_weights())
    soft = np.asarray(soft_model.rollout(context, 1))
    assert set(np.unique(sharp)) <= {0.0, 1.0}
    assert ((soft > 0.01) & (soft < 0.99)).any(), "soft kernels blend neighbouring pixels"


def test_stochastic_rollouts_are_reproducible_and_diverse():
    model = VideoPredictor(**TINY_MODEL, latent_dim=2)
    context, _ = _clips()
    a = np.asarray(model.rollout(context, 4, num_samples=3, seed=7))
    b = np.asarray(model.rollout(context, 4, num_samples=3, seed=7))
    c = np.asarray(model.rollout(context, 4, num_samples=3, seed=8))
    assert a.shape == (2, 3, 4, 16, 16, 1)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert not np.allclose(a[:, 0], a[:, 1])  # the samples of one clip differ
    assert a.min() >= 0.0 and a.max() <= 1.0
    # A deterministic model repeats its one future.
    plain = np.asarray(VideoPredictor(**TINY_MODEL).rollout(context, 2, num_samples=2))
    np.testing.assert_array_equal(plain[:, 0], plain[:, 1])
    with pytest.raises(ValueError, match="num_samples must be positive"):
        model.rollout(context, 2, num_samples=0)


def test_stochastic_model_is_causal_for_fixed_noise():
    model = VideoPredictor(**TINY_MODEL, latent_dim=2)
    rng = np.random.default_rng(4)
    clip = rng.random((1, 6, 16, 16, 1)).astype("float32")
    noise = rng.standard_normal((6, 1) + model.noise_shape).astype("float32")

    def outputs(frames):
        states, out = model.initial_states(1), []
        for t in range(6):
            frame, states = model.step(frames[:, t], states, noise=noise[t])
            out.append(np.asarray(frame))
        return out

    base = outputs(clip)
    changed = clip.copy()
    changed[:, 3:] = 1.0 - changed[:, 3:]
    for t, frame in enumerate(outputs(changed)):
        if t < 3:
            np.testing.assert_array_equal(frame, base[t])
        else:
            assert not np.allclose(frame, base[t])


def test_stochastic_training_has_a_finite_kl_and_round_trips(tmp_path):
    model = VideoPredictor(**TINY_MODEL, latent_dim=2, kl_weight=1e-3)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=ReconstructionLoss())
    context, target = _clips()
    logs = model.train_on_batch(context, target, return_dict=True)
    assert np.isfinite(logs["loss"]) and logs["kl"] >= 0.0
    path = str(tmp_path / "stochastic.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.latent_dim == 2
    np.testing.assert_allclose(loaded.rollout(context, 3, num_samples=2, seed=1),
                               model.rollout(context, 3, num_samples=2, seed=1), atol=1e-6)


@pytest.mark.parametrize("channels", [1, 3])
def test_untrained_flow_model_predicts_exactly_copy_last(channels):
    """The footage head starts at the copy-last baseline, so training can only improve it."""
    model = VideoPredictor(**{**TINY_MODEL, "channels": channels}, head="flow")
    rng = np.random.default_rng(5)
    context = rng.random((2, 4, 16, 16, channels)).astype("float32")
    out = np.asarray(model.rollout(context, 5))
    np.testing.assert_array_equal(out, np.repeat(context[:, -1:], 5, axis=1))


def test_flow_head_learns_away_from_copy_last():
    """Gate and residual start at 0 but take gradients: one fit step changes the output."""
    model = VideoPredictor(**{**TINY_MODEL, "channels": 3}, head="flow")
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=ReconstructionLoss(l1_weight=1.0, bce_weight=0.0))
    rng = np.random.default_rng(6)
    context = rng.random((2, 4, 16, 16, 3)).astype("float32")
    target = rng.random((2, 3, 16, 16, 3)).astype("float32")
    model.fit(context, target, batch_size=2, epochs=2, verbose=0)
    out = np.asarray(model.rollout(context, 3))
    assert np.abs(out - context[:, -1:]).max() > 1e-3


# Every hyper-parameter at a value other than its default: the tiny sizes, and the rest.
NON_DEFAULT = {**{k: list(v) if isinstance(v, tuple) else v for k, v in TINY_MODEL.items()},
               **dict(channels=3, cell="gru", kernel_size=5, head="sdna", cdna_kernels=2,
                      difference_input=False, sharp=True, sampling_steps=7,
                      context_loss_weight=0.5, latent_dim=2, kl_weight=1e-3,
                      output_floor=0.25, seed=3)}


def test_every_constructor_argument_survives_the_config():
    names = VideoPredictor.hyper_parameters()
    assert set(names) == set(NON_DEFAULT), "NON_DEFAULT must list every constructor argument"
    defaults = {k: p.default for k, p in
                inspect.signature(VideoPredictor.__init__).parameters.items() if k in names}
    for name, value in NON_DEFAULT.items():
        default = defaults[name]
        assert (list(default) if isinstance(default, tuple) else default) != value, name
    model = VideoPredictor(**NON_DEFAULT)
    config = model.get_config()
    clone = VideoPredictor.from_config(config)
    for name, value in NON_DEFAULT.items():
        assert config[name] == value, name
        assert clone.get_config()[name] == value, name
        attribute = getattr(clone, name)
        assert (list(attribute) if isinstance(attribute, tuple) else attribute) == value, name


def test_model_config_defaults_are_the_constructor_defaults():
    """The hyper-parameters' defaults are written twice; the two copies agree, field by field."""
    parameters = inspect.signature(VideoPredictor.__init__).parameters
    fields = {f.name: f.default for f in dataclasses.fields(ModelConfig)}
    assert set(fields) - set(parameters) == CRITIC_FIELDS
    shared = sorted(set(fields) - CRITIC_FIELDS)
    assert len(shared) == 14   # what ModelConfig passes to the model (each checked below)
    for name in shared:
        default = parameters[name].default
        assert default is not inspect.Parameter.empty, name
        assert type(fields[name]) is type(default) and fields[name] == default, name


def test_the_layer_registries_are_the_config_names():
    """model.cell and model.head are listed once (the config); the model maps exactly those."""
    assert tuple(CELLS) == CELL_NAMES
    assert tuple(HEADS) == HEAD_NAMES
    for cell in CELL_NAMES:
        ModelConfig(cell=cell).validate()
    for head in HEAD_NAMES:
        ModelConfig(head=head).validate()
    with pytest.raises(ValueError, match="head"):
        ModelConfig(head="warp").validate()
    with pytest.raises(ValueError, match="head"):
        VideoPredictor(**TINY_MODEL, head="warp")


def test_docstring_args_are_the_constructor_arguments():
    """The class docstring's Args section is the one description of the hyper-parameters."""
    doc = VideoPredictor.__doc__
    section = doc[doc.index("Args:"):doc.index("Reference:")]
    documented = re.findall(r"^ {8}(\w+):", section, flags=re.MULTILINE)
    assert documented == list(VideoPredictor.hyper_parameters())
    assert '"cdna" (a few' in section  # the default head is described first


@pytest.mark.parametrize("head, cls", [("sdna", SDNAHead), ("cdna", CDNAHead), ("dna", DNAHead),
                                       ("flow", FlowHead), ("pixels", PixelHead)])
def test_the_model_composes_its_head_and_latent(head, cls):
    model = VideoPredictor(**TINY_MODEL, head=head, latent_dim=2)
    assert type(model.frame_head) is cls
    assert model.decoder.out_channels == model.frame_head.num_maps
    assert isinstance(model.latent_prior, LatentPrior) and model.latent_prior.latent_dim == 2
    assert VideoPredictor(**TINY_MODEL, head=head).latent_prior is None
