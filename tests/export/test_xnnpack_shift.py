"""The export's 1-D shifts by slices (export.xnnpack) equal the heads' one-hot convolution."""

import warnings

import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from export.xnnpack import CONCAT_INPUTS, delegation, undelegated_ops, xnnpack_copy
from tests.tiny import TINY_MODEL
from vidgen.models import VideoPredictor

SIZE, CHANNELS = 8, 3
HEADS = {"flow": "FlowHead", "sdna": "SDNAHead"}


def _model(head: str, kernel_size: int) -> VideoPredictor:
    return VideoPredictor(**{**TINY_MODEL, "frame_size": SIZE, "channels": CHANNELS,
                             "head": head, "dna_kernel": kernel_size})


def _inputs(seed: int, kernel_size: int, batch: int = 2):
    """A frame in [0, 1] and per-pixel 1-D kernels as the flow head makes them."""
    rng = np.random.default_rng(seed)
    r = kernel_size // 2
    frame = rng.random((batch, SIZE, SIZE, CHANNELS)).astype(np.float32)
    flow = rng.uniform(-r, r, (batch, SIZE, SIZE, 1))
    weights = np.maximum(0.0, 1.0 - np.abs(flow - np.arange(-r, r + 1))).astype(np.float32)
    return frame, weights


@pytest.mark.parametrize("head", sorted(HEADS))
@pytest.mark.parametrize("axis", [1, 2])
# 3 taps: one CONCATENATION; 11: a tree of them (at most CONCAT_INPUTS inputs each).
@pytest.mark.parametrize("kernel_size", [3, 11])
def test_shift_by_slices_equals_the_one_hot_convolution(head, axis, kernel_size):
    assert kernel_size > CONCAT_INPUTS or kernel_size == 3
    model = _model(head, kernel_size)
    original, fast = model.frame_head, xnnpack_copy(model).frame_head
    assert type(fast).__name__ == HEADS[head]
    assert "weighted_shifts" in vars(fast) and "weighted_shifts" not in vars(original)
    frame, weights = _inputs(kernel_size + axis, kernel_size)
    want = np.asarray(original.shift(frame, weights, axis=axis))
    got = np.asarray(fast.shift(tf.constant(frame), tf.constant(weights), axis=axis))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    # Every single tap (a pure copy of the frame shifted by one offset, mirrored at the
    # borders) is bit-identical.
    for tap in (0, kernel_size // 2 + 1, kernel_size - 1):
        one_hot = np.zeros_like(weights)
        one_hot[..., tap] = 1.0
        np.testing.assert_array_equal(np.asarray(fast.shift(frame, one_hot, axis=axis)),
                                      np.asarray(original.shift(frame, one_hot, axis=axis)))


def test_conv_option_keeps_the_one_hot_convolution():
    fast = xnnpack_copy(_model("flow", 3), shift="conv").frame_head
    assert "weighted_shifts" not in vars(fast) and "shifted_copies" in vars(fast)
    with pytest.raises(ValueError, match="shift must be one of"):
        xnnpack_copy(_model("flow", 3), shift="gather")


def _tflite(function, specs, int8: bool, samples) -> bytes:
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [tf.function(function).get_concrete_function(*specs)])
    if int8:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([*s] for s in samples)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # int8 calibration: tf.lite's deprecated interpreter
        return converter.convert()


def _run(content: bytes, frame, weights):
    interpreter = Interpreter(model_content=content)
    interpreter.allocate_tensors()
    for d in interpreter.get_input_details():
        interpreter.set_tensor(d["index"], frame if d["shape"][-1] == CHANNELS else weights)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


@pytest.mark.parametrize("axis", [1, 2])
def test_shift_by_slices_in_tflite_matches_and_stays_in_xnnpack(axis):
    kernel_size = 7
    model = _model("flow", kernel_size)
    original, fast = model.frame_head, xnnpack_copy(model).frame_head
    specs = [tf.TensorSpec((1, SIZE, SIZE, CHANNELS), tf.float32),
             tf.TensorSpec((1, SIZE, SIZE, kernel_size), tf.float32)]
    samples = [_inputs(seed, kernel_size, batch=1) for seed in range(4)]
    frame, weights = _inputs(9, kernel_size, batch=1)
    want = np.asarray(original.shift(frame, weights, axis=axis))
    content = _tflite(lambda f, w: fast.shift(f, w, axis=axis), specs, False, samples)
    assert undelegated_ops(content) == [] and delegation(content)[1] == 1
    np.testing.assert_allclose(_run(content, frame, weights), want, atol=1e-6)
    # int8: the rewrite's error is quantization error, no larger than that of the export's
    # previous formulation (the one-hot convolution, its padding as a matrix product).
    errors = {}
    for name, head in (("slices", fast), ("conv", xnnpack_copy(model, shift="conv").frame_head)):
        content = _tflite(lambda f, w, head=head: head.shift(f, w, axis=axis), specs, True,
                          samples)
        assert undelegated_ops(content) == [] and delegation(content)[1] == 1
        errors[name] = np.abs(_run(content, frame, weights) - want)
    assert errors["slices"].max() < 0.05, errors["slices"].max()
    assert errors["slices"].mean() <= 1.5 * errors["conv"].mean() + 1e-3, {
        k: float(e.mean()) for k, e in errors.items()}
