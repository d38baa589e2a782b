"""The model card inside a .tflite file: what a device needs to use the model, in the model.

`vidgen-export tflite` stores a JSON card as a TFLite metadata entry named
`vidgen_model_card` (the FlatBuffer's `Model.metadata`, where the converter
keeps its own `CONVERSION_METADATA`): the output floor, the frame size and
channels, the state names, the quantization. The LiteRT runner reads it, so
`vidgen-export run-tflite` floors frames as the Keras model does without
`--floor`, and a copied .tflite still says how to use it. Any app reads it
with the TFLite schema (`Model.Metadata(i).Name()`, then the buffer it names).
Reading and writing need ai-edge-litert (its schema and FlatBuffer tools),
not TensorFlow.

Example:

    card = read_card("runs/quick/export/tflite/step_int8.tflite")
    card["output_floor"]["value"], card["frames"]["size"]
"""

from __future__ import annotations

import json
import mmap
import struct
from typing import Any, Optional

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.tools import flatbuffer_utils

from vidgen.errors import VidgenError

CARD_NAME = "vidgen_model_card"
CARD_FORMAT = 1
_FILE_IDENTIFIER = b"TFL3"
# The TFLite schema asks for Buffer.data (force_align: 16); the converter aligns it so.
_BUFFER_ALIGNMENT = 16


class _AlignedBuilder(flatbuffers.Builder):
    """A FlatBuffer builder that starts every byte vector (tensor data) on 16 bytes."""

    def StartVector(self, elemSize, numElems, alignment):  # noqa: N802,N803 (FlatBuffers API)
        if elemSize == 1:
            alignment = max(alignment, _BUFFER_ALIGNMENT)
        return super().StartVector(elemSize, numElems, alignment)


def with_metadata(content: bytes, name: str, value: bytes) -> bytes:
    """`content` (a .tflite FlatBuffer) with the metadata entry `name` set to `value`.

    An entry of that name already there is replaced; everything else (graph,
    weights, signatures, the converter's metadata) is kept.
    """
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
    model.metadata = [m for m in (model.metadata or []) if _text(m.name) != name]
    data = schema.BufferT()
    data.data = np.frombuffer(value, np.uint8).copy()
    model.buffers.append(data)
    entry = schema.MetadataT()
    entry.name = name
    entry.buffer = len(model.buffers) - 1
    model.metadata.append(entry)
    builder = _AlignedBuilder(len(content) + len(value) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=_FILE_IDENTIFIER)
    return bytes(builder.Output())


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_metadata(path: str, name: str) -> Optional[bytes]:
    """The bytes of metadata entry `name` of the .tflite file `path` (None when absent).

    The file is mapped, not read: only the entry's bytes are copied.
    """
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        model = schema.Model.GetRootAs(buf, 0)
        for i in range(model.MetadataLength()):
            entry = model.Metadata(i)
            if entry.Name() is None or entry.Name().decode() != name:
                continue
            buffer = model.Buffers(entry.Buffer())
            if buffer is None:
                return None
            if buffer.Offset():   # a model over 2 GB keeps buffers after the FlatBuffer
                return bytes(buf[buffer.Offset():buffer.Offset() + buffer.Size()])
            data = buffer.DataAsNumpy()
            value = data.tobytes() if isinstance(data, np.ndarray) else b""
            del data   # no view into the mapping may outlive it
            return value
    return None


def write_card(content: bytes, card: dict[str, Any]) -> bytes:
    """`content` with `card` as its `vidgen_model_card` metadata (JSON)."""
    value = json.dumps({"format": CARD_FORMAT, **card}, sort_keys=True).encode()
    return with_metadata(content, CARD_NAME, value)


def read_card(path: str) -> Optional[dict[str, Any]]:
    """The model card of a .tflite file written by `vidgen-export tflite` (None: it has none).

    Raises:
        VidgenError: the file's card is there but unreadable.
    """
    try:
        value = read_metadata(path, CARD_NAME)
        if value is None:
            return None
        card = json.loads(value.decode())
    except (OSError, ValueError, struct.error, IndexError, TypeError) as e:
        raise VidgenError(f"TFLite model {path!r}: its {CARD_NAME!r} metadata could not be "
                          f"read: {e}") from None
    if not isinstance(card, dict):
        raise VidgenError(f"TFLite model {path!r}: its {CARD_NAME!r} metadata must be a JSON "
                          f"object. Received: {type(card).__name__}")
    return card
