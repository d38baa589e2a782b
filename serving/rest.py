"""TF Serving's REST API over `ServingCore`: paths, JSON tensors, `{"error": ...}` bodies.

    POST /v1/models/NAME[/versions/N|/labels/L]:predict   {"instances": [...]} or {"inputs": ...}
    GET  /v1/models/NAME[/versions/N|/labels/L]            model status
    GET  /v1/models/NAME[/versions/N|/labels/L]/metadata   signature defs

A label resolves to its version for predict and metadata; the status form
ignores it and lists every version, as TF Serving's GetModelStatus does
(get_model_status_impl.cc reads only the version field).

Row format ("instances"): every instance is an object with one key per input
and instances are stacked on a new first dimension; the response is
`{"predictions": [...]}`, as in TF Serving (the horizon too: it is a
(batch,) vector). A scalar input of an older export cannot be stacked, so
there it must have the same value in every instance and is passed once.
Columnar format ("inputs"): the values as they are; the response is
`{"outputs": ...}`.

A predict answer is encoded a block of values at a time, never as one Python
list of every value (which costs ~8x the float32 output), after its length is
bounded from the output shapes: beyond `Limits.max_response_bytes` it is
refused RESOURCE_EXHAUSTED (413), as a request body beyond its JSON limit is.

Every request gets a JSON answer with a status. A version is ASCII digits (RE2's
`\\d`, as in TF Serving's path regex) that fit an int64; other digits make a
malformed path and a number beyond int64 is TF Serving's INVALID_ARGUMENT
"Failed to convert version: V to numeric." (http_rest_api_handler.cc, where
`absl::SimpleAtoi` fails). An unexpected exception is logged and answered
500 `{"error": ...}`, never a dropped connection.
"""

from __future__ import annotations

import json
import logging
import math
import re
import urllib.parse
from typing import Optional

import grpc
import numpy as np
from google.protobuf import json_format
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2

from export import contract as C
from serving import tensors
from serving.errors import ServingError, invalid

log = logging.getLogger("vidgen.serving")

_PATH = re.compile(r"^/v1/models/([^/:]+)(?:/versions/([0-9]+)|/labels/([^/:]+))?"
                   r"(?::(predict|classify|regress)|/(metadata))?$")

_JSON_DTYPES = {types_pb2.DT_FLOAT: np.float32, types_pb2.DT_DOUBLE: np.float64,
                types_pb2.DT_INT32: np.int32, types_pb2.DT_UINT8: np.uint8,
                types_pb2.DT_INT64: np.int64, types_pb2.DT_INT8: np.int8,
                types_pb2.DT_INT16: np.int16, types_pb2.DT_BOOL: np.bool_}


def _to_array(alias: str, value, dtype: int, max_elements: int) -> np.ndarray:
    np_dtype = _JSON_DTYPES.get(dtype)
    if np_dtype is None:
        raise invalid(f"Input '{alias}': dtype {tensors.dtype_name(dtype)} is not supported "
                      "in JSON by this server.")
    shape, level = [], value
    while isinstance(level, list):
        shape.append(len(level))
        if not level:
            break
        level = level[0]
    if math.prod(shape) > max_elements:
        raise invalid(f"Input '{alias}': expected at most {max_elements} elements, received "
                      f"{math.prod(shape)}.")
    try:
        raw = np.array(value, dtype=object if np_dtype is not np.bool_ else np.bool_)
        if raw.shape != tuple(shape) or any(isinstance(x, (list, dict, str)) or x is None
                                            for x in raw.reshape(-1)):
            raise ValueError
        if np.issubdtype(np_dtype, np.integer):
            ints = raw.astype(np.float64)
            info = np.iinfo(np_dtype)
            if raw.size and ((ints != np.round(ints)).any() or ints.min() < info.min
                             or ints.max() > info.max):
                raise invalid(f"Input '{alias}': expected integers in [{info.min}, "
                              f"{info.max}] for dtype {tensors.dtype_name(dtype)}.")
            return raw.astype(np.int64).astype(np_dtype)
        return raw.astype(np_dtype)
    except ServingError:
        raise
    except (ValueError, TypeError, OverflowError):
        raise invalid(f"Input '{alias}': expected a dense nested list of numbers for dtype "
                      f"{tensors.dtype_name(dtype)}, received a ragged list or other JSON "
                      "values.") from None


def parse_json(body: bytes) -> dict:
    """The request body as a JSON object, with TF Serving's parse errors."""
    if not body:
        raise invalid("JSON Parse error: The document is empty")
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as e:
        raise invalid(f"JSON Parse error: {e}") from None
    if not isinstance(doc, dict):
        raise invalid("JSON Value: Is not object")
    return doc


