"""Spectral normalisation of a convolution that is safe under tf.distribute."""

from __future__ import annotations

import keras
from keras import ops


def _normalize(x):
    return x / ops.maximum(ops.sqrt(ops.sum(ops.square(x))), 1e-12)


@keras.saving.register_keras_serializable(package="vidgen")
class SpectralNormConv(keras.layers.SpectralNormalization):
    """`keras.layers.SpectralNormalization` for convolutions, without in-place kernel writes.

    Keras' layer writes the normalised kernel into the trainable kernel
    variable in every training-mode call, so a generator step that runs the
    critic in training mode silently rewrites the critic's weights, and under
    MirroredStrategy every such write is a cross-replica assignment. Here the
    kernel variable is only ever changed by the optimizer: the convolution
    uses W / sigma(W), computed on the fly (gradients flow through sigma as in
    Miyato et al.), and u lives in a replica-local variable that every
    replica updates identically from the same mirrored W.

    Args:
        layer: a keras convolution layer (Conv1D/2D/3D).
        power_iterations: power-iteration steps per training call.

    Reference:
        Miyato et al., "Spectral Normalization for Generative Adversarial
        Networks", ICLR 2018.

    Example:

        conv = SpectralNormConv(keras.layers.Conv2D(64, 4, strides=2, padding="same"))
    """

    def build(self, input_shape):
        keras.layers.Wrapper.build(self, input_shape)
        if not hasattr(self.layer, "convolution_op"):
            raise ValueError("SpectralNormConv wraps a convolution layer. "
                             f"Received: {type(self.layer).__name__}")
        self.kernel = self.layer.kernel
        self.kernel_shape = self.kernel.shape
        self.vector_u = keras.Variable(
            keras.initializers.TruncatedNormal(stddev=0.02)((1, self.kernel_shape[-1])),
            trainable=False, name="vector_u", aggregation="only_first_replica",
            synchronization="on_read")

    def call(self, inputs, training=False):
        weights = ops.reshape(self.kernel, (-1, self.kernel_shape[-1]))
        u = self.vector_u.value
        for _ in range(self.power_iterations):
            v = _normalize(ops.matmul(u, ops.transpose(weights)))
            u = _normalize(ops.matmul(v, weights))
        u, v = ops.stop_gradient(u), ops.stop_gradient(v)
        sigma = ops.matmul(ops.matmul(v, weights), ops.transpose(u))
        if training:
            self.vector_u.assign(u)
        layer = self.layer
        out = layer.convolution_op(inputs, ops.divide(self.kernel, ops.reshape(sigma, ())))
        if layer.use_bias:
            out = out + layer.bias
        return layer.activation(out) if layer.activation is not None else out
