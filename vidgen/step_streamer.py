"""`StepStreamer`: a model's one-step function fed one frame at a time, its states kept."""

from __future__ import annotations

import numpy as np
import tensorflow as tf


class StepStreamer:
    """`model.step` traced once, for batch 1 and the model's frame shape, with its states kept.

    A latent-variable model predicts with z at its prior's mean (zero noise):
    the most likely next frame, the same on every run.

    Args:
        model: a `VideoPredictor` (anything with `step`, `state_shapes`,
            `frame_size`, `channels`, `noise_shape`).

    Example:

        streamer = StepStreamer(model)
        for frame in frames:                 # (H, W, C) float32 in [0, 1]
            next_frame = streamer(frame)     # the prediction of the frame after `frame`
    """

    def __init__(self, model):
        self.model = model
        size, channels = model.frame_size, model.channels
        state_specs = [tf.TensorSpec((1,) + tuple(s), tf.float32) for s in model.state_shapes]
        noise_shape = getattr(model, "noise_shape", None)
        noise = None if noise_shape is None else tf.zeros((1,) + tuple(noise_shape))

        def step(frame, states):
            return model.step(frame, list(states), noise=noise)

        self._step = tf.function(step, input_signature=[
            tf.TensorSpec((1, size, size, channels), tf.float32), state_specs])
        self.reset()

    def reset(self) -> None:
        """Starts a new video: zero recurrent states."""
        self.states = [tf.zeros((1,) + tuple(s)) for s in self.model.state_shapes]

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """Feeds one frame (H, W, C) in [0, 1]; returns the prediction of the next (H, W, C)."""
        prediction, self.states = self._step(np.asarray(frame, np.float32)[None], self.states)
        return np.asarray(prediction)[0]
