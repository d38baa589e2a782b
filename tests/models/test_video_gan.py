import json
import os

import keras
import numpy as np
import pytest

from tests.harness import run_serialization_test
from tests.tiny import TINY_MODEL, tiny_run_config
from vidgen.models import FrameDiscriminator, VideoDiscriminator, VideoGAN, VideoPredictor
from vidgen.models.spectral_norm_conv import SpectralNormConv
from vidgen.training.losses import ReconstructionLoss

TINY = {**TINY_MODEL, "head": "sdna"}


def make_gan(critics=("frame", "video"), **kwargs) -> VideoGAN:
    frame = FrameDiscriminator(16, 1, (4, 8)) if "frame" in critics else None
    video = VideoDiscriminator(16, 1, (4, 8)) if "video" in critics else None
    return VideoGAN(VideoPredictor(**TINY), frame, video, critic_frames=2, **kwargs)


def compiled(gan: VideoGAN, **kwargs) -> VideoGAN:
    gan.compile(keras.optimizers.Adam(1e-3), keras.optimizers.Adam(1e-3),
                ReconstructionLoss(l1_weight=1.0), **kwargs)
    return gan


def clips(n=4, seed=0):
    x = np.random.default_rng(seed).random((n, 6, 16, 16, 1)).astype("float32")
    return x[:, :3], x[:, 3:]


@pytest.mark.parametrize("cls", [FrameDiscriminator, VideoDiscriminator])
def test_critic_shapes_config_and_spectral_norm(cls, tmp_path):
    x = np.random.default_rng(0).random((2, 5, 16, 16, 1)).astype("float32")
    # Two stride-2 stages and the score: a kernel and a bias each.
    critic = run_serialization_test(
        cls, dict(frame_size=16, channels=1, filters=(4, 8)), x, tmp_path,
        expected_output_shape=(2, 5) if cls is FrameDiscriminator else (2,),
        expected_num_trainable_weights=6, atol=1e-5)
    logits, features = critic(x, return_features=True)
    assert logits.shape == ((2, 5) if cls is FrameDiscriminator else (2,))
    assert len(features) == 2
    assert all(isinstance(c, keras.layers.SpectralNormalization) for c in critic.convs)
    assert all(isinstance(c, SpectralNormConv) for c in critic.convs)
    with pytest.raises(ValueError, match="filters must be positive"):
        cls(16, 1, (4, 0))
    with pytest.raises(ValueError, match="channels must be 1 or 3"):
        cls(16, 2)


@pytest.mark.parametrize("adversarial,fm", [("hinge", 0.0), ("nonsaturating", 0.5)])
def test_train_step_updates_generator_and_critics(adversarial, fm):
    gan = compiled(make_gan(), adversarial=adversarial, feature_matching_weight=fm)
    g_before = [np.asarray(v) for v in gan.generator.trainable_variables]
    d_before = [np.asarray(v) for v in gan.critic_variables]
    context, target = clips()
    logs = gan.train_on_batch(context, target, return_dict=True)
    for name in ("loss", "reconstruction", "g_adversarial", "d_loss", "d_real", "d_fake"):
        assert np.isfinite(logs[name]), name
    assert (logs["feature_matching"] > 0) == (fm > 0)
    changed = [not np.allclose(a, np.asarray(b))
               for a, b in zip(g_before, gan.generator.trainable_variables)]
    assert all(changed)
    # Every critic kernel moves. (A critic's output bias may not: at the start all
    # logits lie inside the hinge margin, where its gradients from real and fake cancel.)
    changed = [not np.allclose(a, np.asarray(b)) for a, b in zip(d_before, gan.critic_variables)
               if "kernel" in b.path]
    assert changed and all(changed)
    assert gan.g_optimizer.iterations.numpy() == 1 and gan.d_optimizer.iterations.numpy() == 1


def test_single_critic_and_bad_arguments():
    gan = compiled(make_gan(critics=("video",)))
    logs = gan.train_on_batch(*clips(), return_dict=True)
    assert np.isfinite(logs["d_loss"])
    with pytest.raises(ValueError, match="at least one critic"):
        VideoGAN(VideoPredictor(**TINY), None, None)
    with pytest.raises(ValueError, match="generator's frames"):
        VideoGAN(VideoPredictor(**TINY), FrameDiscriminator(32, 1), None)
    with pytest.raises(ValueError, match="adversarial must be one of"):
        compiled(make_gan(), adversarial="wasserstein")


