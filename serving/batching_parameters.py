"""TF Serving's batching parameters: `--batching_parameters_file` and a model's own file.

Both files are TF Serving's `BatchingParameters` message in protobuf text
format (tensorflow_serving/servables/tensorflow/session_bundle_config.proto).
The tensorflow-serving-api package does not ship that proto's Python module,
so the message is built here from its definition (same package, names, types
and numbers) in a descriptor pool of its own, and `google.protobuf.text_format`
parses it: a file TF Serving accepts parses, and an unknown field or a wrong
type is refused with the parser's line and column.

What is honoured (TF Serving's defaults when a field is absent, from
SharedBatchScheduler::Options and ::QueueOptions, and server.cc's thread pool
name): max_batch_size (1000), batch_timeout_micros (0), max_enqueued_batches
(10), num_batch_threads (the machine's cores), thread_pool_name
("model_server_batch_threads"), allowed_batch_sizes (pad each batch up to the
next size, with the first row of its last request, as batching_session.cc
does). Refused with one sentence: `pad_variable_length_inputs: true` (TF
Serving pads every shorter dimension at its end with the tensor's first
value: a shorter context would be fed frames that were never observed, so
its prediction would change) and `enable_large_batch_splitting: true` (not
implemented; without it, as here, TF Serving refuses a request larger than
max_batch_size).

Example:

    options = BatchingOptions.from_file("serving/deploy/batching_parameters.txt")
    options.max_batch_size   # 16
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional

from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    message_factory,
    text_format,
    wrappers_pb2,
)

# (name, number, kind) of every field of tensorflow.serving.BatchingParameters that TF
# Serving documents; text format matches fields by name.
_INT64, _STRING, _BOOL = "Int64Value", "StringValue", "BoolValue"
_FIELDS = (
    ("max_batch_size", 1, _INT64),
    ("batch_timeout_micros", 2, _INT64),
    ("max_enqueued_batches", 3, _INT64),
    ("num_batch_threads", 4, _INT64),
    ("thread_pool_name", 5, _STRING),
    ("allowed_batch_sizes", 6, "repeated int64"),
    ("pad_variable_length_inputs", 7, "bool"),
    ("enable_large_batch_splitting", 8, _BOOL),
    ("max_execution_batch_size", 9, _INT64),
)


def _message_class():
    """The BatchingParameters message class, from TF Serving's own module when installed."""
    try:
        from tensorflow_serving.servables.tensorflow import session_bundle_config_pb2
        return session_bundle_config_pb2.BatchingParameters
    except ImportError:
        pass
    F = descriptor_pb2.FieldDescriptorProto
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)
    proto = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/servables/tensorflow/session_bundle_config.proto",
        package="tensorflow.serving", syntax="proto3", dependency=[wrappers.name])
    message = proto.message_type.add(name="BatchingParameters")
    for name, number, kind in _FIELDS:
        field = message.field.add(name=name, number=number, label=F.LABEL_OPTIONAL)
        if kind == "repeated int64":
            field.type, field.label = F.TYPE_INT64, F.LABEL_REPEATED
        elif kind == "bool":
            field.type = F.TYPE_BOOL
        else:
            field.type, field.type_name = F.TYPE_MESSAGE, f".google.protobuf.{kind}"
    pool.Add(proto)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters"))


BatchingParameters = _message_class()


