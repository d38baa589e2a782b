"""The step model written so that LiteRT's default XNNPACK delegate runs every op.

An op without an XNNPACK kernel in the dtype it runs in falls back to the
builtin kernel and splits the graph into several delegate partitions. In
the plain export that is MIRROR_PAD (every dtype) and, in int8, SOFTMAX,
MINIMUM/MAXIMUM, ABS and RELU: the int8 step model was then no faster than
float32 (bench/tflite_ops/REPORT.md measures it op by op). The export
traces the same weights with these substitutions instead:

- every export (`xnnpack_copy`): the mirror padding of the motion head
  (`MotionHead.shifted_copies`) -> one FULLY_CONNECTED per padded axis with
  a constant 0/1 matrix, bit-identical in float32 (0/1 weights are exact in
  int8 too);
- every export (`xnnpack_copy`, `shift="slices"`, the default): the 1-D
  shifts of the "sdna" and "flow" heads (`MotionHead.shift`) -> the padded
  frame's k slices, concatenated (`CONCAT_INPUTS` at a time) along a taps
  axis in front of the rows, and the weighted sum over that axis. The
  one-hot convolution it replaces is pure data movement, and XNNPACK's int8
  CONV_2D with one input channel and k outputs is 4-20x slower than its
  float32 one (the natural preset's two 17-tap convolutions took most of the
  int8 step, which was slower than float32; bench/tflite_ops/REPORT.md);
  slices and concatenations copy contiguous rows (same values, and in int8
  the same scale, as the frame's).
  The products and their sum are the original's, summed in another order
  (float32: equal up to rounding). The 2-D shifts ("dna", "cdna": k*k taps)
  keep the convolution;
- every export (`xnnpack_ops`): softmax -> elu(x - max) + 1 normalised by
  its sum. elu(y) + 1 == exp(y) for y <= 0, so this is the same function up
  to float rounding; written with ELU because the converter fuses
  exp(x - max) / sum back into SOFTMAX (slow in XNNPACK on 9-wide rows in
  float32, absent in int8). In an int8 model the division is left float32
  (`FLOAT_OPS`: the builtin int8 DIV costs milliseconds), and so is the
  "cdna" head's BATCH_MATMUL of two activations (the delegate takes it in
  float32, not in int8). The selective quantization that does so keeps
  float I/O, so an int8 model with integer I/O (`io="int8"|"uint8"`) keeps
  the plain softmax and BATCH_MATMUL in int8, outside XNNPACK;
- int8 only: clip(maps, -15, 15) -> identity (an int8 tensor saturates at
  its calibrated range anyway), clip(x, 0, 1) -> 1 - relu(1 - relu(x)) (the
  RELUs fuse into the ADD/SUB before them), abs -> leaky_relu(x, alpha=-1).
  These change float values outside the calibrated range only, so they are
  not used for float models.

`delegation` reads the interpreter's execution plan to tell which ops the
delegate took; the tests and bench/tflite_ops.py use it.

Example:

    fast = xnnpack_copy(model)
    with xnnpack_ops(int8=True):
        signatures.write_archive(fast, path, {C.STEP: endpoint})
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator

import numpy as np
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter
from keras import ops

from vidgen.models import VideoPredictor, cdna_head, dna_head, flow_head, sdna_head
from vidgen.models import video_predictor as video_predictor_module
from vidgen.models.motion_head import MotionHead

# The modules whose `ops` calls `xnnpack_ops` redirects: the predictor (the maps' clip) and
# the heads (softmax, clip, abs).
TRACED_MODULES = (video_predictor_module, cdna_head, dna_head, sdna_head, flow_head)

# Inputs of one CONCATENATION that XNNPACK's delegate takes (it refuses more).
CONCAT_INPUTS = 5

# How `xnnpack_copy` makes the 1-D shifts: "slices" (the export's) or "conv", the one-hot
# convolution of `MotionHead.shifted_copies` (the export before the slices; bench/tflite_ops.py).
SHIFTS = ("slices", "conv")

# Ops an int8 model keeps in float32 (selective quantization); DEQUANTIZE/QUANTIZE
# around them run in XNNPACK. DIV: the ELU softmax's normalisation. BATCH_MATMUL: the
# "cdna" head's per-clip kernels, a product of two activations, which the delegate takes
# in float32 but not in int8.
FLOAT_OPS = ("DIV", "BATCH_MATMUL")


def mirror_pad_matrix(size: int, radius: int) -> np.ndarray:
    """0/1 matrix (size, size + 2 * radius): row vector @ it = the row padded symmetrically.

    Column q selects input index q - radius, mirrored at the borders as
    `ops.pad(mode="symmetric")` does (-1 -> 0, size -> size - 1).

    Args:
        size: length of the row.
        radius: elements added on each side.

    Returns:
        float32 array of shape (size, size + 2 * radius).
    """
    matrix = np.zeros((size, size + 2 * radius), np.float32)
    for q in range(size + 2 * radius):
        i = q - radius
        i = -i - 1 if i < 0 else (2 * size - 1 - i if i >= size else i)
        matrix[i, q] = 1.0
    return matrix


def _shifted_copies_by_matmul(head: MotionHead, frame, pad_rows: int, pad_cols: int, kernel):
    """`MotionHead.shifted_copies`, with the mirror padding as matrix products.

    The head pads the frame symmetrically and convolves with one-hot kernels;
    MIRROR_PAD runs outside XNNPACK in every dtype. A constant 0/1 matrix
    applied along each padded axis pads the same way (bit for bit in float32)
    as one FULLY_CONNECTED per axis, which XNNPACK runs in float32 and int8;
    the one-hot convolution stays.
    """
    size, channels = head.frame_size, head.channels
    if pad_rows and pad_cols:   # "dna", "cdna": columns, then rows
        x = _pad_last_axis(ops.transpose(frame, (0, 3, 1, 2)), size, pad_cols)
        x = _pad_last_axis(ops.transpose(x, (0, 1, 3, 2)), size, pad_rows)
        padded = ops.transpose(x, (0, 1, 3, 2))                 # (B, C, H + 2r, W + 2r)
    elif pad_cols:              # "sdna", "flow": one axis at a time
        padded = _pad_last_axis(ops.transpose(frame, (0, 3, 1, 2)), size, pad_cols)
    else:
        padded = _pad_last_axis(ops.transpose(frame, (0, 3, 2, 1)), size, pad_rows)
        padded = ops.transpose(padded, (0, 1, 3, 2))            # (B, C, H + 2r, W)
    padded = ops.reshape(padded, (-1, padded.shape[2], padded.shape[3], 1))
    shifts = ops.conv(padded, kernel, padding="valid")
    return ops.reshape(shifts, (-1, channels, size, size, kernel.shape[-1]))


def _weighted_shifts_by_slices(head: MotionHead, frame, weights, pad_rows: int, pad_cols: int,
                               kernel):
    """`MotionHead.weighted_shifts`, the 1-D shifts as slices of the padded frame.

    Copy j of the frame shifted along one axis is the padded frame's slice
    j : j + size along that axis (the one-hot kernel's tap j). The copies are
    concatenated along a taps axis before the two spatial axes, so that every
    slice and concatenation copies whole contiguous rows, and the weights are
    transposed to match: (B, C, taps, H, W) * (B, 1, taps, H, W), summed over
    the taps. The 2-D shifts (both paddings) go through `shifted_copies`.
    """
    if pad_rows and pad_cols:
        return MotionHead.weighted_shifts(head, frame, weights, pad_rows, pad_cols, kernel)
    size, channels = head.frame_size, head.channels
    taps = kernel.shape[-1]
    if pad_cols:
        padded = _pad_last_axis(ops.transpose(frame, (0, 3, 1, 2)), size, pad_cols)
        padded = ops.reshape(padded, (-1, size, size + 2 * pad_cols))   # (B*C, H, W + 2r)
        copies = [padded[:, :, j:j + size] for j in range(taps)]
    else:
        padded = _pad_last_axis(ops.transpose(frame, (0, 3, 2, 1)), size, pad_rows)
        padded = ops.transpose(padded, (0, 1, 3, 2))                    # (B, C, H + 2r, W)
        padded = ops.reshape(padded, (-1, size + 2 * pad_rows, size))
        copies = [padded[:, j:j + size, :] for j in range(taps)]
    shifts = _concatenate([ops.reshape(c, (-1, 1, size, size)) for c in copies], axis=1)
    shifts = ops.reshape(shifts, (-1, channels, taps, size, size))     # (B, C, taps, H, W)
    weights = ops.expand_dims(ops.transpose(weights, (0, 3, 1, 2)), 1)  # (B, 1, taps, H, W)
    moved = ops.sum(shifts * weights, axis=2)
    return ops.transpose(moved, (0, 2, 3, 1))


def _concatenate(tensors: list, axis: int):
    """ops.concatenate, as a tree of CONCATENATIONs of at most `CONCAT_INPUTS` inputs."""
    while len(tensors) > 1:
        groups = [tensors[i:i + CONCAT_INPUTS] for i in range(0, len(tensors), CONCAT_INPUTS)]
        tensors = [ops.concatenate(g, axis=axis) if len(g) > 1 else g[0] for g in groups]
    return tensors[0]


def _pad_last_axis(x, size: int, radius: int):
    """(B, C, A, size) -> (B, C, A, size + 2 * radius), padded symmetrically as one matmul."""
    matrix = ops.convert_to_tensor(mirror_pad_matrix(size, radius))
    padded = ops.matmul(ops.reshape(x, (-1, size)), matrix)
    return ops.reshape(padded, (-1, x.shape[1], x.shape[2], size + 2 * radius))


def xnnpack_copy(model: VideoPredictor, shift: str = "slices") -> VideoPredictor:
    """A copy of `model`, same weights, whose motion head pads by matrix products, shifts by slices.

    Meant for export (tracing), not for training or saving.

    Args:
        model: a built VideoPredictor.
        shift: "slices": the 1-D shifts as slices of the padded frame (module
            doc); "conv": as the model makes them, by the one-hot convolution.

    Returns:
        The copy; `model` itself when it is not exactly a VideoPredictor (a
        subclass may override what the copy would drop).
    """
    if shift not in SHIFTS:
        raise ValueError(f"shift must be one of {SHIFTS}. Received: shift={shift!r}")
    if type(model) is not VideoPredictor:
        return model
    fast = VideoPredictor(**model.get_config())
    fast.set_weights(model.get_weights())
    head = fast.frame_head
    if isinstance(head, MotionHead):
        # This copy's head only: the instance attributes hide the class's methods.
        head.shifted_copies = types.MethodType(_shifted_copies_by_matmul, head)
        if shift == "slices":
            head.weighted_shifts = types.MethodType(_weighted_shifts_by_slices, head)
    return fast


def _elu_softmax(x, axis=-1):
    e = ops.elu(x - ops.max(x, axis=axis, keepdims=True)) + 1.0
    return e / ops.sum(e, axis=axis, keepdims=True)


def _clip_int8(x, low, high):
    # The maps' +-15 bound exists for training gradients; int8 saturates at the calibrated range.
    if (float(low), float(high)) == (-15.0, 15.0):
        return x
    # Both RELUs fuse into the ADD/SUB before them; int8 RELU and MINIMUM alone leave XNNPACK.
    if (float(low), float(high)) == (0.0, 1.0):
        return 1.0 - ops.relu(1.0 - ops.relu(x))
    return ops.clip(x, low, high)


def _abs_int8(x):
    # max(-x, x): XNNPACK runs int8 LEAKY_RELU, not int8 ABS.
    return tf.nn.leaky_relu(x, alpha=-1.0)


class _OpsProxy(types.ModuleType):
    """keras.ops with a few functions replaced."""

    def __init__(self, **replaced):
        super().__init__("xnnpack_ops")
        self.__dict__.update(replaced)

    def __getattr__(self, name):
        return getattr(ops, name)


@contextlib.contextmanager
def xnnpack_ops(int8: bool, softmax: bool = True) -> Iterator[None]:
    """While active, `VideoPredictor` code traces the XNNPACK-friendly ops (module doc).

    It swaps the `ops` module that the predictor and head modules
    (`TRACED_MODULES`) call, so use it around tracing only (one export at a time, not while a model
    trains in another thread).

    Args:
        int8: also the int8-only substitutions.
        softmax: the ELU softmax (its division must stay float32 in an int8 model).
    """
    replaced = {"softmax": _elu_softmax} if softmax else {}
    if int8:
        replaced.update(clip=_clip_int8, abs=_abs_int8)
    proxy = _OpsProxy(**replaced)
    saved = [module.ops for module in TRACED_MODULES]
    for module in TRACED_MODULES:
        module.ops = proxy
    try:
        yield
    finally:
        for module, original in zip(TRACED_MODULES, saved):
            module.ops = original


def delegation(content: bytes, threads: int = 1, **options) -> tuple[set[int], int]:
    """Which ops of a .tflite the default XNNPACK delegate replaced, and in how many partitions.

    After delegation the interpreter lists the original nodes and then one
    DELEGATE node per partition; a partition covers the nodes between its
    inputs and its outputs.

    Args:
        content: the .tflite bytes.
        threads: interpreter threads.
        **options: more `Interpreter` arguments.

    Returns:
        (indices of the delegated ops in the first subgraph, number of partitions).
    """
    covered, partitions, _ = _execution_plan(content, threads, **options)
    return covered, partitions


def _execution_plan(content: bytes, threads: int, **options) -> tuple[set[int], int, list]:
    interpreter = Interpreter(model_content=content, num_threads=threads, **options)
    interpreter.allocate_tensors()
    nodes = interpreter._get_ops_details()
    delegates = [n for n in nodes if n["op_name"] == "DELEGATE"]
    producer = {int(t): n["index"] for n in nodes if n["op_name"] != "DELEGATE"
                for t in n["outputs"]}
    covered: set[int] = set()
    for d in delegates:
        stop = {int(t) for t in d["inputs"]}
        stack = [int(t) for t in d["outputs"]]
        while stack:
            t = stack.pop()
            if t in stop or t not in producer or producer[t] in covered:
                continue
            covered.add(producer[t])
            stack.extend(int(x) for x in nodes[producer[t]]["inputs"] if x >= 0)
    return covered, len(delegates), nodes


def undelegated_ops(content: bytes) -> list[str]:
    """Names of the ops of a .tflite that run outside XNNPACK (empty: one partition for all).

    Args:
        content: the .tflite bytes.

    Returns:
        Op names, in graph order.
    """
    covered, _, nodes = _execution_plan(content, 1)
    return [n["op_name"] for n in nodes if n["op_name"] != "DELEGATE" and n["index"] not in covered]