def parse_predict(doc: dict, specs: dict, max_elements: int) -> tuple[str, dict]:
    """(format "row"/"columnar", {alias: array}) from a parsed REST predict body."""
    if "instances" in doc and "inputs" in doc:
        raise invalid("Not formatted correctly expecting only one of 'inputs' or 'instances' "
                      "keys to exist")
    if "instances" in doc:
        instances = doc["instances"]
        if not isinstance(instances, list):
            raise invalid("Excepting 'instances' to be an list/array")
        if not instances:
            raise invalid("No values in 'instances' array")
        if len(specs) > 1 and not all(isinstance(i, dict) for i in instances):
            raise invalid("instances is a plain list, but expecting list of objects as "
                          "multiple input tensors required as per tensorinfo_map")
        if len(specs) == 1 and not isinstance(instances[0], dict):
            instances = [{next(iter(specs)): i} for i in instances]
        arrays = {}
        for n, inst in enumerate(instances):
            if not isinstance(inst, dict) or set(inst) != set(specs):
                raise invalid(f"Failed to process element: {n} of 'instances' list. JSON "
                              f"object must only have keys: {','.join(sorted(specs))}")
        for alias, spec in specs.items():
            if spec.shape == ():
                values = {json.dumps(i[alias]) for i in instances}
                if len(values) != 1:
                    raise invalid(f"Input '{alias}' is a scalar in the signature: every "
                                  "instance must give it the same value.")
                arrays[alias] = _to_array(alias, instances[0][alias], spec.dtype, max_elements)
            else:
                arrays[alias] = _to_array(alias, [i[alias] for i in instances], spec.dtype,
                                          max_elements)
        return "row", arrays
    if "inputs" in doc:
        inputs = doc["inputs"]
        if not isinstance(inputs, dict):
            if len(specs) > 1:
                raise invalid("inputs is a plain value/list, but expecting an object as "
                              "multiple input tensors required as per tensorinfo_map")
            inputs = {next(iter(specs)): inputs}
        for alias in specs:
            if alias not in inputs:
                raise invalid(f"Missing named input: {alias} in 'inputs' object.")
        arrays = {a: _to_array(a, inputs[a], specs[a].dtype, max_elements) for a in specs}
        # An input the signature lacks: Servable.check_names reports it in TF Serving's words.
        arrays.update({a: np.zeros((), np.float32) for a in inputs if a not in specs})
        return "columnar", arrays
    raise invalid("Missing 'inputs' or 'instances' key")


def format_predict(fmt: str, outputs: dict[str, np.ndarray]) -> dict:
    """The predict answer as a JSON document (Python lists; `encode_predict` streams it)."""
    if fmt == "row":
        n = next(iter(outputs.values())).shape[0]
        if len(outputs) == 1:
            (value,) = outputs.values()
            return {"predictions": value.tolist()}
        return {"predictions": [{k: v[i].tolist() for k, v in outputs.items()}
                                for i in range(n)]}
    if len(outputs) == 1:
        return {"outputs": next(iter(outputs.values())).tolist()}
    return {"outputs": {k: v.tolist() for k, v in outputs.items()}}


class JsonText:
    """An encoded JSON answer, in pieces of about `_CHUNK_BYTES` (written one after another).

    Args:
        chunks: the UTF-8 pieces; their concatenation is the document.
    """

    def __init__(self, chunks: list[bytes]):
        self.chunks = chunks

    def __len__(self) -> int:
        return sum(len(c) for c in self.chunks)

    def __bytes__(self) -> bytes:
        return b"".join(self.chunks)


# Elements turned into Python objects at a time: tolist() costs ~32 bytes per float
# (the object and its list slot), so a whole output would cost ~8x its float32 bytes.
_BLOCK_ELEMENTS = 1 << 16
_CHUNK_BYTES = 1 << 20
# Longest json.dumps text of one value: repr of a float is 17 significant digits at most,
# "-1.2345678901234567e-308" (24 characters; "-Infinity" is 9).
_FLOAT_CHARS = 24


def _value_chars(dtype: np.dtype) -> int:
    if dtype.kind == "f":
        return _FLOAT_CHARS
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return max(len(str(info.min)), len(str(info.max)))
    if dtype.kind == "b":
        return len("false")
    return _FLOAT_CHARS * 4   # not a JSON dtype of this server: a generous bound


def json_size_bound(array: np.ndarray) -> int:
    """At most the length of `json.dumps(array.tolist())`, from its shape and dtype alone.

    Each value takes its longest text plus a ", " separator; each nested list its
    brackets plus the separator that follows it in its parent.
    """
    shape = array.shape
    lists = sum(math.prod(shape[:k]) for k in range(len(shape)))
    return array.size * (_value_chars(array.dtype) + 2) + lists * 4