def _max_parallelism() -> int:
    """TF's port::MaxParallelism(): the cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


@dataclasses.dataclass(frozen=True)
class BatchingOptions:
    """What `--enable_batching` configures, with TF Serving's defaults.

    Args:
        max_batch_size: most examples in one batch; a larger request is refused.
        batch_timeout_micros: how long the oldest request of a batch that is not full
            waits for others (0: a batch runs as soon as a batch thread is free).
        max_enqueued_batches: batches a queue may hold (not counting those running); a
            request that would need one more is refused with UNAVAILABLE.
        num_batch_threads: batches run at the same time, shared by every model.
        thread_pool_name: the batch threads' name.
        allowed_batch_sizes: increasing sizes, the last equal to max_batch_size; every
            batch is padded up to the next one. Empty: no padding.
        per_model: read each version's own `batching_params.pbtxt` for everything but the
            thread pool (`--enable_per_model_batching_parameters`); a version without
            one is served without batching, as TF Serving does.
        source: where the values came from, for messages.
    """

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = dataclasses.field(default_factory=_max_parallelism)
    thread_pool_name: str = "model_server_batch_threads"
    allowed_batch_sizes: tuple[int, ...] = ()
    per_model: bool = False
    source: str = "TF Serving's defaults"

    def __post_init__(self):
        object.__setattr__(self, "allowed_batch_sizes", tuple(self.allowed_batch_sizes))
        for name in ("max_batch_size", "max_enqueued_batches", "num_batch_threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive. Received: {getattr(self, name)} "
                                 f"({self.source})")
        if self.batch_timeout_micros < 0:
            raise ValueError("batch_timeout_micros must be >= 0. Received: "
                             f"{self.batch_timeout_micros} ({self.source})")
        sizes = self.allowed_batch_sizes
        if any(b <= a for a, b in zip(sizes, sizes[1:])) or (sizes and sizes[0] < 1):
            # TF Serving's wording (batching_session.cc), then what was received.
            raise ValueError("allowed_batch_sizes entries must be monotonically increasing. "
                             f"Received: {list(sizes)} ({self.source})")
        if sizes and sizes[-1] != self.max_batch_size:
            raise ValueError("Last entry in allowed_batch_sizes must match max_batch_size; "
                             f"last entry was {sizes[-1]}; expected {self.max_batch_size} "
                             f"({self.source})")

    @property
    def timeout(self) -> float:
        """batch_timeout_micros in seconds."""
        return self.batch_timeout_micros / 1e6

    def padded_size(self, size: int) -> int:
        """The smallest allowed batch size >= `size` (`size` itself when none is set)."""
        return next((s for s in self.allowed_batch_sizes if s >= size), size)

    def describe(self) -> str:
        """One line for the start-up message."""
        text = (f"max_batch_size {self.max_batch_size}, batch_timeout_micros "
                f"{self.batch_timeout_micros}, max_enqueued_batches {self.max_enqueued_batches}"
                f", num_batch_threads {self.num_batch_threads}")
        if self.allowed_batch_sizes:
            text += f", allowed_batch_sizes {list(self.allowed_batch_sizes)}"
        return f"{text} ({self.source})"

    @classmethod
    def from_text(cls, text: str, source: str, per_model: bool = False,
                  threads: Optional[BatchingOptions] = None) -> BatchingOptions:
        """Parses BatchingParameters text.

        Args:
            text: the file's contents.
            source: the file's name, for messages.
            per_model: as the field of the same name.
            threads: for a model's own file, the server's options, whose thread pool
                (name and size) is used instead of the file's, as TF Serving does.

        Raises:
            ValueError: one sentence naming `source`.
        """
        try:
            message = text_format.Parse(text, BatchingParameters())
        except text_format.ParseError as e:
            raise ValueError(f"{source} is not a TF Serving BatchingParameters text proto: "
                             f"{e}") from None
        if message.pad_variable_length_inputs:
            raise ValueError(
                f"{source} sets pad_variable_length_inputs: true, which this server refuses: "
                "TF Serving would pad a shorter context at its end with the tensor's first "
                "value, feeding the model frames that were never observed and changing its "
                "prediction. Leave it false and send equal context lengths.")
        if message.HasField("enable_large_batch_splitting") and \
                message.enable_large_batch_splitting.value:
            raise ValueError(f"{source} sets enable_large_batch_splitting: this server does "
                             "not split requests; remove it (a request larger than "
                             "max_batch_size is then refused, as TF Serving does without it).")
        values = {name: getattr(message, name).value for name, _, kind in _FIELDS
                  if kind in (_INT64, _STRING) and message.HasField(name)}
        values.pop("max_execution_batch_size", None)   # only used with splitting
        values["allowed_batch_sizes"] = tuple(message.allowed_batch_sizes)
        if threads is not None:
            values["num_batch_threads"] = threads.num_batch_threads
            values["thread_pool_name"] = threads.thread_pool_name
        return cls(**values, per_model=per_model, source=source)

    @classmethod
    def from_file(cls, path: str, per_model: bool = False,
                  threads: Optional[BatchingOptions] = None) -> BatchingOptions:
        """Reads a BatchingParameters text file (see `from_text`)."""
        try:
            with open(path) as f:
                text = f.read()
        except OSError as e:
            raise ValueError(f"Cannot read the batching parameters {path!r}: "
                             f"{e.strerror}.") from None
        return cls.from_text(text, path, per_model, threads)
