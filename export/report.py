"""`vidgen-export report`: every TFLite variant against the Keras model, on held-out clips.

Exports the step model in each quantization and compares each with the
Keras model (`export.parity` says what is measured and the targets checked),
through the pipeline every TFLite export uses (`export.tflite.export_variants`).

Example:

    vidgen-export report runs/quick            # -> runs/quick/export/tflite/report.{json,md}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

from export.tflite import QUANTIZATIONS, export_variants
from vidgen.errors import ArgumentError


def build_report(run_dir: str, quantizations: Sequence[str] = QUANTIZATIONS,
                 out_dir: Optional[str] = None, data: Optional[str] = None, clips: int = 16,
                 calibration_clips: int = 16, progress: bool = True) -> dict:
    """Exports every variant of the step model and compares each with the Keras model.

    Args:
        run_dir: a training run directory.
        quantizations: the variants compared (default: all of QUANTIZATIONS).
        out_dir: where the models and OUT/report.{json,md} go (default RUN/export/tflite).
        data: the source of the clips (default: the run's data).
        clips: held-out test clips the variants are compared on.
        calibration_clips: validation clips that calibrate int8.
        progress: a progress bar over the variants.

    Returns:
        The report (`export.parity.summarize`), with its Markdown under "markdown".
    """
    if clips < 1:
        raise ArgumentError(f"{{clips}} must be positive: the report compares on held-out "
                            f"clips. Received: {clips}", "clips")
    return export_variants(run_dir, quantizations, out_dir, data=data,
                           calibration_clips=calibration_clips, report_clips=clips,
                           progress=progress)["report"]
