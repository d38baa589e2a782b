"""`vidgen-export tflite`: the streaming step model (and a fixed-length sequence model) for LiteRT.

The step model is `step(frame, state_0, ...) -> (next_frame, state_0, ...)`
at batch 1 with static shapes: an app keeps the states between calls and
pays the same per frame however long the clip. Builtin ops only (the LiteRT
pip interpreter cannot run Flex ops).

Quantization:
    float32  the float model.
    float16  float16 weights (half the size), float compute.
    dynamic  int8 weights, activations quantized on the fly.
    int8     full integer: weights and activations int8, calibrated on real
             clips; the state inputs are calibrated with the states of float
             rollouts over those clips (observed frames, then the model's own
             predictions, as at inference). `io="int8"|"uint8"` also makes the
             inputs and outputs integer (default: float I/O).

Example:

    vidgen-export tflite runs/quick --quantize int8
    # -> runs/quick/export/tflite/step_int8.tflite, sequence_int8.tflite, step_int8.json

Every model is traced through `export.xnnpack` (the same weights, ops that
LiteRT's XNNPACK delegate runs, fast in int8 too: one delegate partition for
the whole step model; the "sdna" and "flow" heads' shifted copies as slices
of the padded frame instead of one-hot convolutions), and an int8 model with
float I/O keeps its divisions in float32.

Every file carries its model card as TFLite metadata (`export.tflite_metadata`):
the output floor, frame size and channels, state names, quantization.

Every TFLite export of a run goes through one pipeline, `export_variants`:
load the run, read the calibration and test clips, convert each variant,
compare its step model with the Keras model (`export.parity`) and write the
report. `export_tflite` (`vidgen-export tflite`) and `export.report.build_report`
(`vidgen-export report`) call it.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from typing import Optional

import numpy as np
import tensorflow as tf
from tqdm import tqdm

import vidgen
from export import contract as C
from export import signatures, xnnpack
from export.parity import keras_rollouts, rollout_noise, summarize, variant_report, write_report
from export.quantization import IO_TYPES, QUANTIZATIONS, check_options, model_filename
from export.tflite_metadata import write_card
from vidgen import fileio
from vidgen.config import apply_overrides
from vidgen.data.pipeline import make_dataset
from vidgen.errors import ArgumentError, VidgenError
from vidgen.run_dir import load_run

# The options (IO_TYPES ... model_filename) live in export.quantization, light for the
# command line's --help, and are imported from here as well.
__all__ = ["IO_TYPES", "QUANTIZATIONS", "check_options", "convert", "export_tflite",
           "export_variants", "load_clips", "model_card", "model_filename", "out_folder",
           "step_inputs"]

logger = logging.getLogger(__name__)


def load_clips(cfg, split: str, count: int, data: Optional[str] = None) -> np.ndarray:
    """`count` whole clips (context + horizon frames) of a split, float32 (N, T, H, W, C)."""
    if data:
        cfg = apply_overrides(cfg, [f"data.source={data}"])
    try:
        ds = make_dataset(cfg, split, batch_size=count, shuffle=False, repeat=False)
        context, target = next(iter(ds))
    except StopIteration:
        raise VidgenError(f"The {split} split of {cfg.data.source!r} has no clips.") from None
    except VidgenError as e:
        # The data error's own arguments (config keys) stay arguments, so the command line
        # names them as flags too.
        inner, names = (e.template, e.arguments) if isinstance(e, ArgumentError) else \
            (str(e).replace("{", "{{").replace("}", "}}"), ())
        raise ArgumentError("Real clips are needed here (int8 calibration, parity report) "
                            f"and the run's clips could not be read: {inner} Pass {{data}}.",
                            *names, "data") from None
    return np.concatenate([np.asarray(context), np.asarray(target)], axis=1)


def step_inputs(model, clips: np.ndarray, context: int) -> Iterator[dict[str, np.ndarray]]:
    """Every (frame, states) the step model sees in float rollouts over `clips`.

    The first `context` frames of each clip are observed, the rest of the
    clip's length is predicted and fed back, as at inference. A stochastic
    model's noise is drawn from a fixed-seed standard normal.
    """
    names = C.for_model(model).state_names()
    rng = np.random.default_rng(0)
    for clip in clips:
        states = model.initial_states(1)
        frame = clip[None, 0]
        for t in range(clip.shape[0]):
            sample = {C.FRAME: np.asarray(frame, np.float32),
                      **{n: np.asarray(s, np.float32) for n, s in zip(names, states)}}
            if model.noise_shape:
                sample[C.NOISE] = rng.standard_normal((1,) + model.noise_shape).astype(
                    np.float32)
            yield sample
            prediction, states = model.step(frame, states, noise=sample.get(C.NOISE))
            frame = clip[None, t + 1] if t + 1 < context else prediction


def _converter(saved_model: str, signature: str, quantize: str, io: str, representative):
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model, signature_keys=[signature])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quantize == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if io != "float32":
            converter.inference_input_type = tf.as_dtype(io)
            converter.inference_output_type = tf.as_dtype(io)
    return converter


def _convert(converter, quantize: str, io: str) -> bytes:
    """The converter's flatbuffer; float I/O int8 keeps `xnnpack.FLOAT_OPS` in float32."""
    if quantize != "int8" or io != "float32":
        return converter.convert()
    # Selective quantization (public API; it keeps float I/O, hence float I/O only).
    options = tf.lite.experimental.QuantizationDebugOptions(
        denylisted_ops=list(xnnpack.FLOAT_OPS))
    debugger = tf.lite.experimental.QuantizationDebugger(converter=converter,
                                                         debug_options=options)
    return debugger.get_nondebug_quantized_model()