def answer_size_bound(fmt: str, outputs: dict[str, np.ndarray]) -> int:
    """At most the length of `json.dumps(format_predict(fmt, outputs))`."""
    # Row format with several outputs repeats every key in each instance's object.
    n = next(iter(outputs.values())).shape[0] if fmt == "row" and len(outputs) > 1 else 1
    keys = sum(len(json.dumps(k)) + 4 for k in outputs)   # '"key": ' and its ", "
    return 32 + n * (keys + 4) + sum(json_size_bound(v) for v in outputs.values())


def _pieces(array: np.ndarray):
    """The text of `json.dumps(array.tolist())`, a block of elements at a time."""
    if array.ndim == 0 or array.size <= _BLOCK_ELEMENTS:
        yield json.dumps(array.tolist())
        return
    yield "["
    for i in range(array.shape[0]):
        if i:
            yield ", "
        yield from _pieces(array[i])
    yield "]"


def _doc_pieces(fmt: str, outputs: dict[str, np.ndarray]):
    """The text of `json.dumps(format_predict(fmt, outputs))`, piece by piece."""
    def mapping(items):
        yield "{"
        for n, (key, value) in enumerate(items):
            yield (", " if n else "") + json.dumps(key) + ": "
            yield from _pieces(value)
        yield "}"

    key = "predictions" if fmt == "row" else "outputs"
    yield "{" + json.dumps(key) + ": "
    if len(outputs) == 1:
        yield from _pieces(next(iter(outputs.values())))
    elif fmt == "row":
        yield "["
        for i in range(next(iter(outputs.values())).shape[0]):
            if i:
                yield ", "
            yield from mapping((k, v[i]) for k, v in outputs.items())
        yield "]"
    else:
        yield from mapping(outputs.items())
    yield "}"


def check_answer_size(fmt: str, outputs: dict[str, np.ndarray], max_bytes: int) -> None:
    """Raises RESOURCE_EXHAUSTED (HTTP 413) when the JSON answer could pass `max_bytes`.

    Only shapes and dtypes are read, so `outputs` may be broadcast stand-ins.
    """
    bound = answer_size_bound(fmt, outputs)
    if bound > max_bytes:
        shapes = ", ".join(f"{k} {tuple(v.shape)} {v.dtype}" for k, v in outputs.items())
        raise ServingError(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"The JSON answer would take up to {bound} bytes ({shapes}), more than the "
            f"server's response limit of {max_bytes} bytes (--max_response_bytes); ask "
            "for fewer frames or a smaller batch, or use gRPC, whose answer is ~6x smaller.",
            http_status=413)


def encode_predict(fmt: str, outputs: dict[str, np.ndarray], max_bytes: int) -> JsonText:
    """The predict answer, encoded without a Python list of every output value.

    Its length is bounded from the outputs' shapes first (`json_size_bound`), so an
    answer too large for JSON is refused before any text is made.

    Args:
        fmt: "row" or "columnar" (`parse_predict`).
        outputs: {alias: array} of the model call.
        max_bytes: the largest JSON answer (`Limits.max_response_bytes`).

    Returns:
        The same text as `json.dumps(format_predict(fmt, outputs))`.

    Raises:
        ServingError: RESOURCE_EXHAUSTED (HTTP 413) when the bound exceeds `max_bytes`.
    """
    check_answer_size(fmt, outputs, max_bytes)
    chunks, part, size = [], [], 0
    for piece in _doc_pieces(fmt, outputs):
        part.append(piece)
        size += len(piece)
        if size >= _CHUNK_BYTES:
            chunks.append("".join(part).encode())
            part, size = [], 0
    chunks.append("".join(part).encode())
    return JsonText(chunks)


def handle(core, method: str, path: str, body: bytes,
           deadline: Optional[float] = None, ticket=None) -> tuple[int, dict | JsonText]:
    """One REST request -> (HTTP status, JSON body).

    Args:
        core: the ServingCore.
        method: the HTTP method.
        path: the request path (query included).
        body: the request body.
        deadline: time.monotonic() by which to answer, or None.
        ticket: the request's admission ticket (`serving.http_server`), or None; once it
            is cancelled (the client went away), the queued model call is not started.

    Returns:
        (status, body): a dict for errors, status and metadata; a `JsonText` for a predict
        answer, already encoded.
    """
    try:
        return 200, _dispatch(core, method, path, body, deadline, ticket)
    except ServingError as e:
        return e.http_status, {"error": e.message}
    except Exception as e:  # noqa: BLE001 - a request must never drop the connection
        log.exception("REST %s %s failed", method, path[:200])
        return 500, {"error": f"Internal error while handling the request: {type(e).__name__}."}


