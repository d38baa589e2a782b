"""A CNN applied to every frame: features at 1/4 resolution plus skip features."""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="vidgen")
class FrameEncoder(keras.layers.Layer):
    """Encodes frames (batch, H, W, C) into (batch, H/4, W/4, filters[1]) features.

    Two stride-2 stages (64x64 -> 32x32 -> 16x16 for the default frame size).
    It also returns the quarter- and half-resolution activations as skip
    features for `FrameDecoder`. Callers fold (batch, time) into the batch:
    Keras 3.15.1's `TimeDistributed` reports a wrong time dimension when time
    is dynamic.

    Args:
        filters: channels of the two stages, e.g. (32, 64).
        kernel_size: side of the square convolutions.

    Example:

        features, skips = FrameEncoder((32, 64))(frames)   # frames: (N, 64, 64, 1)
    """

    def __init__(self, filters=(32, 64), kernel_size: int = 3, **kwargs):
        super().__init__(**kwargs)
        filters = tuple(int(f) for f in filters)
        if len(filters) != 2 or min(filters) <= 0:
            raise ValueError(
                f"filters must be two positive integers. Received: filters={filters}")
        self.filters = filters
        self.kernel_size = kernel_size
        conv = dict(kernel_size=kernel_size, padding="same", strides=2, activation="relu")
        self.down1 = keras.layers.Conv2D(filters[0], name="down1", **conv)
        self.down2 = keras.layers.Conv2D(filters[1], name="down2", **conv)

    def build(self, input_shape):
        self.down1.build(tuple(input_shape))
        self.down2.build(self.down1.compute_output_shape(tuple(input_shape)))

    def call(self, frames):
        half = self.down1(frames)
        quarter = self.down2(half)
        return quarter, [quarter, half]

    def get_config(self):
        return {**super().get_config(), "filters": list(self.filters),
                "kernel_size": self.kernel_size}