def model_card(model, signature: str, quantize: str, io: str, context: int,
               horizon: int) -> dict:
    """What a device needs to use the exported `signature` of `model`, as JSON-ready data."""
    spec = C.for_model(model, batch=1)
    floor = float(model.output_floor)
    if signature == C.STEP:
        meaning = (f"{C.NEXT_FRAME!r} is unfloored: feed it back as the next {C.FRAME!r}, and "
                   "set its values below the floor to 0 for display (the Keras model's "
                   "rollout does so)")
    else:
        meaning = f"{C.FRAMES!r} are floored already, as the Keras model's rollout floors them"
    return {
        "vidgen_version": vidgen.__version__,
        "signature": signature,
        "frames": {"size": int(model.frame_size), "channels": int(model.channels),
                   "range": "float32 in [0, 1]" if io == "float32" else
                            f"{io}, (de)quantized with the tensors' scales",
                   "context_trained": int(context), "horizon_trained": int(horizon)},
        "output_floor": {"value": floor, "meaning": meaning},
        "state_names": spec.state_names(),
        "noise_shape": list(model.noise_shape) if model.noise_shape else None,
        "quantize": quantize, "io": io,
    }


def convert(model, signature: str, quantize: str = "float32", io: str = "float32",
            calibration: Optional[np.ndarray] = None, context: int = 10,
            horizon: int = 10) -> bytes:
    """Converts the `step` or `sequence` function of a VideoPredictor to a TFLite flatbuffer.

    Args:
        model: a VideoPredictor.
        signature: contract.STEP or contract.SEQUENCE.
        quantize: one of QUANTIZATIONS.
        io: input/output type (int8 only): float32, int8 or uint8.
        calibration: float32 clips (N, context + horizon, H, W, C); needed for int8.
        context: frames observed (calibration rollouts; the sequence model's input length).
        horizon: frames the sequence model predicts.

    Returns:
        The .tflite bytes, with the model card (`model_card`) as metadata.
    """
    check_options(quantize, io)
    spec = C.for_model(model, batch=1)
    # The same weights, traced so that XNNPACK runs every op (export.xnnpack).
    fast = xnnpack.xnnpack_copy(model)
    if signature == C.STEP:
        endpoint = (signatures.step_function(fast), signatures.tensor_specs(spec.inputs(C.STEP)))
    elif signature == C.SEQUENCE:
        endpoint = (signatures.sequence_function(fast, context, horizon),
                    signatures.tensor_specs(spec.inputs(C.SEQUENCE, context, horizon)))
    else:
        raise VidgenError(f"Only {C.STEP!r} and {C.SEQUENCE!r} convert to TFLite. "
                          f"Received: {signature!r}")
    if quantize == "int8" and (calibration is None or not len(calibration)):
        raise VidgenError("int8 quantization needs calibration clips (real data).")

    rng = np.random.default_rng(0)

    def representative():
        if signature == C.STEP:
            yield from step_inputs(model, calibration, context)
            return
        for clip in calibration:
            sample = {C.CONTEXT: clip[None, :context].astype(np.float32)}
            if model.noise_shape:
                sample[C.NOISE] = rng.standard_normal(
                    (1, context + horizon - 1) + model.noise_shape).astype(np.float32)
            yield sample

    tmp = tempfile.mkdtemp(prefix="vidgen-tflite-")
    try:
        path = os.path.join(tmp, "saved_model")
        # The ELU softmax needs a float32 division, which only the float I/O int8 path keeps.
        with xnnpack.xnnpack_ops(int8=quantize == "int8",
                                 softmax=quantize != "int8" or io == "float32"):
            signatures.write_archive(fast, path, {signature: endpoint})
        try:
            with warnings.catch_warnings():
                # int8 calibration runs tf.lite's own (deprecated) interpreter internally.
                warnings.simplefilter("ignore")
                content = _convert(_converter(path, signature, quantize, io, representative),
                                   quantize, io)
        except Exception as e:  # the converter raises many types, all with a useful message
            raise VidgenError(f"TFLite conversion of {signature!r} ({quantize}) failed: "
                              f"{str(e).strip().splitlines()[-1][:500]}") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return write_card(content, model_card(model, signature, quantize, io, context, horizon))


