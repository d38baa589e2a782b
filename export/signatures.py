"""TensorFlow functions behind every exported signature, built from a VideoPredictor.

The functions only call the model's public `observe` and `step`, so what a
server or a phone runs is the computation `VideoPredictor.rollout` runs.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import tensorflow as tf

from export import contract as C


def tensor_specs(infos: dict[str, C.TensorInfo]) -> list:
    """tf.TensorSpecs named after the contract, in contract order."""
    return [tf.TensorSpec(info.shape, tf.as_dtype(info.dtype), name=name)
            for name, info in infos.items()]


def dynamic_rollout(model, context, horizon):
    """`model.rollout` with a tensor horizon: a while loop, so one graph serves every horizon.

    Args:
        model: a VideoPredictor.
        context: float32 (batch, time >= 1, H, W, C).
        horizon: int32 (batch,), every value the same, in [1, contract.MAX_HORIZON]: one
            value per clip, so TF Serving's batching can concatenate it like the context.

    Returns:
        float32 (batch, horizon, H, W, C).
    """
    # Checked one after the other, so a request breaking several rules always gets the
    # message of the first (the graph would otherwise report whichever assert ran first).
    checks = [
        lambda: tf.debugging.assert_greater_equal(
            tf.shape(context)[0], 1, message=f"{C.CONTEXT} must hold at least one clip"),
        lambda: tf.debugging.assert_greater_equal(
            tf.shape(context)[1], 1, message=f"{C.CONTEXT} must hold at least one frame"),
        lambda: tf.debugging.assert_equal(
            tf.size(horizon), tf.shape(context)[0],
            message=f"{C.HORIZON} must hold one value per clip of {C.CONTEXT}: shape (batch,)"),
        lambda: tf.debugging.assert_equal(
            horizon, horizon[0],
            message=f"{C.HORIZON} must hold the same value for every clip of the batch (TF "
                    "Serving's batching concatenates the horizons of the requests it merges: "
                    "send one horizon per deployment)"),
        lambda: tf.debugging.assert_greater_equal(
            horizon[0], 1, message=f"{C.HORIZON} must be >= 1"),
        lambda: tf.debugging.assert_less_equal(
            horizon[0], C.MAX_HORIZON, message=f"{C.HORIZON} must be <= {C.MAX_HORIZON}"),
    ]
    deps = []
    for check in checks:
        with tf.control_dependencies(deps):
            deps = [check()]
    with tf.control_dependencies(deps):
        context = tf.identity(context)
        horizon = tf.identity(horizon[0])
    frame, states = model.observe(context)
    frames = tf.TensorArray(tf.float32, size=horizon,
                            element_shape=tf.TensorShape([None, *frame.shape[1:]]))
    frames = frames.write(0, frame)

    def body(i, frame, states, frames):
        frame, states = model.step(frame, states)
        return i + 1, frame, states, frames.write(i, frame)

    _, _, _, frames = tf.while_loop(lambda i, *_: i < horizon, body,
                                    (tf.constant(1), frame, states, frames))
    # The returned frames carry the model's output floor, as `rollout`'s do; the
    # fed-back ones (and the streaming step's) do not.
    return model.apply_floor(tf.transpose(frames.stack(), (1, 0, 2, 3, 4)))


def serving_functions(model) -> dict[str, tuple[Callable, list]]:
    """The SavedModel endpoints: signature key -> (function, input signature)."""
    spec = C.for_model(model)

    def predict(context, horizon):
        return {C.FRAMES: dynamic_rollout(model, context, horizon)}

    def predict_uint8(context, horizon):
        frames = dynamic_rollout(model, tf.cast(context, tf.float32) / 255.0, horizon)
        return {C.FRAMES: tf.cast(tf.round(frames * 255.0), tf.uint8)}

    return {
        C.SERVING_DEFAULT: (predict, tensor_specs(spec.inputs(C.SERVING_DEFAULT))),
        C.PREDICT_UINT8: (predict_uint8, tensor_specs(spec.inputs(C.PREDICT_UINT8))),
        C.STEP: (step_function(model), tensor_specs(spec.inputs(C.STEP))),
    }


def step_function(model) -> Callable:
    """(frame, *states[, noise]) -> {next_frame, state_0, ...}: the streaming step.

    A stochastic model takes its latent noise as the last input, so the
    caller controls the randomness (and can reproduce a future).
    """
    names = C.for_model(model).state_names()

    def step(frame, *inputs):
        states, noise = list(inputs[:len(names)]), None
        if model.noise_shape:
            noise = inputs[len(names)]
        next_frame, new_states = model.step(frame, states, noise=noise)
        return {C.NEXT_FRAME: next_frame, **dict(zip(names, new_states))}

    return step


def sequence_function(model, context: int, horizon: int) -> Callable:
    """context (batch, `context`, H, W, C) -> {frames}: the rollout unrolled for fixed lengths.

    Python loops instead of a while loop: TFLite's int8 calibration does not
    handle the while-loop form of a recurrent graph (measured: it crashes).
    """
    def sequence(context_frames, noise=None):
        return {C.FRAMES: model.unrolled_rollout(context_frames[:, :context], horizon, noise)}

    return sequence


def write_archive(model, path: str, endpoints: dict[str, tuple[Callable, list]]) -> None:
    """Writes a SavedModel with exactly `endpoints` as its signatures (and the model's variables).

    `keras.export.ExportArchive` tracks the model's variables, which TF's
    session-based loader (the one TF Serving uses) needs: a plain tf.Module
    that does not track them fails there with "Could not find variable".
    """
    archive = keras.export.ExportArchive()
    archive.track(model)
    for name, (fn, signature) in endpoints.items():
        archive.add_endpoint(name, fn, input_signature=signature)
    archive.write_out(path, verbose=False)
