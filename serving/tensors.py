"""Request tensors checked against a signature before TensorFlow sees them.

Two steps, in TF Serving's order and then beyond it:

1. `parse_proto`: the structure of a `TensorProto` (known dtype, known rank,
   dims >= 0, value count consistent with the shape) without allocating the
   tensor; failing is TF Serving's `tensor parsing error: ALIAS`.
2. `check_input`: dtype (TF Serving's `Expects arg[i] to be float but uint8
   is provided`), then what TF Serving leaves to the graph: rank, shape,
   element count, byte size, and NaN/Inf, each an INVALID_ARGUMENT that names
   the input, what was expected and what was received.

Only then is the tensor decoded (`ProtoTensor.decode`) and handed to the model.

Short value lists. TensorFlow's `Tensor::FromProto` (tensor.cc, FromProtoField)
accepts a value list shorter than the shape: no value fills the tensor with
zeros, and k < n values are followed by copies of the last one. TF Serving
takes that as it is, so a request of a few bytes can declare a tensor of
hundreds of megabytes. Here a value list holds 0, 1 or every value: 0 and 1
are fills (`tf.make_tensor_proto(0.5, shape=...)` writes one value), any other
short list is refused (it is a truncated tensor more often than a fill, and
its padding would feed the model values nobody sent). The size a tensor takes
once decoded, padding included, is what the limits count (`decoded_bytes`),
and it is checked from the shape before anything is allocated.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

import numpy as np
from tensorflow.core.framework import tensor_pb2, types_pb2

from serving.errors import invalid

# DataType enum -> (numpy dtype, TensorProto value field, values per element).
_FIELDS = {
    types_pb2.DT_FLOAT: (np.float32, "float_val", 1),
    types_pb2.DT_DOUBLE: (np.float64, "double_val", 1),
    types_pb2.DT_INT32: (np.int32, "int_val", 1),
    types_pb2.DT_UINT8: (np.uint8, "int_val", 1),
    types_pb2.DT_INT16: (np.int16, "int_val", 1),
    types_pb2.DT_INT8: (np.int8, "int_val", 1),
    types_pb2.DT_UINT16: (np.uint16, "int_val", 1),
    types_pb2.DT_INT64: (np.int64, "int64_val", 1),
    types_pb2.DT_UINT32: (np.uint32, "uint32_val", 1),
    types_pb2.DT_UINT64: (np.uint64, "uint64_val", 1),
    types_pb2.DT_BOOL: (np.bool_, "bool_val", 1),
    types_pb2.DT_HALF: (np.float16, "half_val", 1),
    types_pb2.DT_COMPLEX64: (np.complex64, "scomplex_val", 2),
    types_pb2.DT_COMPLEX128: (np.complex128, "dcomplex_val", 2),
    types_pb2.DT_STRING: (object, "string_val", 1),
}
_NUMPY_TO_DT = {np.dtype(v[0]): k for k, v in _FIELDS.items() if v[0] is not object}

# TensorFlow's DataTypeString spelling, which TF Serving's messages use.
_TF_NAMES = {types_pb2.DT_FLOAT: "float", types_pb2.DT_DOUBLE: "double",
             types_pb2.DT_HALF: "half"}


def dtype_name(dtype: int) -> str:
    """TensorFlow's name for a DataType enum value ("float", "uint8", "int32", ...)."""
    if dtype in _TF_NAMES:
        return _TF_NAMES[dtype]
    name = types_pb2.DataType.Name(dtype) if dtype in types_pb2.DataType.values() else None
    return name[3:].lower() if name else f"unknown dtype {dtype}"


def numpy_dtype(dtype: int) -> np.dtype | None:
    """The numpy dtype of a TensorFlow `DataType` enum value; None for strings and unknowns."""
    field = _FIELDS.get(dtype)
    return None if field is None or field[0] is object else np.dtype(field[0])


