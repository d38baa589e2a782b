"""The signature contract: every public name, dtype and shape of an exported model.

Defined once, here, and used by the SavedModel and TFLite exporters and by
the serving client and server, so a name can never drift between them.

Signatures of a SavedModel (TF Serving):

    serving_default  context float32 (batch, time, H, W, C) in [0, 1], horizon int32 (batch,)
                     -> frames float32 (batch, horizon, H, W, C) in [0, 1]
    predict_uint8    context uint8 (batch, time, H, W, C), horizon int32 (batch,)
                     -> frames uint8 (batch, horizon, H, W, C)   (4x fewer bytes on the wire)
    step             frame float32 (batch, H, W, C), state_0 .. state_{n-1} float32
                     [, noise float32 (batch, h, w, latent) for a stochastic model]
                     -> next_frame float32 (batch, H, W, C), state_0 .. state_{n-1}

Every input has the batch as its first dimension, so TF Serving's batching
(`--enable_batching`), which concatenates the inputs of the requests it
merges along dimension 0 and refuses rank-0 inputs ("Batching Run() input
tensors must have at least one dimension"), can batch every signature.
`horizon` holds one value per clip, all equal (`horizon_input`); the graph
answers INVALID_ARGUMENT when they differ or when there are not `batch` of
them. What batching asks of clients:

- TF Serving merges requests by signature only: two concurrent requests
  with different horizons are concatenated into one horizon vector and the
  whole merged batch fails (INVALID_ARGUMENT "horizon must hold the same
  value ..."), as do requests with different context lengths (TF Serving's
  FAILED_PRECONDITION "Tensors with name 'serving_default_context:0' from
  different tasks have different shapes and padding is turned off...").
  With batching on, send one horizon and one context length per deployment
  (or per model name: serve the same export under one name per request
  class), or leave batching off. `vidgen-serve start --enable_batching` merges only requests
  with equal horizon and context length, so it never shows that failure.
- `pad_variable_length_inputs` stays false: TF Serving would pad a shorter
  context at its end with the tensor's first value, feeding the model frames
  that were never observed and changing its prediction.

`BATCHING_PARAMS_FILE` (TF Serving's BatchingParameters text format) sits in
the version directory, where `--enable_per_model_batching_parameters` reads it.

The TFLite step model has the `step` signature with batch 1; the TFLite
sequence model has `sequence`: context (1, T, H, W, C) -> frames (1, horizon, H, W, C)
for the fixed T and horizon it was exported with.

Example:

    from export import contract
    spec = contract.Contract(frame_size=64, channels=1, state_shapes=[(16, 16, 32)] * 2)
    spec.inputs(contract.STEP)   # {'frame': TensorSpec(...), 'state_0': ..., 'state_1': ...}
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

SERVING_DEFAULT = "serving_default"
PREDICT_UINT8 = "predict_uint8"
STEP = "step"
SEQUENCE = "sequence"  # TFLite only: a fixed-length unrolled rollout.
SAVEDMODEL_SIGNATURES = (SERVING_DEFAULT, PREDICT_UINT8, STEP)

CONTEXT = "context"
HORIZON = "horizon"
FRAMES = "frames"
FRAME = "frame"
NEXT_FRAME = "next_frame"
NOISE = "noise"  # standard normal draws of a stochastic model's latent variable

# A request may ask for at most this many frames: the rollout's memory grows with it.
MAX_HORIZON = 1000
# And give at most this many context frames: the encoder runs one recurrent step per frame.
MAX_CONTEXT = 1000

# Inputs that hold one value per clip which must be equal across a batch: requests
# are merged by the server only when these values agree.
UNIFORM_INPUTS = (HORIZON,)

MODEL_CARD = "vidgen_model_card.json"
WARMUP_FILE = "tf_serving_warmup_requests"          # in assets.extra/
BATCHING_PARAMS_FILE = "batching_params.pbtxt"      # in the version directory itself


def horizon_input(horizon: int, batch: int) -> np.ndarray:
    """The `horizon` input of a request of `batch` clips: int32 (batch,), every value `horizon`.

    Example:

        contract.horizon_input(10, 2)   # array([10, 10], dtype=int32)
    """
    return np.full((batch,), horizon, np.int32)


def state_name(index: int) -> str:
    """Name of recurrent state `index` in the step signature."""
    return f"state_{index}"


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """dtype ("float32", "uint8", "int32") and shape (None = any size) of one named tensor."""

    dtype: str
    shape: tuple[Optional[int], ...]

    def to_dict(self) -> dict:
        return {"dtype": self.dtype, "shape": list(self.shape)}


@dataclasses.dataclass(frozen=True)
class Contract:
    """The signatures of one exported model, from its frame size, channels and state shapes.

    Args:
        frame_size: height and width of the square frames.
        channels: 1 or 3.
        state_shapes: shape (without batch) of every recurrent state, in step order.
        batch: fixed batch size (TFLite: 1) or None for any.
        noise_shape: shape (without batch) of one step's latent noise; None for
            a deterministic model.
    """

    frame_size: int
    channels: int
    state_shapes: tuple[tuple[int, ...], ...]
    batch: Optional[int] = None
    noise_shape: Optional[tuple[int, ...]] = None

    def __post_init__(self):
        object.__setattr__(self, "state_shapes", tuple(tuple(s) for s in self.state_shapes))

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        return (self.frame_size, self.frame_size, self.channels)

    def state_names(self) -> list[str]:
        return [state_name(i) for i in range(len(self.state_shapes))]

    def inputs(self, signature: str, context: Optional[int] = None,
               horizon: Optional[int] = None) -> dict[str, TensorInfo]:
        """Named inputs of `signature` (`context`, `horizon`: fixed lengths, None = dynamic)."""
        b = self.batch
        if signature in (SERVING_DEFAULT, PREDICT_UINT8):
            dtype = "uint8" if signature == PREDICT_UINT8 else "float32"
            return {CONTEXT: TensorInfo(dtype, (b, context) + self.frame_shape),
                    HORIZON: TensorInfo("int32", (b,))}
        if signature == STEP:
            out = {FRAME: TensorInfo("float32", (b,) + self.frame_shape)}
            for name, shape in zip(self.state_names(), self.state_shapes):
                out[name] = TensorInfo("float32", (b,) + shape)
            if self.noise_shape:
                out[NOISE] = TensorInfo("float32", (b,) + tuple(self.noise_shape))
            return out
        if signature == SEQUENCE:
            out = {CONTEXT: TensorInfo("float32", (b, context) + self.frame_shape)}
            if self.noise_shape:
                # One draw per step: the context steps, then the predicted ones.
                steps = None if context is None or horizon is None else context + horizon - 1
                out[NOISE] = TensorInfo("float32", (b, steps) + tuple(self.noise_shape))
            return out
        raise KeyError(f"Unknown signature {signature!r}. Known: "
                       f"{', '.join(SAVEDMODEL_SIGNATURES + (SEQUENCE,))}")

    def outputs(self, signature: str, horizon: Optional[int] = None) -> dict[str, TensorInfo]:
        """Named outputs of `signature` (`horizon`: fixed length, None = dynamic)."""
        b = self.batch
        if signature in (SERVING_DEFAULT, PREDICT_UINT8, SEQUENCE):
            dtype = "uint8" if signature == PREDICT_UINT8 else "float32"
            return {FRAMES: TensorInfo(dtype, (b, horizon) + self.frame_shape)}
        if signature == STEP:
            out = {NEXT_FRAME: TensorInfo("float32", (b,) + self.frame_shape)}
            for name, shape in zip(self.state_names(), self.state_shapes):
                out[name] = TensorInfo("float32", (b,) + shape)
            return out
        raise KeyError(f"Unknown signature {signature!r}. Known: "
                       f"{', '.join(SAVEDMODEL_SIGNATURES + (SEQUENCE,))}")

    def to_dict(self) -> dict:
        """The SavedModel signatures as JSON-ready data (for the model card)."""
        return {sig: {"inputs": {k: v.to_dict() for k, v in self.inputs(sig).items()},
                      "outputs": {k: v.to_dict() for k, v in self.outputs(sig).items()}}
                for sig in SAVEDMODEL_SIGNATURES}


def for_model(model, batch: Optional[int] = None) -> Contract:
    """The contract of a `vidgen.models.VideoPredictor`."""
    return Contract(frame_size=model.frame_size, channels=model.channels,
                    state_shapes=tuple(model.state_shapes), batch=batch,
                    noise_shape=model.noise_shape)
