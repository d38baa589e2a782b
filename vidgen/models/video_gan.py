"""VideoGAN: a VideoPredictor trained against a frame critic and a video critic."""

from __future__ import annotations

from typing import Optional

import keras
from keras import ops

from vidgen.models.frame_discriminator import FrameDiscriminator
from vidgen.models.replicas import num_replicas
from vidgen.models.video_discriminator import VideoDiscriminator
from vidgen.models.video_predictor import VideoPredictor

ADVERSARIAL_LOSSES = ("hinge", "nonsaturating")


def critic_loss(kind: str, real, fake):
    """Per-example critic loss: real logits should be high, fake ones low."""
    if kind == "hinge":
        return ops.relu(1.0 - real) + ops.relu(1.0 + fake)
    return ops.softplus(-real) + ops.softplus(fake)


def generator_loss(kind: str, fake):
    """Per-example generator loss: make the critic score fakes high."""
    if kind == "hinge":
        return -fake
    return ops.softplus(-fake)  # non-saturating: -log sigmoid(fake)


@keras.saving.register_keras_serializable(package="vidgen")
class VideoGAN(keras.Model):
    """Adversarial training of a `VideoPredictor` with per-frame and spatio-temporal critics.

    Deterministic predictors trained on a reconstruction loss average the
    possible futures and blur. Here the generator (a VideoPredictor) also
    has to fool a `FrameDiscriminator` (k randomly chosen predicted frames
    against true ones: are the frames sharp?) and a `VideoDiscriminator`
    (context plus prediction against context plus truth: is the motion
    right?). Every training step makes one generator rollout, updates the
    critics on it, then updates the generator against the updated critics.

    Loss terms reduced by hand (the adversarial and feature-matching terms)
    are divided by the number of replicas, as Keras loss objects do for
    themselves, so the summed gradients under tf.distribute are those of
    the global batch.

    Args:
        generator: the VideoPredictor.
        frame_critic: a FrameDiscriminator or None.
        video_critic: a VideoDiscriminator or None.
        critic_frames: predicted frames per clip shown to the frame critic.
        seed: seed of the frame choice.

    Reference:
        Goodfellow et al. 2014 (GANs); Lee et al., "Stochastic Adversarial
        Video Prediction" (SAVP), 2018; Clark et al., "Adversarial Video
        Generation on Complex Datasets" (DVD-GAN: dual frame/video critics), 2019.

    Example:

        gan = VideoGAN(VideoPredictor(64, 1), FrameDiscriminator(64, 1),
                       VideoDiscriminator(64, 1))
        gan.compile(g_optimizer=keras.optimizers.Adam(1e-3),
                    d_optimizer=keras.optimizers.Adam(4e-4),
                    reconstruction_loss=ReconstructionLoss(l1_weight=1.0))
        gan.fit(dataset, epochs=10)
        future = gan.rollout(context, 10)
    """

    def __init__(self, generator: VideoPredictor, frame_critic: Optional[FrameDiscriminator],
                 video_critic: Optional[VideoDiscriminator], critic_frames: int = 4,
                 seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(generator, VideoPredictor):
            raise ValueError("generator must be a VideoPredictor. "
                             f"Received: {type(generator).__name__}")
        if frame_critic is None and video_critic is None:
            raise ValueError("VideoGAN needs at least one critic (frame_critic or video_critic).")
        if critic_frames <= 0:
            raise ValueError(f"critic_frames must be positive. Received: {critic_frames}")
        for critic in (frame_critic, video_critic):
            if critic is not None and (critic.frame_size, critic.channels) != (
                    generator.frame_size, generator.channels):
                raise ValueError(
                    f"The critics must take the generator's frames ({generator.frame_size}px, "
                    f"{generator.channels} channels). Received {critic.frame_size}px, "
                    f"{critic.channels} channels.")
        self.generator = generator
        self.frame_critic = frame_critic
        self.video_critic = video_critic
        self.critic_frames = critic_frames
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed, name="critic_seed")
        self.trackers = {name: keras.metrics.Mean(name=name) for name in (
            "loss", "reconstruction", "g_adversarial", "feature_matching", "d_loss",
            "d_real", "d_fake", "teacher_prob", "kl", "frame_mse")}
        self.adversarial = "hinge"
        self.adversarial_weight = 0.0
        self.feature_matching_weight = 0.0
        self.reconstruction_loss = None
        self.g_optimizer = None
        self.d_optimizer = None
        self.built = True  # every child builds its weights in its constructor

    # ------------------------------------------------------------- prediction

    @property
    def critics(self) -> list:
        return [c for c in (self.frame_critic, self.video_critic) if c is not None]

    def call(self, context, training=False):
        return self.generator(context, training=training)

    def rollout(self, context, horizon: int, num_samples=None, seed=None):
        """The generator's autoregressive prediction (`VideoPredictor.rollout`)."""
        return self.generator.rollout(context, horizon, num_samples=num_samples, seed=seed)

    # --------------------------------------------------------------- training

    def compile(self, g_optimizer, d_optimizer, reconstruction_loss, adversarial: str = "hinge",
                adversarial_weight: float = 0.01, feature_matching_weight: float = 0.0,
                jit_compile: bool = False):
        """Sets the two optimizers and the loss terms.

        Args:
            g_optimizer: optimizer of the generator (also `self.optimizer`).
            d_optimizer: optimizer of the critics.
            reconstruction_loss: a keras Loss on frames (e.g. ReconstructionLoss with L1).
            adversarial: "hinge" or "nonsaturating".
            adversarial_weight: weight of the generator's adversarial term.
            feature_matching_weight: weight of the L1 distance between critic
                features of real and generated clips (0: off).
            jit_compile: XLA (off by default; slower on CPU).
        """
        if adversarial not in ADVERSARIAL_LOSSES:
            raise ValueError(f"adversarial must be one of {ADVERSARIAL_LOSSES}. "
                             f"Received: {adversarial!r}")
        if adversarial_weight < 0 or feature_matching_weight < 0:
            raise ValueError("Loss weights must be >= 0. Received: adversarial_weight="
                             f"{adversarial_weight}, feature_matching_weight="
                             f"{feature_matching_weight}")
        super().compile(optimizer=g_optimizer, jit_compile=jit_compile)
        self.g_optimizer = g_optimizer
        self.d_optimizer = d_optimizer
        self.reconstruction_loss = reconstruction_loss
        self.adversarial = adversarial
        self.adversarial_weight = adversarial_weight
        self.feature_matching_weight = feature_matching_weight
        g_optimizer.build(self.generator.trainable_variables)
        d_optimizer.build(self.critic_variables)

    @property
    def critic_variables(self) -> list:
        return [v for c in self.critics for v in c.trainable_variables]

    def _critic_outputs(self, context, future, frame_index):
        """(logits, features) of every critic for one clip batch, in float32."""
        out = []
        if self.frame_critic is not None:
            frames = ops.take(future, frame_index, axis=1)
            out.append(self.frame_critic(frames, training=True, return_features=True))
        if self.video_critic is not None:
            clip = ops.concatenate([context, future], axis=1)
            out.append(self.video_critic(clip, training=True, return_features=True))
        # Under a mixed-precision policy the critics compute in (b)float16.
        return [(ops.cast(logits, "float32"), [ops.cast(f, "float32") for f in features])
                for logits, features in out]

    def train_step(self, data):
        import tensorflow as tf

        context, target, _ = keras.utils.unpack_x_y_sample_weight(data)
        replicas = float(num_replicas())
        horizon = target.shape[1]
        frame_index = keras.random.randint((min(self.critic_frames, horizon),), 0, horizon,
                                           seed=self.seed_generator)
        teacher_prob = self.generator.teacher_probability(self.g_optimizer.iterations)
        with tf.GradientTape() as g_tape:
            context_preds, preds, kl = self.generator.unroll(context, target, teacher_prob)
            reconstruction = self.generator.objective(self.reconstruction_loss, context, target,
                                                      context_preds, preds, kl)
            # Critic update on this rollout (no gradient into the generator).
            fake = ops.stop_gradient(preds)
            with tf.GradientTape() as d_tape:
                real_out = self._critic_outputs(context, target, frame_index)
                fake_out = self._critic_outputs(context, fake, frame_index)
                d_loss = sum(ops.mean(critic_loss(self.adversarial, r[0], f[0]))
                             for r, f in zip(real_out, fake_out)) / replicas
                d_scaled = self.d_optimizer.scale_loss(d_loss)
            critic_vars = self.critic_variables
            d_grads = d_tape.gradient(d_scaled, critic_vars)
            self.d_optimizer.apply(d_grads, critic_vars)
            # Generator update against the updated critics.
            gen_out = self._critic_outputs(context, preds, frame_index)
            g_adv = sum(ops.mean(generator_loss(self.adversarial, g[0]))
                        for g in gen_out) / replicas
            g_loss = reconstruction + self.adversarial_weight * g_adv
            fm = ops.convert_to_tensor(0.0)
            if self.feature_matching_weight:
                real_features = [ops.stop_gradient(x) for r in real_out for x in r[1]]
                gen_features = [x for g in gen_out for x in g[1]]
                fm = sum(ops.mean(ops.abs(a - b)) for a, b in
                         zip(real_features, gen_features)) / replicas
                g_loss = g_loss + self.feature_matching_weight * fm
            g_scaled = self.g_optimizer.scale_loss(g_loss)
        g_vars = self.generator.trainable_variables
        self.g_optimizer.apply(g_tape.gradient(g_scaled, g_vars), g_vars)

        real_logit = sum(ops.mean(r[0]) for r in real_out) / len(real_out)
        fake_logit = sum(ops.mean(f[0]) for f in fake_out) / len(fake_out)
        # Trackers show per-replica values scaled back to the global-batch value.
        values = {"loss": g_loss * replicas, "reconstruction": reconstruction * replicas,
                  "g_adversarial": g_adv * replicas, "feature_matching": fm * replicas,
                  "d_loss": d_loss * replicas, "d_real": real_logit, "d_fake": fake_logit,
                  "teacher_prob": teacher_prob, "kl": kl}
        for name, value in values.items():
            self.trackers[name].update_state(value)
        return {name: self.trackers[name].result() for name in values}

    def test_step(self, data):
        context, target, _ = keras.utils.unpack_x_y_sample_weight(data)
        loss, frame_mse = self.generator.validation_losses(self.reconstruction_loss, context,
                                                          target)
        self.trackers["loss"].update_state(loss)
        self.trackers["frame_mse"].update_state(frame_mse)
        return {"loss": self.trackers["loss"].result(),
                "frame_mse": self.trackers["frame_mse"].result()}

    @property
    def metrics(self):
        return list(self.trackers.values())

    # ---------------------------------------------------------- serialisation

    def get_config(self):
        serialize = keras.saving.serialize_keras_object
        return {**super().get_config(), "generator": serialize(self.generator),
                "frame_critic": serialize(self.frame_critic) if self.frame_critic else None,
                "video_critic": serialize(self.video_critic) if self.video_critic else None,
                "critic_frames": self.critic_frames, "seed": self.seed}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        deserialize = keras.saving.deserialize_keras_object
        for key in ("generator", "frame_critic", "video_critic"):
            if config.get(key) is not None:
                config[key] = deserialize(config[key])
        return cls(**config)

    def get_compile_config(self):
        # compile() takes two optimizers and loss objects; a loaded VideoGAN is
        # compiled again by its trainer (`vidgen train --resume`), not from the file.
        return None
