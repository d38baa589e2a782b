"""A spatio-temporal critic: does this clip move like a real one?"""

from __future__ import annotations

import keras
from keras import ops

from vidgen.models.frame_discriminator import check_critic_arguments
from vidgen.models.spectral_norm_conv import SpectralNormConv


@keras.saving.register_keras_serializable(package="vidgen")
class VideoDiscriminator(keras.layers.Layer):
    """A spectrally normalised 3D conv critic scoring whole clips.

    It sees context and predicted frames together, so it judges motion (a
    digit that jumps, fades or stops), not only single frames. The first
    stage convolves 3 frames at a time at full resolution; later stages
    halve time and space. Time may be any length >= 1.

    Args:
        frame_size: height and width of the (square) frames.
        channels: 1 or 3.
        filters: channels of the stages.

    Returns (call):
        logits (batch,) for clips (batch, T, H, W, C); with
        `return_features=True` also the intermediate activations.

    Reference:
        Tulyakov et al., "MoCoGAN", CVPR 2018 (a video critic beside an
        image critic); Miyato et al. 2018 (spectral normalisation).

    Example:

        critic = VideoDiscriminator(64, 1)
        logits = critic(clips)        # (batch, 20, 64, 64, 1) -> (batch,)
    """

    def __init__(self, frame_size: int = 64, channels: int = 1, filters=(32, 64, 128),
                 **kwargs):
        super().__init__(**kwargs)
        self.filters = check_critic_arguments(frame_size, channels, filters)
        self.frame_size = frame_size
        self.channels = channels
        self.convs = []
        for i, f in enumerate(self.filters):
            strides = (1, 2, 2) if i == 0 else (2, 2, 2)
            self.convs.append(SpectralNormConv(
                keras.layers.Conv3D(f, (3, 4, 4), strides=strides, padding="same"),
                name=f"conv_{i}"))
        self.score = SpectralNormConv(
            keras.layers.Conv3D(1, 3, padding="same"), name="score")
        self.build((None, None, frame_size, frame_size, channels))

    def build(self, input_shape):
        shape = (None, None, self.frame_size, self.frame_size, self.channels)
        for conv in self.convs:
            conv.build(shape)
            shape = conv.compute_output_shape(shape)
        self.score.build(shape)
        self.built = True

    def call(self, clips, training=False, return_features=False):
        x = clips
        features = []
        for conv in self.convs:
            x = keras.activations.leaky_relu(conv(x, training=training), negative_slope=0.2)
            features.append(x)
        logits = ops.mean(self.score(x, training=training), axis=(1, 2, 3, 4))
        return (logits, features) if return_features else logits

    def get_config(self):
        return {**super().get_config(), "frame_size": self.frame_size,
                "channels": self.channels, "filters": list(self.filters)}
