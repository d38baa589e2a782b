"""Upsamples recurrent features back to frames, with skip features from the encoder."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="vidgen")
class FrameDecoder(keras.layers.Layer):
    """Decodes (batch, H/4, W/4, F) features into per-pixel output maps at (H, W).

    Two transposed-convolution stages mirror `FrameEncoder`; each stage is
    joined with the encoder's skip features of the same resolution. The last
    layer emits `out_channels` linear maps; `VideoPredictor` turns them into
    a frame (sigmoid pixels, or kernels and masks that move the last frame).

    Args:
        filters: channels of the half- and full-resolution stages, e.g. (64, 32).
        out_channels: maps emitted per pixel.
        kernel_size: side of the square convolutions.

    Example:

        maps = FrameDecoder((64, 32), out_channels=1)(features, skips)
    """

    def __init__(self, filters=(64, 32), out_channels: int = 1, kernel_size: int = 3,
                 **kwargs):
        super().__init__(**kwargs)
        filters = tuple(int(f) for f in filters)
        if len(filters) != 2 or min(filters) <= 0:
            raise ValueError(
                f"filters must be two positive integers. Received: filters={filters}")
        if out_channels <= 0:
            raise ValueError(f"out_channels must be positive. Received: {out_channels}")
        self.filters = filters
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        conv = dict(kernel_size=kernel_size, padding="same")
        self.up1 = keras.layers.Conv2DTranspose(filters[0], strides=2, activation="relu",
                                                name="up1", **conv)
        self.merge1 = keras.layers.Conv2D(filters[0], activation="relu", name="merge1", **conv)
        self.up2 = keras.layers.Conv2DTranspose(filters[1], strides=2, activation="relu",
                                                name="up2", **conv)
        self.merge2 = keras.layers.Conv2D(filters[1], activation="relu", name="merge2", **conv)
        self.out = keras.layers.Conv2D(out_channels, name="out", **conv)

    def build(self, features_shape, skips_shape):
        b, h, w, _ = features_shape
        full_c, half_c = skips_shape[0][-1], skips_shape[1][-1]
        self.up1.build(tuple(features_shape))
        self.merge1.build((b, 2 * h, 2 * w, self.filters[0] + half_c))
        self.up2.build((b, 2 * h, 2 * w, self.filters[0]))
        self.merge2.build((b, 4 * h, 4 * w, self.filters[1] + full_c))
        self.out.build((b, 4 * h, 4 * w, self.filters[1]))

    def call(self, features, skips):
        full, half = skips
        x = self.merge1(ops.concatenate([self.up1(features), half], axis=-1))
        x = self.merge2(ops.concatenate([self.up2(x), full], axis=-1))
        return self.out(x)

    def get_config(self):
        return {**super().get_config(), "filters": list(self.filters),
                "out_channels": self.out_channels, "kernel_size": self.kernel_size}
