"""The "dna" head: dynamic neural advection, one k x k kernel per pixel."""

from __future__ import annotations

import keras
from keras import ops

from vidgen.models.motion_head import MotionHead, composite, hard


@keras.saving.register_keras_serializable(package="vidgen")
class DNAHead(MotionHead):
    """Moves the last frame by a normalised k x k kernel per pixel, composited with pixels.

    The maps hold k*k kernel logits per pixel (softmax-normalised), a mask
    logit and `channels` pixel logits: next = mask * moved + (1 - mask) *
    sigmoid(pixels). With `sharp=True` each pixel takes its most likely tap
    and the rounded mask.

    Args:
        frame_size: height and width of the (square) frames.
        channels: channels of the frames.
        kernel_size: side k of the motion kernels (odd).

    Reference:
        Finn et al., "Unsupervised Learning for Physical Interaction through
        Video Prediction", NeurIPS 2016.

    Example:

        head = DNAHead(64, 1, kernel_size=9)
        next_frame = head(frame, maps)          # maps (B, 64, 64, 81 + 1 + 1)
    """

    @classmethod
    def count_maps(cls, channels: int, kernel_size: int, num_kernels: int = 0) -> int:
        return kernel_size ** 2 + 1 + channels

    def call(self, frame, maps, features=None, sharp=False):
        kk = self.kernel_size ** 2
        weights = hard(maps[..., :kk]) if sharp else ops.softmax(maps[..., :kk], axis=-1)
        return composite(self.advect(frame, weights), maps[..., kk:], sharp)