def out_folder(run_dir: str) -> str:
    """Where a run's TFLite files go by default: RUN/export/tflite (export's own folder)."""
    return os.path.join(run_dir, "export", "tflite")


def export_variants(run_dir: str, quantizations: Sequence[str], out_dir: Optional[str] = None,
                    io: str = "float32", data: Optional[str] = None,
                    calibration_clips: int = 16, report_clips: int = 16,
                    sequence: bool = False, model_file: Optional[str] = None,
                    report_name: str = "report", progress: bool = False) -> dict:
    """Loads a run, converts its step model (and sequence model) per quantization, compares.

    The one TFLite pipeline: `export_tflite` (`vidgen-export tflite`) and
    `export.report.build_report` (`vidgen-export report`) are this with their
    own options. Every clip is read before anything is converted, so a bad
    data source leaves no file behind.

    Args:
        run_dir: a training run directory.
        quantizations: the variants to export, each one of QUANTIZATIONS.
        out_dir: where to write (default `out_folder(run_dir)`).
        io: input/output type of int8 models: float32, int8 or uint8.
        data: the source of calibration and report clips (default: the run's data).
        calibration_clips: clips of the validation split that calibrate int8.
        report_clips: held-out test clips the step models are compared on (0: no report).
        sequence: also export the fixed-length sequence model.
        model_file: the model inside the run (default: the run's model).
        report_name: the report's file name in `out_dir`, without .json / .md.
        progress: a progress bar over the variants.

    Returns:
        {"files": {quantize: {"step": path, "sequence": path or None}},
         "report": the report (`export.parity.summarize`, plus its "markdown") or None}.

    Example:

        export_variants("runs/quick", ("float32", "int8"))["report"]["targets"]
    """
    for quantize in quantizations:
        check_options(quantize, io)
    if "int8" in quantizations and not calibration_clips:
        raise ArgumentError("int8 quantization needs calibration clips (real data): "
                            "{calibration_clips} must be positive.", "calibration_clips")
    cfg, model = load_run(run_dir) if model_file is None else load_run(run_dir, model_file)
    out_dir = out_dir or out_folder(run_dir)
    context, horizon = cfg.data.context, cfg.data.horizon
    calibration = clips = reference = None
    if "int8" in quantizations and calibration_clips:
        calibration = load_clips(cfg, "val", calibration_clips, data)
    if report_clips:
        clips = load_clips(cfg, "test", report_clips, data)
        logger.debug("Keras rollouts of %d test clips", len(clips))
        reference = keras_rollouts(model, clips, context, rollout_noise(model, clips, context))
    exported = (C.STEP, C.SEQUENCE) if sequence else (C.STEP,)
    files, variants = {}, {}
    for quantize in tqdm(quantizations, desc="tflite variants", disable=not progress):
        files[quantize] = {C.STEP: None, C.SEQUENCE: None}
        for signature in exported:
            logger.debug("Converting the %s model (%s)", signature, quantize)
            content = convert(model, signature, quantize, io, calibration, context, horizon)
            files[quantize][signature] = fileio.write_bytes_atomic(
                os.path.join(out_dir, model_filename(signature, quantize, io)), content)
        if clips is not None:
            variants[quantize] = variant_report(model, files[quantize][C.STEP], clips, context,
                                                reference)
    report = None
    if clips is not None:
        report = summarize(run_dir, cfg, clips, reference, variants)
        report["markdown"] = write_report(os.path.join(out_dir, report_name), report)
    return {"files": files, "report": report}


def export_tflite(run_dir: str, quantize: str = "float32", out_dir: Optional[str] = None,
                  io: str = "float32", data: Optional[str] = None, calibration_clips: int = 16,
                  sequence: bool = True, report_clips: int = 16,
                  model_file: Optional[str] = None) -> dict:
    """`vidgen-export tflite`: a run's step model (and sequence model), with a parity report.

    Args:
        run_dir: a training run directory.
        quantize: float32, float16, dynamic or int8.
        out_dir: where to write (default RUN/export/tflite).
        io: integer I/O for int8 models: "int8" or "uint8"; default float32.
        data: the source of calibration and report clips (default: the run's data).
        calibration_clips: clips of the validation split used to calibrate int8.
        sequence: also export the fixed-length sequence model.
        report_clips: held-out test clips of the parity report (0: no report).
        model_file: the model inside the run (default: the run's model).

    Returns:
        {"step": path, "sequence": path or None, "report": report dict or None}; the
        report is written beside the step model (step_int8.json and .md).

    Example:

        export_tflite("runs/quick", "int8")["step"]   # runs/quick/export/tflite/step_int8.tflite
    """
    report_name = os.path.splitext(model_filename(C.STEP, quantize, io))[0]
    result = export_variants(run_dir, (quantize,), out_dir, io=io, data=data,
                             calibration_clips=calibration_clips, report_clips=report_clips,
                             sequence=sequence, model_file=model_file, report_name=report_name)
    files = result["files"][quantize]
    return {"step": files[C.STEP], "sequence": files[C.SEQUENCE], "report": result["report"]}
