"""The "pixels" head: the next frame's pixels straight from the decoder."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="vidgen")
class PixelHead(keras.layers.Layer):
    """Emits sigmoid pixels: next frame = sigmoid(maps).

    The plain head, without motion: every pixel of the next frame is
    generated. Called like the motion heads, `head(frame, maps, features,
    sharp=False)`; it reads `maps` only.

    Args:
        channels: channels of the frames (= maps read from the decoder).

    Example:

        head = PixelHead(channels=1)
        next_frame = head(frame, maps)          # maps (B, H, W, 1)
    """

    def __init__(self, channels: int, **kwargs):
        super().__init__(**kwargs)
        if channels <= 0:
            raise ValueError(f"channels must be positive. Received: channels={channels}")
        self.channels = channels

    @classmethod
    def count_maps(cls, channels: int, kernel_size: int = 0, num_kernels: int = 0) -> int:
        """Maps per pixel a PixelHead reads: one per channel (the motion heads' signature)."""
        return channels

    @property
    def num_maps(self) -> int:
        return self.channels

    def initialize_maps(self, conv) -> None:
        """Leaves the decoder's last convolution as initialised."""

    def build(self, frame_shape, maps_shape, features_shape=None):
        self.built = True

    def call(self, frame, maps, features=None, sharp=False):
        return ops.sigmoid(maps)

    def compute_output_shape(self, frame_shape, maps_shape, features_shape=None):
        return tuple(frame_shape)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels}
