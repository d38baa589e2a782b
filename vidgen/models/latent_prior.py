"""The stochastic latent of `VideoPredictor`: a learned prior and the training posterior."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="vidgen")
class LatentPrior(keras.layers.Layer):
    """z_t ~ p(z_t | past) at inference, q(z_t | past, true next frame) in training (SVG-LP).

    Two convolutions give the mean and log-variance of a Gaussian over a
    `latent_dim` vector: the prior from the recurrent features (the past),
    the posterior from those features joined with the encoder's features of
    the true next frame. Both are averaged over space: z is one vector per
    clip and step (SVG's global latent), broadcast over the 1/4-resolution
    grid. (A spatial z, one per cell, was measured to smuggle the next frame
    through the posterior: training loss fell, rollouts stayed at the
    black-frame level, for any KL weight that left it useful.)

    Called as `latent(hidden, noise, truth_features=None)`: `hidden`
    (B, h, w, F) the recurrent features, `noise` standard normal
    (B, 1, 1, latent_dim), `truth_features` (B, h, w, E) or None. Returns
    (z broadcast to (B, h, w, latent_dim), KL(q || p) summed over z and
    averaged over the batch; 0 without `truth_features`).

    Args:
        latent_dim: size of z_t.

    Reference:
        Denton & Fergus, "Stochastic Video Generation with a Learned Prior",
        ICML 2018.

    Example:

        latent = LatentPrior(4)
        z, kl = latent(hidden, noise, truth_features)
    """

    def __init__(self, latent_dim: int, **kwargs):
        super().__init__(**kwargs)
        if latent_dim <= 0:
            raise ValueError(f"latent_dim must be positive. Received: latent_dim={latent_dim}")
        self.latent_dim = latent_dim
        self.prior_net = keras.layers.Conv2D(2 * latent_dim, 3, padding="same", name="prior")
        self.posterior_net = keras.layers.Conv2D(2 * latent_dim, 3, padding="same",
                                                 name="posterior")

    def build(self, hidden_shape, noise_shape=None, truth_features_shape=None):
        self.prior_net.build(tuple(hidden_shape))
        features = hidden_shape[-1] + truth_features_shape[-1]
        self.posterior_net.build(tuple(hidden_shape[:-1]) + (features,))
        self.built = True

    def _moments(self, net, x):
        """(mean, log-variance) of one Gaussian, averaged over space and bounded."""
        moments = ops.mean(ops.cast(net(x), "float32"), axis=(1, 2), keepdims=True)
        moments = ops.clip(moments, -10.0, 10.0)
        return moments[..., :self.latent_dim], moments[..., self.latent_dim:]

    def call(self, hidden, noise, truth_features=None):
        mu_p, logvar_p = self._moments(self.prior_net, hidden)
        mu, logvar, kl = mu_p, logvar_p, ops.convert_to_tensor(0.0)
        if truth_features is not None:
            mu, logvar = self._moments(self.posterior_net,
                                       ops.concatenate([hidden, truth_features], axis=-1))
            kl = 0.5 * (logvar_p - logvar
                        + (ops.exp(logvar) + ops.square(mu - mu_p)) / ops.exp(logvar_p) - 1.0)
            kl = ops.mean(ops.sum(kl, axis=(1, 2, 3)))
        z = mu + ops.exp(0.5 * logvar) * noise                      # (B, 1, 1, latent)
        return z * ops.ones_like(hidden[..., :1]), kl

    def compute_output_spec(self, hidden, noise, truth_features=None):
        shape = tuple(hidden.shape[:-1]) + (self.latent_dim,)
        return keras.KerasTensor(shape, dtype="float32"), keras.KerasTensor((), dtype="float32")

    def get_config(self):
        return {**super().get_config(), "latent_dim": self.latent_dim}
