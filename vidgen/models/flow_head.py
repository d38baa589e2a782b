"""The "flow" head: a dense flow field warps the last frame; a gate and a residual correct it."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from vidgen.models.motion_head import MotionHead


@keras.saving.register_keras_serializable(package="vidgen")
class FlowHead(MotionHead):
    """Next frame = last + gate * (warp(last, flow) - last) + residual, for natural video.

    The maps hold the flow (dy, dx), a gate logit and `channels` residual
    logits. The warp samples the last frame at p + flow(p) with bilinear
    weights, as two separable passes (rows, then columns) of the shifted-copy
    machinery of `MotionHead`: the bilinear weight of offset j is
    max(0, 1 - |flow - j|), so only builtin ops (conv, abs, relu) are needed
    and the step converts to TFLite int8. The flow is bounded by
    kernel_size // 2 pixels per frame (a smooth tanh bound). Gate and
    residual start at exactly 0 (`initialize_maps`): the untrained head
    returns the last frame.

    Args:
        frame_size: height and width of the (square) frames.
        channels: channels of the frames.
        kernel_size: 2 * (largest flow in pixels) + 1 (odd).

    Example:

        head = FlowHead(64, 3, kernel_size=17)
        next_frame = head(frame, maps)          # maps (B, 64, 64, 3 + 3)
    """

    @classmethod
    def count_maps(cls, channels: int, kernel_size: int, num_kernels: int = 0) -> int:
        return 3 + channels

    def initialize_maps(self, conv) -> None:
        """Gate and residual weights at 0 (copy-last); the flow's small and random.

        A flow of exactly 0 would sit on the bilinear kernel's kink, where its
        gradient vanishes; the copy-last start means training can only improve on it.
        """
        kernel = np.array(conv.kernel.numpy())
        mask = np.tile(np.arange(self.num_maps) >= 2, 4)
        kernel[..., mask] = 0.0
        kernel[..., ~mask] *= 0.1
        conv.kernel.assign(kernel)
        conv.bias.assign(np.zeros(4 * self.num_maps, "float32"))

    def call(self, frame, maps, features=None, sharp=False):
        r = float(self.kernel_size // 2)
        offsets = ops.convert_to_tensor(
            np.arange(-(self.kernel_size // 2), self.kernel_size // 2 + 1, dtype="float32"))
        flow = r * ops.tanh(maps[..., :2] / r)
        vertical = ops.relu(1.0 - ops.abs(flow[..., :1] - offsets))
        horizontal = ops.relu(1.0 - ops.abs(flow[..., 1:2] - offsets))
        warped = self.shift(self.shift(frame, vertical, axis=1), horizontal, axis=2)
        gate = ops.tanh(maps[..., 2:3])
        residual = 0.5 * ops.tanh(maps[..., 3:])
        return ops.clip(frame + gate * (warped - frame) + residual, 0.0, 1.0)
