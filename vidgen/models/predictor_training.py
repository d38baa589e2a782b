"""The training half of `VideoPredictor`: scheduled-sampling unroll, objective, train/test steps."""

from __future__ import annotations

import keras
from keras import ops

from vidgen.models.replicas import num_replicas


class PredictorTraining:
    """`train_step` and `test_step` of `VideoPredictor` (a mixin: a model's second job).

    It uses the model's `_step`, `rollout`, `initial_states`, `seed_generator`,
    its hyper-parameters (`sampling_steps`, `context_loss_weight`,
    `latent_dim`, `kl_weight`) and the trackers its constructor makes
    (`loss_tracker`, `frame_mse_tracker`, `teacher_tracker`, `kl_tracker`).
    `VideoGAN` calls `teacher_probability`, `unroll` and `objective` too.
    """

    def teacher_probability(self, iterations=None):
        """Probability of feeding the true frame after `iterations` optimizer steps.

        Args:
            iterations: optimizer steps taken (default: this model's optimizer's).
        """
        if iterations is None:
            iterations = None if self.optimizer is None else self.optimizer.iterations
        if self.sampling_steps == 0 or iterations is None:
            return ops.convert_to_tensor(0.0)
        step = ops.cast(iterations, "float32")
        return ops.maximum(0.0, 1.0 - step / float(self.sampling_steps))

    def unroll(self, context, target, teacher_prob):
        """Training-time unroll over context and target with scheduled sampling.

        With a latent variable, every step's z comes from the posterior given
        the true next frame.

        Returns:
            (predictions of context frames 2..T, predictions of the target
            frames, mean KL(q || p) per step (0 without a latent variable)).
        """
        batch = ops.shape(context)[0]
        states = self.initial_states(batch)
        truth = ops.concatenate([context, target], axis=1)
        context_len = context.shape[1]
        kl_total = ops.convert_to_tensor(0.0)
        context_preds = []
        for t in range(context_len):
            frame, states, kl = self._step(context[:, t], states, sharp=False,
                                           next_truth=self._truth(truth, t + 1))
            kl_total = kl_total + kl
            if t < context_len - 1:
                context_preds.append(frame)
        preds = [frame]
        for t in range(1, target.shape[1]):
            draw = keras.random.uniform((batch, 1, 1, 1), seed=self.seed_generator)
            use_truth = ops.cast(draw < teacher_prob, frame.dtype)
            inputs = use_truth * target[:, t - 1] + (1.0 - use_truth) * frame
            frame, states, kl = self._step(inputs, states, sharp=False,
                                           next_truth=self._truth(truth, context_len + t))
            kl_total = kl_total + kl
            preds.append(frame)
        context_preds = ops.stack(context_preds, axis=1) if context_preds else None
        steps = context_len + target.shape[1] - 1
        return context_preds, ops.stack(preds, axis=1), kl_total / float(steps)

    def _truth(self, truth, t):
        """The true frame t for the posterior (None for a deterministic model)."""
        return truth[:, t] if self.latent_dim else None

    def objective(self, loss_fn, context, target, context_preds, preds, kl=None):
        """Loss of an unroll: predicted targets, weighted context steps and the weighted KL.

        The KL term is reduced by hand, so it is divided by the number of
        replicas (keras Loss objects scale themselves) to keep the summed
        gradients under tf.distribute those of the global batch.
        """
        loss = loss_fn(target, preds)
        if context_preds is not None and self.context_loss_weight:
            loss = loss + self.context_loss_weight * loss_fn(context[:, 1:], context_preds)
        if self.latent_dim and kl is not None and self.kl_weight:
            loss = loss + self.kl_weight * kl / float(num_replicas())
        return loss

    def train_step(self, data):
        import tensorflow as tf

        context, target, _ = keras.utils.unpack_x_y_sample_weight(data)
        teacher_prob = self.teacher_probability()
        with tf.GradientTape() as tape:
            context_preds, preds, kl = self.unroll(context, target, teacher_prob)
            loss = self.objective(self.loss, context, target, context_preds, preds, kl)
            # A LossScaleOptimizer (mixed_float16) scales; other optimizers return loss.
            scaled = self.optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, self.trainable_variables)
        self.optimizer.apply(grads, self.trainable_variables)
        # The loss objects scale by 1 / replicas; the tracker shows the global value.
        self.loss_tracker.update_state(loss * float(num_replicas()))
        self.teacher_tracker.update_state(teacher_prob)
        trackers = [self.loss_tracker, self.teacher_tracker]
        if self.latent_dim:
            self.kl_tracker.update_state(kl)
            trackers.append(self.kl_tracker)
        return {m.name: m.result() for m in trackers}

    def validation_losses(self, loss_fn, context, target):
        """(global loss, per-frame MSE) of a full autoregressive rollout over `target`.

        Honest validation: no true frame after the context is ever fed back.
        """
        preds = self.rollout(context, target.shape[1])
        loss = loss_fn(target, preds) * float(num_replicas())  # loss objects scale by 1/N
        return loss, ops.mean(ops.sum(ops.square(preds - target), axis=(2, 3, 4)))

    def test_step(self, data):
        context, target, _ = keras.utils.unpack_x_y_sample_weight(data)
        loss, frame_mse = self.validation_losses(self.loss, context, target)
        self.loss_tracker.update_state(loss)
        self.frame_mse_tracker.update_state(frame_mse)
        return {m.name: m.result() for m in (self.loss_tracker, self.frame_mse_tracker)}

    @property
    def metrics(self):
        return [self.loss_tracker, self.frame_mse_tracker, self.teacher_tracker, self.kl_tracker]