def parse_version(text: Optional[str]) -> Optional[int]:
    """The version of a path, or TF Serving's INVALID_ARGUMENT when it exceeds int64."""
    if text is None:
        return None
    # At most 19 digits after the leading zeros can fit: no int() of thousands of digits.
    digits = text.lstrip("0") or "0"
    if len(digits) > 19 or int(digits) >= 1 << 63:
        raise invalid(f"Failed to convert version: {text} to numeric.")
    return int(digits)


def _dispatch(core, method, path, body, deadline, ticket=None):
    m = _PATH.match(path.split("?", 1)[0])
    malformed = invalid(f"Malformed request: {method} {path}")
    if m is None:
        raise malformed
    name, version, label, verb, sub = m.groups()
    name = urllib.parse.unquote(name)   # TF Serving URL-decodes both (DecodeArg)
    label = None if label is None else urllib.parse.unquote(label)
    version = parse_version(version)
    if method == "POST" and verb:
        with core.metrics.request(name, verb, "REST") as call:
            return _post(core, name, version, label, verb, body, deadline, call, ticket)
    if method == "GET" and not verb:
        if sub == "metadata":
            request = get_model_metadata_pb2.GetModelMetadataRequest(
                metadata_field=["signature_def"])
            request.model_spec.name = name
            if version is not None:
                request.model_spec.version.value = version
            if label:
                request.model_spec.version_label = label
            response = core.metadata(request)
            sig_map = get_model_metadata_pb2.SignatureDefMap()
            response.metadata["signature_def"].Unpack(sig_map)
            return {"model_spec": json_format.MessageToDict(
                        response.model_spec, preserving_proto_field_name=True),
                    "metadata": {"signature_def": json_format.MessageToDict(
                        sig_map, preserving_proto_field_name=True)}}
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = name
        if version is not None:
            request.model_spec.version.value = version
        return json_format.MessageToDict(core.status(request), preserving_proto_field_name=True,
                                         always_print_fields_with_no_presence=True)
    raise malformed


def _post(core, name, version, label, verb, body, deadline, call, ticket=None):
    servable = core.models.resolve(name, version, label)
    call.version = servable.version
    doc = parse_json(body)
    signature = doc.get("signature_name", "")
    if not isinstance(signature, str):
        raise invalid("'signature_name' key must be a string value.")
    if verb != "predict":
        raise _not_predict(verb, servable, signature)
    key = signature or "serving_default"
    if key not in servable.signature_defs:
        raise invalid(f'Serving signature name: "{key}" not found in signature def')
    fmt, arrays = parse_predict(doc, servable.input_specs[key], core.limits.max_elements)
    expected = expected_outputs(servable.signature_defs[key], arrays)
    if expected is not None:   # refused before the model runs, when the shapes tell
        check_answer_size(fmt, expected, core.limits.max_response_bytes)
    key, outputs = core.predict_arrays(servable, key, arrays, deadline, ticket=ticket)
    return encode_predict(fmt, outputs, core.limits.max_response_bytes)


def expected_outputs(signature_def, arrays: dict[str, np.ndarray]):
    """Zero-cost stand-ins (broadcast views) of the outputs a request will get, or None.

    An output's unknown dimensions are the batch (the first) and, for the signatures
    with a horizon, the number of predicted frames (the second); any other unknown
    dimension makes the answer's size unknown before the call (None).
    """
    if not arrays:
        return None
    first = next(iter(arrays.values()))
    batch = first.shape[0] if first.ndim else 1
    horizons = np.asarray(arrays.get(C.HORIZON, ())).reshape(-1)
    horizon = int(horizons[0]) if horizons.size else None
    stand_ins = {}
    for alias, info in signature_def.outputs.items():
        dims = [d.size for d in info.tensor_shape.dim]
        if dims and dims[0] < 0:
            dims[0] = batch
        if len(dims) > 1 and dims[1] < 0 and horizon is not None:
            dims[1] = horizon
        dtype = tensors.numpy_dtype(info.dtype)
        if any(d < 0 for d in dims) or dtype is None:
            return None
        stand_ins[alias] = np.broadcast_to(np.zeros((), dtype), dims)
    return stand_ins


def _not_predict(verb, servable, signature: str):
    # Classify and Regress need signatures of that method; every vidgen signature is predict.
    method = {"classify": "classification", "regress": "regression"}[verb]
    want = {"classify": "tensorflow/serving/classify", "regress": "tensorflow/serving/regress"}
    key = signature or "serving_default"
    if key not in servable.signature_defs:
        return invalid(f"No signature was found with the name: {key}")
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                        f"Expected {method} signature method_name to be {want[verb]}. Was: "
                        f"{servable.signature_defs[key].method_name}")
