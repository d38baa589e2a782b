"""Streaming inference with an exported TFLite step model and the LiteRT interpreter.

This is what an app on a device does: keep the recurrent states between
calls and push one frame at a time, so the cost of a frame does not grow
with the length of the clip.

Example:

    runner = StepRunner("runs/quick/export/tflite/step_int8.tflite")
    states = runner.initial_states()
    for frame in frames:                       # (H, W, C) float32 in [0, 1]
        prediction, states = runner.step(frame, states)
    shown = runner.rollout(frames[:10], 20)    # floored with the model's own floor

Needs ai-edge-litert, numpy and OpenCV, not TensorFlow: with only
`pip install "vidgen[lite]"` this module, its callers in `export.cli` and
the clip readers and writers of `vidgen.generate` import and run.
"""

from __future__ import annotations

import os
from typing import Optional

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from export import contract as C
from export.tflite_metadata import CARD_NAME, read_card
from vidgen.errors import ArgumentError, VidgenError
from vidgen.floor import check_floor, floored


def load_interpreter(path: str, num_threads: Optional[int] = None):
    """A LiteRT interpreter for `path`, with one clear error for a missing or corrupt file."""
    if not os.path.isfile(path):
        raise VidgenError(f"TFLite model {path!r} does not exist.")
    with open(path, "rb") as f:
        head = f.read(8)
    # A FlatBuffer TFLite model carries the file identifier "TFL3" at bytes 4..8.
    if len(head) < 8 or head[4:8] != b"TFL3":
        raise VidgenError(f"{path!r} is not a TFLite model: expected the 'TFL3' file "
                          f"identifier at byte 4, found {head[4:8]!r}.")
    try:
        interpreter = Interpreter(model_path=path, num_threads=num_threads)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        raise VidgenError(f"TFLite model {path!r} is corrupt or unsupported: {e}") from None
    return interpreter


def _quantize(value: np.ndarray, detail: dict) -> np.ndarray:
    dtype = detail["dtype"]
    if dtype == np.float32:
        return value.astype(np.float32)
    scale, zero = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(value / scale + zero), info.min, info.max).astype(dtype)


def _dequantize(value: np.ndarray, detail: dict) -> np.ndarray:
    if value.dtype == np.float32:
        return value
    scale, zero = detail["quantization"]
    return ((value.astype(np.float32) - zero) * scale).astype(np.float32)