def dt_of(array: np.ndarray) -> int:
    """The DataType enum of a numpy array."""
    return _NUMPY_TO_DT.get(array.dtype, types_pb2.DT_INVALID)


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """One signature input: DataType enum and shape (-1 = any size; None = any rank)."""

    dtype: int
    shape: Optional[tuple[int, ...]]

    @classmethod
    def from_tensor_info(cls, info) -> InputSpec:
        shape = info.tensor_shape
        return cls(info.dtype, None if shape.unknown_rank else tuple(d.size for d in shape.dim))


@dataclasses.dataclass
class ProtoTensor:
    """A TensorProto whose structure was checked, not yet decoded."""

    dtype: int
    shape: tuple[int, ...]
    proto: tensor_pb2.TensorProto

    def decode(self) -> np.ndarray:
        np_dtype, field, per = _FIELDS[self.dtype]
        n = math.prod(self.shape)
        if self.proto.tensor_content:
            return np.frombuffer(self.proto.tensor_content, np_dtype).reshape(self.shape).copy()
        values = getattr(self.proto, field)
        if self.dtype == types_pb2.DT_HALF:
            raw = np.asarray(values, np.uint16).view(np.float16)
        elif per == 2:
            pairs = np.asarray(values, np.float64).reshape(-1, 2)
            raw = (pairs[:, 0] + 1j * pairs[:, 1]).astype(np_dtype)
        elif np_dtype is object:
            raw = np.asarray(list(values), object)
        else:
            # int_val holds int32: cast like TensorFlow does (wrap, not raise).
            raw = np.asarray(values).astype(np_dtype)
        if len(raw) == 0:
            out = np.zeros(n, np_dtype) if np_dtype is not object else np.full(n, b"", object)
        elif len(raw) < n:
            # TensorFlow repeats the last value to fill the shape.
            out = np.concatenate([raw, np.repeat(raw[-1:], n - len(raw))])
        else:
            out = raw
        return out.reshape(self.shape)


def decoded_bytes(dtype: int, shape: tuple[int, ...]) -> int:
    """Bytes a tensor of `dtype` and `shape` takes once decoded (a string counts 1 a value)."""
    np_dtype = _FIELDS[dtype][0] if dtype in _FIELDS else object
    return math.prod(shape) * (np.dtype(np_dtype).itemsize if np_dtype is not object else 1)


def working_bytes(dtype: int, shape: tuple[int, ...]) -> int:
    """Bytes a tensor takes at the float32 working size: the graph casts smaller dtypes up.

    Why: predict_uint8 decodes to a quarter of what its graph holds, so a budget that
    counts decoded bytes counts every value at 4 bytes at least (larger dtypes at theirs).
    """
    np_dtype = numpy_dtype(dtype)
    count = math.prod(shape)
    return count if np_dtype is None else count * max(4, np_dtype.itemsize)


def parse_proto(alias: str, proto: tensor_pb2.TensorProto, max_elements: int) -> ProtoTensor:
    """Checks the structure of `proto`, like TensorFlow's Tensor::FromProto, without decoding.

    Raises:
        ServingError: INVALID_ARGUMENT `tensor parsing error: ALIAS`, or a value list
            that is neither a fill (0 or 1 value) nor complete.
    """
    error = invalid(f"tensor parsing error: {alias}")
    if proto.dtype not in _FIELDS or proto.tensor_shape.unknown_rank:
        raise error
    dims = tuple(int(d.size) for d in proto.tensor_shape.dim)
    if any(d < 0 for d in dims):
        raise error
    n = math.prod(dims)
    if n > max_elements:
        # Too large to hold: reported by check_input, which names the limit.
        return ProtoTensor(proto.dtype, dims, proto)
    np_dtype, field, per = _FIELDS[proto.dtype]
    if proto.tensor_content:
        if np_dtype is object or len(proto.tensor_content) != n * np.dtype(np_dtype).itemsize:
            raise error
    else:
        count = len(getattr(proto, field))
        if count % per or count // per > n or (count and n == 0):
            raise error
        if 1 < count // per < n:
            raise invalid(f"Input '{alias}': expected 1 value (a fill) or all {n} values in "
                          f"{field} for shape {_fmt(dims)}, received {count // per}.")
    return ProtoTensor(proto.dtype, dims, proto)


