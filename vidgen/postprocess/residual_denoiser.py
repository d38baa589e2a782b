"""A small residual CNN that cleans a frame, seeing it with its neighbours in time."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


def neighbour_stack(clips: np.ndarray, window: int) -> np.ndarray:
    """Each frame with its `window // 2` neighbours on each side, stacked on channels.

    Args:
        clips: (N, T, H, W, C).
        window: odd number of frames seen per output frame; missing neighbours
            at the ends of a clip repeat the end frame.

    Returns:
        (N * T, H, W, window * C), the frame itself in the middle block.
    """
    n, t = clips.shape[:2]
    half = window // 2
    index = np.clip(np.arange(t)[:, None] + np.arange(-half, half + 1)[None, :], 0, t - 1)
    stacked = clips[:, index]                                  # (N, T, window, H, W, C)
    stacked = np.moveaxis(stacked, 2, -2)                      # (N, T, H, W, window, C)
    return stacked.reshape((n * t,) + clips.shape[2:4] + (window * clips.shape[-1],))


@keras.saving.register_keras_serializable(package="vidgen")
class ResidualDenoiser(keras.Model):
    """Predicts a correction added to a frame (residual learning), clipped to [0, 1].

    Fully convolutional (any frame size). Trained by `vidgen postprocess
    train-denoiser` on the project's own data: the model's generated frames
    against the true ones (a refiner for the faint grey halo predictions leave
    on black backgrounds) and true frames with added noise against the clean
    ones.

    Args:
        channels: channels of a frame (1 or 3).
        window: odd number of frames seen: the frame and `window // 2`
            neighbours on each side, stacked on channels (`neighbour_stack`).
        filters: channels of the hidden convolutions.
        depth: number of convolutions (the last one maps to `channels`).
        kernel_size: odd side of the square kernels.

    Example:

        model = ResidualDenoiser(channels=1, window=3)
        clean = model(neighbour_stack(clips, 3))   # (N * T, H, W, 1)

    Reference:
        Zhang et al., "Beyond a Gaussian denoiser: residual learning of deep
        CNN for image denoising" (DnCNN), IEEE TIP 2017.
    """

    def __init__(self, channels: int = 1, window: int = 3, filters: int = 32, depth: int = 5,
                 kernel_size: int = 3, **kwargs):
        super().__init__(**kwargs)
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3. Received: channels={channels}")
        if window <= 0 or window % 2 == 0:
            raise ValueError(f"window must be a positive odd number. Received: window={window}")
        if filters <= 0:
            raise ValueError(f"filters must be positive. Received: filters={filters}")
        if depth < 2:
            raise ValueError(f"depth must be at least 2. Received: depth={depth}")
        if kernel_size <= 0 or kernel_size % 2 == 0:
            raise ValueError(
                f"kernel_size must be a positive odd number. Received: kernel_size={kernel_size}")
        self.channels = channels
        self.window = window
        self.filters = filters
        self.depth = depth
        self.kernel_size = kernel_size
        self.hidden = [
            keras.layers.Conv2D(filters, kernel_size, padding="same", activation="relu",
                                name=f"conv{i}")
            for i in range(depth - 1)]
        # Zero-initialised output: the untrained model is the identity, so training starts
        # from "leave the frame as it is" rather than from noise.
        self.residual = keras.layers.Conv2D(channels, kernel_size, padding="same",
                                            kernel_initializer="zeros", name="residual")

    def build(self, input_shape):
        shape = tuple(input_shape)
        for layer in self.hidden:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)
        self.residual.build(shape)
        self.built = True

    def call(self, inputs):
        middle = (self.window // 2) * self.channels
        frame = inputs[..., middle:middle + self.channels]
        x = inputs
        for layer in self.hidden:
            x = layer(x)
        return ops.clip(frame + self.residual(x), 0.0, 1.0)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "window": self.window,
                "filters": self.filters, "depth": self.depth, "kernel_size": self.kernel_size}