def test_serialization_of_an_untrained_gan(tmp_path):
    context, _ = clips()
    generator = VideoPredictor(**TINY)
    critics = dict(frame_critic=FrameDiscriminator(16, 1, (4, 8)),
                   video_critic=VideoDiscriminator(16, 1, (4, 8)))
    run_serialization_test(VideoGAN, dict(generator=generator, critic_frames=2, **critics),
                           context, tmp_path, expected_output_shape=(4, 3, 16, 16, 1),
                           expected_num_trainable_weights=len(generator.trainable_weights) + 12)


def test_keras_round_trip_gives_same_outputs(tmp_path):
    gan = compiled(make_gan())
    context, target = clips()
    gan.train_on_batch(context, target)
    path = str(tmp_path / "gan.keras")
    gan.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, VideoGAN)
    np.testing.assert_allclose(loaded.rollout(context, 4), gan.rollout(context, 4), atol=1e-6)
    x = context[:, :2].repeat(2, axis=1)
    np.testing.assert_allclose(loaded.frame_critic(x), gan.frame_critic(x), atol=1e-5)
    np.testing.assert_allclose(loaded.video_critic(x), gan.video_critic(x), atol=1e-5)


def test_gan_generator_stays_causal():
    gan = compiled(make_gan())
    gan.train_on_batch(*clips())
    context = np.random.default_rng(1).random((1, 6, 16, 16, 1)).astype("float32")
    states = gan.generator.initial_states(1)
    before = []
    for t in range(6):
        frame, states = gan.generator.step(context[:, t], states)
        before.append(np.asarray(frame))
    changed = context.copy()
    changed[:, 3:] = 1.0 - changed[:, 3:]
    states = gan.generator.initial_states(1)
    for t in range(3):
        frame, states = gan.generator.step(changed[:, t], states)
        np.testing.assert_array_equal(np.asarray(frame), before[t])


def test_vidgen_train_adversarial_run(tmp_path):
    from vidgen.run_dir import load_run
    from vidgen.training.train import train

    cfg = tiny_run_config(**{"train.adversarial": "hinge", "train.epochs": 1,
                             "model.frame_critic_filters": [4, 8],
                             "model.video_critic_filters": [4]})
    run = str(tmp_path / "gan")
    summary = train(cfg, run)
    assert summary["epochs_run"] == 1
    history = open(os.path.join(run, "logs", "history.csv")).read()
    assert "d_loss" in history and "val_frame_mse" in history
    assert isinstance(keras.saving.load_model(os.path.join(run, "model.keras")), VideoGAN)
    _, predictor = load_run(run)
    assert isinstance(predictor, VideoPredictor)
    metrics = json.load(open(os.path.join(run, "metrics.json")))
    assert np.isfinite(metrics["results"]["model"]["mse"]["mean"])


def test_video_critic_stages_are_true_3d_convolutions():
    """The stacked-frames 2D convolution equals tf.nn.conv3d with the same weights."""
    import tensorflow as tf

    from vidgen.models.video_discriminator import TAPS

    critic = VideoDiscriminator(16, 1, (4, 8), downsample=1)
    x = np.random.default_rng(0).random((2, 5, 16, 16, 1)).astype("float32")
    for index, (stage, inputs, stride) in enumerate([(critic.convs[0].layer, x, 1)]):
        kernel2d = np.asarray(stage.kernel)                     # (4, 4, TAPS * C, F)
        c = inputs.shape[-1]
        kernel3d = np.stack([kernel2d[:, :, i * c:(i + 1) * c] for i in range(TAPS)])
        padded = np.pad(inputs, [(0, 0), (1, 1), (0, 0), (0, 0), (0, 0)])
        # SAME padding everywhere on the time-padded clip, then the extra time steps
        # cropped: zero "same" padding in time, SAME in space, as the critic does.
        want = tf.nn.conv3d(padded, kernel3d, (1, stride, 2, 2, 1), "SAME")
        want = np.asarray(want)[:, 1:-1] + np.asarray(stage.bias)
        got = np.asarray(critic._conv3d(stage, inputs, stride, training=False))
        np.testing.assert_allclose(got, want, atol=1e-5, err_msg=f"stage {index}")
