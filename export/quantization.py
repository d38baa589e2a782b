"""The TFLite variants: quantizations, input/output types and the file name of each.

Light on purpose (no TensorFlow, no Keras): `vidgen-export --help` lists
these choices, and `export.tflite` converts them.
"""

from __future__ import annotations

from vidgen.errors import ArgumentError

QUANTIZATIONS = ("float32", "float16", "dynamic", "int8")
IO_TYPES = ("float32", "int8", "uint8")


def check_options(quantize: str, io: str = "float32") -> None:
    """Raises ArgumentError unless `quantize` and `io` name a variant that exists."""
    if quantize not in QUANTIZATIONS:
        raise ArgumentError(f"{{quantize}} must be one of {', '.join(QUANTIZATIONS)}. "
                            f"Received: {quantize!r}", "quantize")
    if io not in IO_TYPES:
        raise ArgumentError(f"{{io}} must be one of {', '.join(IO_TYPES)}. Received: {io!r}",
                            "io")
    if io != "float32" and quantize != "int8":
        raise ArgumentError(f"{{io}} {io} needs {{quantize}} int8 (integer inputs and outputs "
                            f"only exist in a fully integer model). Received: {{quantize}} "
                            f"{quantize}", "io", "quantize")


def model_filename(signature: str, quantize: str, io: str = "float32") -> str:
    """`step_int8.tflite`, `sequence_float16.tflite`, `step_int8_iouint8.tflite`..."""
    suffix = "" if io == "float32" else f"_io{io}"
    return f"{signature}_{quantize}{suffix}.tflite"
