"""What every motion head shares: moving a frame's pixels by per-pixel offsets."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


def hard(logits):
    """One-hot of the largest logit along the last axis (a "sharp" softmax)."""
    return ops.one_hot(ops.argmax(logits, axis=-1), logits.shape[-1], dtype=logits.dtype)


def composite(moved, maps, sharp: bool):
    """mask * moved + (1 - mask) * generated; `maps` holds the mask logit, then pixel logits."""
    mask = ops.sigmoid(maps[..., :1])
    mask = ops.round(mask) if sharp else mask
    return mask * moved + (1.0 - mask) * ops.sigmoid(maps[..., 1:])


def one_hot_kernels(kernel_size: int):
    """The fixed one-hot kernels of every offset: (k x k, rows k x 1, columns 1 x k)."""
    k = kernel_size
    eye = np.eye(k * k, dtype="float32")
    square = ops.convert_to_tensor(eye.reshape(k, k, 1, k * k))
    eye = np.eye(k, dtype="float32")
    rows = ops.convert_to_tensor(eye.reshape(k, 1, 1, k))
    columns = ops.convert_to_tensor(eye.reshape(1, k, 1, k))
    return square, rows, columns


class MotionHead(keras.layers.Layer):
    """Base of the heads that turn decoder maps into the next frame by moving the last one.

    A head is called as `head(frame, maps, features, sharp=False)`: `frame`
    (B, H, W, C) is the latest frame, `maps` (B, H, W, `num_maps`) the
    decoder's output, `features` (B, H/4, W/4, F) the recurrent features
    (only "cdna" reads them). It returns the next frame (B, H, W, C) in [0, 1].

    Args:
        frame_size: height and width of the (square) frames.
        channels: channels of the frames.
        kernel_size: side of the motion kernels (odd): the largest motion per
            frame is kernel_size // 2 pixels.
    """

    def __init__(self, frame_size: int, channels: int, kernel_size: int = 9, **kwargs):
        super().__init__(**kwargs)
        if frame_size <= 0:
            raise ValueError(f"frame_size must be positive. Received: frame_size={frame_size}")
        if channels <= 0:
            raise ValueError(f"channels must be positive. Received: channels={channels}")
        if kernel_size <= 0 or kernel_size % 2 == 0:
            raise ValueError("kernel_size must be a positive odd number. "
                             f"Received: kernel_size={kernel_size}")
        self.frame_size = frame_size
        self.channels = channels
        self.kernel_size = kernel_size
        self._shift_kernel, self._row_kernel, self._column_kernel = one_hot_kernels(kernel_size)

    @classmethod
    def count_maps(cls, channels: int, kernel_size: int, num_kernels: int = 0) -> int:
        """Maps per pixel a head of this class with these arguments reads from the decoder.

        A class method, so the decoder can be made before the head (the order in
        which layers are made is the order their initialisers draw seeds).
        """
        raise NotImplementedError

    @property
    def num_maps(self) -> int:
        """Maps per pixel this head reads from the decoder."""
        return self.count_maps(self.channels, self.kernel_size)

    def initialize_maps(self, conv) -> None:
        """Sets the initial weights of `conv`, the decoder's last convolution (default: as is).

        `conv` emits 2x2 blocks of the `num_maps` maps (sub-pixel convolution).
        """

    def build(self, frame_shape, maps_shape, features_shape=None):
        self.built = True

    def compute_output_shape(self, frame_shape, maps_shape, features_shape=None):
        return tuple(frame_shape)

    def advect(self, frame, weights):
        """Moves pixels of `frame` (B, H, W, C) by per-pixel kernels `weights` (B, H, W, k*k).

        Output pixel (y, x) is sum_j weights[y, x, j] * frame[y + dy_j, x + dx_j]
        over the k*k offsets (dy, dx) in [-k//2, k//2], the frame mirrored at
        its borders.
        """
        r = self.kernel_size // 2
        return self.weighted_shifts(frame, weights, r, r, self._shift_kernel)

    def shift(self, frame, weights, axis: int):
        """Moves pixels of `frame` along one axis by per-pixel 1-D kernels `weights` (..., k).

        Output pixel p is sum_j weights[p, j] * frame[p + (j - k//2) along `axis`],
        the frame mirrored at its borders. Two passes (rows, then columns) make a
        separable k x k motion kernel per pixel at 2k instead of k*k taps.
        """
        r = self.kernel_size // 2
        if axis == 1:
            return self.weighted_shifts(frame, weights, r, 0, self._row_kernel)
        return self.weighted_shifts(frame, weights, 0, r, self._column_kernel)

    def shifted_copies(self, frame, pad_rows: int, pad_cols: int, kernel):
        """Every shift of `frame` (B, H, W, C) given by a one-hot `kernel`: (B, C, H, W, taps).

        All shifted copies come from one convolution with the fixed one-hot
        `kernel`, which is far faster to differentiate than one slice per
        offset, and converts to TFLite (also int8) with builtin ops.
        """
        size, channels = self.frame_size, self.channels
        taps = kernel.shape[-1]
        pad = [[0, 0], [pad_rows, pad_rows], [pad_cols, pad_cols], [0, 0]]
        padded = ops.pad(frame, pad, mode="symmetric")
        # Channels into the batch: one single-channel convolution for every channel.
        padded = ops.reshape(ops.transpose(padded, (0, 3, 1, 2)),
                             (-1, size + 2 * pad_rows, size + 2 * pad_cols, 1))
        shifts = ops.conv(padded, kernel, padding="valid")
        return ops.reshape(shifts, (-1, channels, size, size, taps))

    def weighted_shifts(self, frame, weights, pad_rows: int, pad_cols: int, kernel):
        """sum_j weights[..., j] * (frame shifted by offset j); offsets from a one-hot kernel."""
        shifts = self.shifted_copies(frame, pad_rows, pad_cols, kernel)
        moved = ops.sum(shifts * ops.expand_dims(weights, 1), axis=-1)
        return ops.transpose(moved, (0, 2, 3, 1))

    def get_config(self):
        return {**super().get_config(), "frame_size": self.frame_size,
                "channels": self.channels, "kernel_size": self.kernel_size}
