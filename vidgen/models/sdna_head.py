"""The "sdna" head: separable per-pixel motion kernels (rows, then columns)."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from vidgen.models.motion_head import MotionHead, composite, hard


@keras.saving.register_keras_serializable(package="vidgen")
class SDNAHead(MotionHead):
    """Moves the last frame by a separable k x k kernel per pixel, composited with pixels.

    The maps hold k vertical and k horizontal kernel logits per pixel, a mask
    logit and `channels` pixel logits. The frame is shifted along rows, then
    columns: 2k taps per pixel instead of DNA's k*k. It starts as "copy the
    last frame" (`initialize_maps`).

    Args:
        frame_size: height and width of the (square) frames.
        channels: channels of the frames.
        kernel_size: side k of the motion kernels (odd).

    Example:

        head = SDNAHead(64, 1, kernel_size=9)
        next_frame = head(frame, maps)          # maps (B, 64, 64, 2 * 9 + 1 + 1)
    """

    @classmethod
    def count_maps(cls, channels: int, kernel_size: int, num_kernels: int = 0) -> int:
        return 2 * kernel_size + 1 + channels

    def initialize_maps(self, conv) -> None:
        """Starts as "copy the frame": centre taps favoured, the mask on moved pixels."""
        k = self.kernel_size
        bias = np.zeros(self.num_maps, "float32")
        bias[k // 2] = bias[k + k // 2] = 1.0
        bias[2 * k] = 3.0
        # The decoder's last convolution emits 2x2 blocks of these maps.
        conv.bias.assign(np.tile(bias, 4))

    def call(self, frame, maps, features=None, sharp=False):
        k = self.kernel_size
        vertical, horizontal = maps[..., :k], maps[..., k:2 * k]
        if sharp:
            vertical, horizontal = hard(vertical), hard(horizontal)
        else:
            vertical = ops.softmax(vertical, axis=-1)
            horizontal = ops.softmax(horizontal, axis=-1)
        moved = self.shift(self.shift(frame, vertical, axis=1), horizontal, axis=2)
        return composite(moved, maps[..., 2 * k:], sharp)
