"""A per-frame critic: does this frame look like a real one?"""

from __future__ import annotations

import keras
from keras import ops

from vidgen.models.spectral_norm_conv import SpectralNormConv


def check_critic_arguments(frame_size: int, channels: int, filters) -> tuple[int, ...]:
    """Validates the arguments shared by the critics; returns `filters` as a tuple."""
    if frame_size <= 0:
        raise ValueError(f"frame_size must be positive. Received: frame_size={frame_size}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3. Received: channels={channels}")
    filters = tuple(int(f) for f in filters)
    if not filters or min(filters) <= 0:
        raise ValueError(f"filters must be positive integers. Received: filters={filters}")
    return filters


@keras.saving.register_keras_serializable(package="vidgen")
class FrameDiscriminator(keras.layers.Layer):
    """A spectrally normalised 2D conv critic scoring single frames.

    Stride-2 convolutions with LeakyReLU, then a one-channel convolution
    whose patch scores are averaged: one logit per frame. Every convolution
    is spectrally normalised (`SpectralNormConv`, Keras' SpectralNormalization
    made safe under tf.distribute; Miyato et al. 2018), which keeps the
    critic roughly 1-Lipschitz and the adversarial game stable.

    Args:
        frame_size: height and width of the (square) frames.
        channels: 1 or 3.
        filters: channels of the stride-2 stages.

    Returns (call):
        logits (batch, k) for frames (batch, k, H, W, C); with
        `return_features=True` also the list of intermediate activations
        (for feature matching).

    Reference:
        Miyato et al., "Spectral Normalization for Generative Adversarial
        Networks", ICLR 2018; Isola et al. 2017 (patch critics).

    Example:

        critic = FrameDiscriminator(64, 1)
        logits = critic(frames)       # frames (batch, 4, 64, 64, 1) -> (batch, 4)
    """

    def __init__(self, frame_size: int = 64, channels: int = 1, filters=(32, 64, 128),
                 **kwargs):
        super().__init__(**kwargs)
        self.filters = check_critic_arguments(frame_size, channels, filters)
        self.frame_size = frame_size
        self.channels = channels
        self.convs = [SpectralNormConv(
            keras.layers.Conv2D(f, 4, strides=2, padding="same"), name=f"conv_{i}")
            for i, f in enumerate(self.filters)]
        self.score = SpectralNormConv(
            keras.layers.Conv2D(1, 3, padding="same"), name="score")
        self.build((None, None, frame_size, frame_size, channels))

    def build(self, input_shape):
        shape = (None, self.frame_size, self.frame_size, self.channels)
        for conv in self.convs:
            conv.build(shape)
            shape = conv.compute_output_shape(shape)
        self.score.build(shape)
        self.built = True

    def call(self, frames, training=False, return_features=False):
        batch = ops.shape(frames)[0]
        x = ops.reshape(frames, (-1, self.frame_size, self.frame_size, self.channels))
        features = []
        for conv in self.convs:
            x = keras.activations.leaky_relu(conv(x, training=training), negative_slope=0.2)
            features.append(x)
        logits = ops.reshape(ops.mean(self.score(x, training=training), axis=(1, 2, 3)),
                             (batch, -1))
        return (logits, features) if return_features else logits

    def get_config(self):
        return {**super().get_config(), "frame_size": self.frame_size,
                "channels": self.channels, "filters": list(self.filters)}
