"""The "cdna" head: a few motion kernels per clip, chosen per pixel by masks."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from vidgen.models.motion_head import MotionHead, hard


@keras.saving.register_keras_serializable(package="vidgen")
class CDNAHead(MotionHead):
    """Moves the last frame by `num_kernels` normalised kernels per clip, mixed by masks.

    A dense layer on the pooled recurrent features (mean and max over space)
    gives each clip its own `num_kernels` k x k kernels; the maps hold
    `num_kernels` + 1 mask logits (softmax over the moved copies and the
    generated frame) and `channels` pixel logits. Every kernel starts as the
    identity (all weight on the centre tap), so the untrained head copies the
    last frame instead of blurring it.

    Args:
        frame_size: height and width of the (square) frames.
        channels: channels of the frames.
        kernel_size: side k of the motion kernels (odd).
        num_kernels: kernels per clip.

    Reference:
        Finn et al., "Unsupervised Learning for Physical Interaction through
        Video Prediction", NeurIPS 2016 (CDNA).

    Example:

        head = CDNAHead(64, 1, kernel_size=9, num_kernels=4)
        next_frame = head(frame, maps, features)   # maps (B, 64, 64, 4 + 1 + 1)
    """

    def __init__(self, frame_size: int, channels: int, kernel_size: int = 9,
                 num_kernels: int = 4, **kwargs):
        super().__init__(frame_size, channels, kernel_size, **kwargs)
        if num_kernels <= 0:
            raise ValueError(f"num_kernels must be positive. Received: num_kernels={num_kernels}")
        self.num_kernels = num_kernels
        kk = kernel_size * kernel_size
        bias = np.zeros((num_kernels, kk), "float32")
        bias[:, kk // 2] = 2.0
        self.kernel_head = keras.layers.Dense(
            num_kernels * kk, bias_initializer=keras.initializers.Constant(bias.ravel()),
            name="kernel_head")

    @classmethod
    def count_maps(cls, channels: int, kernel_size: int, num_kernels: int = 4) -> int:
        return num_kernels + 1 + channels

    @property
    def num_maps(self) -> int:
        return self.count_maps(self.channels, self.kernel_size, self.num_kernels)

    def build(self, frame_shape, maps_shape, features_shape=None):
        self.kernel_head.build((None, 2 * features_shape[-1]))  # mean and max pooled
        self.built = True

    def call(self, frame, maps, features=None, sharp=False):
        n = self.num_kernels
        pooled = ops.concatenate([ops.mean(features, axis=(1, 2)),
                                  ops.max(features, axis=(1, 2))], axis=-1)
        logits = ops.reshape(ops.cast(self.kernel_head(pooled), "float32"),
                             (-1, n, self.kernel_size ** 2))
        kernels = hard(logits) if sharp else ops.softmax(logits, axis=-1)
        candidates = self.transform(frame, kernels)                  # (B, H, W, C, n)
        generated = ops.sigmoid(maps[..., n + 1:])                      # (B, H, W, C)
        candidates = ops.concatenate([candidates, ops.expand_dims(generated, -1)], axis=-1)
        masks = maps[..., :n + 1]                                       # (B, H, W, n + 1)
        masks = hard(masks) if sharp else ops.softmax(masks, axis=-1)
        return ops.sum(candidates * ops.expand_dims(masks, 3), axis=-1)

    def transform(self, frame, kernels):
        """Applies each clip's own `n` normalised kernels to its frame.

        A batched matrix product of the frame's shifted copies with the
        kernels. (A depthwise convolution whose filters are the per-clip
        kernels computes the same, but TFLite's int8 kernels get a filter
        that is not a constant wrong: measured 0.66 max error per pixel.)

        Args:
            frame: (B, H, W, C).
            kernels: (B, n, k*k), each row summing to 1.

        Returns:
            (B, H, W, C, n): the frame moved by each kernel.
        """
        k, n = self.kernel_size, self.num_kernels
        size, channels = self.frame_size, self.channels
        r = k // 2
        shifts = self.shifted_copies(frame, r, r, self._shift_kernel)    # (B, C, H, W, k*k)
        shifts = ops.reshape(shifts, (-1, channels * size * size, k * k))
        out = ops.matmul(shifts, ops.transpose(kernels, (0, 2, 1)))      # (B, C*H*W, n)
        out = ops.reshape(out, (-1, channels, size, size, n))
        return ops.transpose(out, (0, 2, 3, 1, 4))

    def get_config(self):
        return {**super().get_config(), "num_kernels": self.num_kernels}
