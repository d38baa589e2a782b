"""A convolutional GRU cell, stepped explicitly: (x, [h]) -> (h, [h])."""

from __future__ import annotations

import keras
from keras import ops

from vidgen.models.checks import check_cell_arguments


@keras.saving.register_keras_serializable(package="vidgen")
class ConvGRUCell(keras.layers.Layer):
    """One step of a convolutional GRU (Keras has no ConvGRU2D).

    Three gates instead of the LSTM's four and one state instead of two: about
    25% fewer recurrent FLOPs and half the state to stream on edge devices.

    Args:
        filters: channels of the hidden state.
        kernel_size: side of the square gate convolutions.

    Reference:
        Ballas et al., "Delving Deeper into Convolutional Networks for
        Learning Video Representations", ICLR 2016.

    Example:

        cell = ConvGRUCell(32)
        h, states = cell(x, cell.initial_states(x))
    """

    num_states = 1

    def __init__(self, filters: int, kernel_size: int = 3, **kwargs):
        super().__init__(**kwargs)
        check_cell_arguments(filters, kernel_size)
        self.filters = filters
        self.kernel_size = kernel_size
        self.gates = keras.layers.Conv2D(2 * filters, kernel_size, padding="same", name="gates")
        self.candidate = keras.layers.Conv2D(filters, kernel_size, padding="same",
                                             name="candidate")

    def build(self, input_shape):
        shape = tuple(input_shape[:-1]) + (input_shape[-1] + self.filters,)
        self.gates.build(shape)
        self.candidate.build(shape)

    def initial_states(self, x):
        shape = ops.shape(x)
        return [ops.zeros((shape[0], shape[1], shape[2], self.filters), dtype=x.dtype)]

    def call(self, x, states):
        (h,) = states
        z, r = ops.split(ops.sigmoid(self.gates(ops.concatenate([x, h], axis=-1))), 2, axis=-1)
        n = ops.tanh(self.candidate(ops.concatenate([x, r * h], axis=-1)))
        h = (1.0 - z) * h + z * n
        return h, [h]

    def compute_output_spec(self, x, states):
        spec = keras.KerasTensor(tuple(x.shape[:-1]) + (self.filters,), dtype=x.dtype)
        return spec, [spec]

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": self.kernel_size}