class StepRunner:
    """Runs the `step` signature of a TFLite model: (frame, states) -> (next frame, states).

    Float in, float out whatever the model's I/O type: int8/uint8 inputs and
    outputs are (de)quantized with the scales stored in the model. The model
    card stored in the file (`card`, from `vidgen-export tflite`) gives the
    output floor `rollout` applies, as the Keras model's `rollout` does.

    Args:
        path: a .tflite file written by `vidgen-export tflite`.
        num_threads: interpreter threads (default: the interpreter's).
    """

    def __init__(self, path: str, num_threads: Optional[int] = None):
        self.path = path
        self.interpreter = load_interpreter(path, num_threads)
        signatures = self.interpreter.get_signature_list()
        if C.STEP not in signatures:
            raise VidgenError(f"{path!r} has no {C.STEP!r} signature (it has: "
                              f"{', '.join(signatures) or 'none'}); export the step model "
                              "with `vidgen-export tflite`.")
        self.runner = self.interpreter.get_signature_runner(C.STEP)
        self.input_details = self.runner.get_input_details()
        self.output_details = self.runner.get_output_details()
        if C.FRAME not in self.input_details or C.NEXT_FRAME not in self.output_details:
            raise VidgenError(f"{path!r}: the {C.STEP!r} signature must take {C.FRAME!r} and "
                              f"return {C.NEXT_FRAME!r}; it takes {sorted(self.input_details)}.")
        self.state_names = sorted((n for n in self.input_details if n not in (C.FRAME, C.NOISE)),
                                  key=lambda n: int(n.rsplit("_", 1)[-1]))
        self.noise_shape = None
        if C.NOISE in self.input_details:
            self.noise_shape = tuple(int(d) for d in self.input_details[C.NOISE]["shape"][1:])
        self._rng = np.random.default_rng()
        self.frame_shape = tuple(int(d) for d in self.input_details[C.FRAME]["shape"][1:])
        self.card = read_card(path)
        floor = ((self.card or {}).get("output_floor") or {}).get("value", 0.0)
        self.output_floor = check_floor(floor, f"{path!r}: the output floor of its "
                                               f"{CARD_NAME!r} metadata")

    @property
    def frame_size(self) -> int:
        return self.frame_shape[0]

    @property
    def channels(self) -> int:
        return self.frame_shape[2]

    def initial_states(self) -> dict[str, np.ndarray]:
        """Zero states, float32, by name."""
        return {n: np.zeros(self.input_details[n]["shape"], np.float32)
                for n in self.state_names}

    def _check(self, name: str, value) -> np.ndarray:
        value = np.asarray(value)
        expected = tuple(int(d) for d in self.input_details[name]["shape"])
        if value.shape == expected[1:]:
            value = value[None]
        if value.shape != expected:
            raise VidgenError(f"Input {name!r}: expected shape {expected} (or {expected[1:]}), "
                              f"received {value.shape}.")
        if not np.issubdtype(value.dtype, np.floating):
            raise VidgenError(f"Input {name!r}: expected float32 values, received {value.dtype}.")
        if not np.isfinite(value).all():
            raise VidgenError(f"Input {name!r} contains NaN or Inf values.")
        return value.astype(np.float32)

    def step(self, frame, states: dict[str, np.ndarray], noise=None):
        """One frame in, the next frame out.

        Args:
            frame: (H, W, C) or (1, H, W, C) float in [0, 1].
            states: the states returned by the previous call (or `initial_states()`).
            noise: a stochastic model's standard normal latent noise
                (`noise_shape`); drawn at random when None.

        Returns:
            (next frame (H, W, C) float32, new states).
        """
        if not isinstance(states, dict) or set(states) != set(self.state_names):
            got = sorted(states) if isinstance(states, dict) else type(states).__name__
            raise VidgenError(f"states: expected a dict with keys {self.state_names}, "
                              f"received {got}.")
        feeds = {C.FRAME: self._check(C.FRAME, frame)}
        feeds.update({n: self._check(n, states[n]) for n in self.state_names})
        if self.noise_shape:
            if noise is None:
                noise = self._rng.standard_normal(self.noise_shape).astype(np.float32)
            feeds[C.NOISE] = self._check(C.NOISE, noise)
        outputs = self.runner(**{n: _quantize(v, self.input_details[n])
                                 for n, v in feeds.items()})
        outputs = {n: _dequantize(v, self.output_details[n]) for n, v in outputs.items()}
        return outputs[C.NEXT_FRAME][0], {n: outputs[n] for n in self.state_names}

    def rollout(self, context: np.ndarray, horizon: int, noise=None,
                floor: Optional[float] = None) -> np.ndarray:
        """Observes `context` (T, H, W, C) frame by frame, then predicts `horizon` frames.

        Args:
            noise: for a stochastic model, (T + horizon - 1, *noise_shape)
                draws, one per step; random when None.
            floor: values below it in the returned frames become 0, as the
                Keras model's `output_floor` does (the fed-back frames keep
                them); None: the model's own, `output_floor` (0: none).
        """
        floor = self.output_floor if floor is None else check_floor(floor)
        if len(context) < 1 or horizon < 1:
            raise VidgenError(f"rollout needs at least one context frame and horizon >= 1. "
                              f"Received {len(context)} frames, horizon {horizon}.")
        draws = iter(noise) if noise is not None else None
        states = self.initial_states()
        for frame in context:
            prediction, states = self.step(frame, states, None if draws is None else next(draws))
        out = [prediction]
        for _ in range(horizon - 1):
            prediction, states = self.step(prediction, states,
                                           None if draws is None else next(draws))
            out.append(prediction)
        return floored(np.stack(out), floor)


def run_tflite(model_path: str, input_path: str, out: str, context: int = 10,
               horizon: int = 20, start: int = 0, fps: float = 4.0,
               floor: Optional[float] = None) -> dict:
    """`vidgen-export run-tflite`: continues a clip with a TFLite step model, streaming.

    Args:
        floor: overrides the output floor the file's model card gives (None: the card's).

    Returns:
        Paths written, the frame counts and the floor used.
    """
    # Here, not at the top: an app that streams its own frames through StepRunner needs
    # neither OpenCV nor imageio (15 MB and 10 MB of its memory).
    from vidgen.generate import check_output_path, load_input_clip, write_continuation

    check_output_path(out)
    if floor is not None:
        try:
            floor = check_floor(floor, "{floor}")
        except VidgenError as e:
            raise ArgumentError(str(e), "floor") from None
    runner = StepRunner(model_path)
    if horizon <= 0:
        raise ArgumentError(f"{{horizon}} must be positive. Received: {horizon}", "horizon")
    frames, total = load_input_clip(input_path, runner.frame_size, runner.channels,
                                    context, start, horizon)
    floor = runner.output_floor if floor is None else floor
    prediction = runner.rollout(frames[:context], horizon, floor=floor)
    written = write_continuation(out, frames, prediction, context, fps)
    return {"written": written, "context": context, "horizon": horizon, "input_frames": total,
            "floor": floor}
