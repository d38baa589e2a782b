"""Upsamples recurrent features back to frames, with skip features from the encoder."""

from __future__ import annotations

import keras
from keras import ops


def depth_to_space(x, block: int):
    """(B, h, w, block*block*C) -> (B, h*block, w*block, C), as `tf.nn.depth_to_space`."""
    _, h, w, c = x.shape
    out = c // (block * block)
    x = ops.reshape(x, (-1, h, w, block, block, out))
    x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
    return ops.reshape(x, (-1, h * block, w * block, out))


@keras.saving.register_keras_serializable(package="vidgen")
class FrameDecoder(keras.layers.Layer):
    """Decodes (batch, H/4, W/4, F) features into per-pixel output maps at (H, W).

    Two x2 upsampling stages mirror `FrameEncoder`. Each stage convolves at the
    lower resolution and rearranges channels into space (sub-pixel
    convolution, Shi et al. 2016), so no convolution runs at full resolution:
    at 64x64 this is several times faster than transposed convolutions, with
    the same receptive field. The first stage sees the recurrent features
    joined with the encoder's features of the same frame; the second joins
    the encoder's half-resolution skip features. The last stage emits
    `out_channels` linear maps per pixel; `VideoPredictor` turns them into a
    frame.

    Args:
        filters: channels of the quarter- and half-resolution stages, e.g. (64, 32).
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
        self.stage1 = keras.layers.Conv2D(filters[0], activation="relu", name="stage1", **conv)
        self.up1 = keras.layers.Conv2D(4 * filters[1], 1, name="up1")
        self.stage2 = keras.layers.Conv2D(filters[1], activation="relu", name="stage2", **conv)
        self.out = keras.layers.Conv2D(4 * out_channels, 1, name="out")

    def build(self, features_shape, skips_shape):
        b, h, w, c = features_shape
        quarter_c, half_c = skips_shape[0][-1], skips_shape[1][-1]
        self.stage1.build((b, h, w, c + quarter_c))
        self.up1.build((b, h, w, self.filters[0]))
        self.stage2.build((b, 2 * h, 2 * w, self.filters[1] + half_c))
        self.out.build((b, 2 * h, 2 * w, self.filters[1]))

    def call(self, features, skips):
        quarter, half = skips
        x = self.stage1(ops.concatenate([features, quarter], axis=-1))
        x = ops.relu(depth_to_space(self.up1(x), 2))
        x = self.stage2(ops.concatenate([x, half], axis=-1))
        return depth_to_space(self.out(x), 2)

    def get_config(self):
        return {**super().get_config(), "filters": list(self.filters),
                "out_channels": self.out_channels, "kernel_size": self.kernel_size}
