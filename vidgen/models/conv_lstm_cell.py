"""A convolutional LSTM cell, stepped explicitly: (x, [h, c]) -> (h, [h, c])."""

from __future__ import annotations

import keras
from keras import ops

from vidgen.models.checks import check_cell_arguments


@keras.saving.register_keras_serializable(package="vidgen")
class ConvLSTMCell(keras.layers.Layer):
    """One step of a convolutional LSTM.

    The gates are convolutions of the input and the previous hidden state, so
    the state keeps its spatial layout. The cell is a plain layer called once
    per time step, which makes the recurrent state explicit: the streaming
    `step(frame, states)` of `VideoPredictor` and its TFLite export pass it in
    and out.

    Args:
        filters: channels of the hidden and cell state.
        kernel_size: side of the square gate convolutions.
        forget_bias: added to the forget gate at initialisation so that
            early training remembers (Jozefowicz et al. 2015).

    Reference:
        Shi et al., "Convolutional LSTM Network: A Machine Learning Approach
        for Precipitation Nowcasting", NeurIPS 2015.

    Example:

        cell = ConvLSTMCell(32)
        h, states = cell(x, cell.initial_states(x))   # x: (batch, H, W, C)
    """

    num_states = 2

    def __init__(self, filters: int, kernel_size: int = 3, forget_bias: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        check_cell_arguments(filters, kernel_size)
        self.filters = filters
        self.kernel_size = kernel_size
        self.forget_bias = forget_bias
        self.gates = keras.layers.Conv2D(4 * filters, kernel_size, padding="same", name="gates")

    def build(self, input_shape):
        channels = input_shape[-1] + self.filters
        self.gates.build(tuple(input_shape[:-1]) + (channels,))
        bias = self.gates.bias
        values = ops.convert_to_numpy(bias)
        values[self.filters:2 * self.filters] += self.forget_bias
        bias.assign(values)

    def initial_states(self, x):
        """Zero states for an input batch `x` (batch, H, W, C)."""
        shape = ops.shape(x)
        zeros = ops.zeros((shape[0], shape[1], shape[2], self.filters), dtype=x.dtype)
        return [zeros, zeros]

    def call(self, x, states):
        h, c = states
        z = self.gates(ops.concatenate([x, h], axis=-1))
        i, f, g, o = ops.split(z, 4, axis=-1)
        c = ops.sigmoid(f) * c + ops.sigmoid(i) * ops.tanh(g)
        h = ops.sigmoid(o) * ops.tanh(c)
        return h, [h, c]

    def compute_output_spec(self, x, states):
        shape = tuple(x.shape[:-1]) + (self.filters,)
        # Two tensors: one spec for both would make h and c one tensor of a functional model.
        h = keras.KerasTensor(shape, dtype=x.dtype)
        c = keras.KerasTensor(shape, dtype=x.dtype)
        return h, [h, c]

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": self.kernel_size, "forget_bias": self.forget_bias}