def _fmt(shape) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def check_input(signature: str, alias: str, index: int, spec: InputSpec, dtype: int,
                shape: tuple[int, ...], max_elements: int, max_bytes: int) -> None:
    """Checks dtype, rank, shape, element count and byte size of one input.

    Args:
        signature: the signature key (for messages).
        alias: the input name.
        index: the input's position among the signature's inputs (TF Serving's arg index).
        spec: what the signature declares.
        dtype, shape: what the request holds.
        max_elements, max_bytes: the server's limits for one input tensor.

    Raises:
        ServingError: INVALID_ARGUMENT.
    """
    if dtype != spec.dtype:
        raise invalid(f"Expects arg[{index}] to be {dtype_name(spec.dtype)} but "
                      f"{dtype_name(dtype)} is provided")
    where = f"Input '{alias}' of signature '{signature}'"
    if spec.shape is not None:
        if len(shape) != len(spec.shape):
            raise invalid(f"{where}: expected rank {len(spec.shape)} with shape "
                          f"{_fmt(spec.shape)} (-1 = any size), received rank {len(shape)} "
                          f"with shape {_fmt(shape)}.")
        for want, got in zip(spec.shape, shape):
            if want >= 0 and want != got:
                raise invalid(f"{where}: expected shape {_fmt(spec.shape)} (-1 = any size), "
                              f"received {_fmt(shape)}.")
    n = math.prod(shape)
    if n > max_elements:
        raise invalid(f"{where}: expected at most {max_elements} elements, received {n} "
                      f"(shape {_fmt(shape)}).")
    size = decoded_bytes(dtype, shape)
    if size > max_bytes:
        raise invalid(f"{where}: expected at most {max_bytes} bytes, received {size} "
                      f"(shape {_fmt(shape)}).")


def check_values(signature: str, alias: str, array: np.ndarray) -> None:
    """Rejects NaN and Inf in a floating-point input."""
    if array.dtype.kind in "fc" and array.size and not np.isfinite(array).all():
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise invalid(f"Input '{alias}' of signature '{signature}': expected finite values, "
                      f"received {bad} NaN or Inf.")


def check_uniform(signature: str, alias: str, array: np.ndarray) -> None:
    """Rejects a batched input whose rows differ (an input one request gives one value).

    Why: TF Serving's batching concatenates such an input across the requests it
    merges, so the model can only accept a batch whose rows agree.
    """
    rows = np.asarray(array).reshape(len(array), -1) if np.ndim(array) else None
    if rows is None or len(rows) < 2 or (rows == rows[:1]).all():
        return
    distinct = np.unique(rows, axis=0)
    shown = ", ".join(str(r.item() if r.size == 1 else r.tolist()) for r in distinct[:5])
    raise invalid(f"Input '{alias}' of signature '{signature}': expected the same value for "
                  f"every example of the batch (TF Serving's batching concatenates this input "
                  f"across the requests it merges), received {len(distinct)} different "
                  f"values: {shown}{', ...' if len(distinct) > 5 else ''}.")


def to_proto(array: np.ndarray) -> tensor_pb2.TensorProto:
    """A numpy array as a TensorProto with tensor_content (the compact form)."""
    array = np.asarray(array, order="C")
    proto = tensor_pb2.TensorProto(dtype=dt_of(array))
    for d in array.shape:
        proto.tensor_shape.dim.add().size = d
    proto.tensor_content = array.tobytes()
    return proto


def from_proto(proto: tensor_pb2.TensorProto) -> np.ndarray:
    """A TensorProto (any encoding TF Serving uses) as a numpy array."""
    dims = tuple(int(d.size) for d in proto.tensor_shape.dim)
    return ProtoTensor(proto.dtype, dims, proto).decode()
