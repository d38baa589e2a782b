"""Server-side batching as TF Serving's shared batch scheduler does it.

Requests that may share a model call go to one queue (the caller's key: the
same loaded version and signature, equal input shapes beyond the first
dimension, equal horizon). A queue is a list of batches, the last one open:
a request joins the open batch, or closes it and opens the next when it does
not fit in `max_batch_size` examples or in the batcher's `max_batch_bytes`
(the merged, padded batch at the float32 working size; vidgen's bound, TF
Serving's BatchingParameters has none: a merged batch is one more copy of
every request in it, and the model's activations grow with it), or is
refused with TF Serving's UNAVAILABLE "The batch scheduling queue to which
this task was submitted is full; ..." when the queue already holds
`max_enqueued_batches` batches (a running batch no longer counts). A batch
becomes due when it is closed, full, or its first request has waited
`batch_timeout_micros`; `num_batch_threads` threads, shared by every queue,
take due batches round-robin over the queues.

A batch is merged by concatenating every input along dimension 0, padded up
to the next of `allowed_batch_sizes` with the first row of its last request
(batching_session.cc's MergeInputTensors), run once, and split back; the
padding rows are dropped. A request larger than `max_batch_bytes` alone runs
in a batch of its own. TF Serving keeps one queue per signature and fails a
whole merged batch whose requests disagree (different context lengths:
FAILED_PRECONDITION; different horizons: the graph's INVALID_ARGUMENT); the
finer key here means such requests are never merged.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Optional

import grpc
import numpy as np

from serving.batching_parameters import BatchingOptions
from serving.errors import ServingError, invalid


def _working_bytes(array: np.ndarray) -> int:
    """An array's bytes at the float32 working size (smaller dtypes count 4 bytes a value)."""
    array = np.asarray(array)
    return int(array.size) * max(4, array.dtype.itemsize)


class _Task:
    __slots__ = ("arrays", "size", "nbytes", "future", "enqueued", "deadline")

    def __init__(self, arrays: dict[str, np.ndarray], size: int,
                 deadline: Optional[float] = None):
        self.arrays = arrays
        self.size = size
        self.nbytes = sum(_working_bytes(v) for v in arrays.values())
        self.future: Future = Future()
        self.enqueued = time.monotonic()
        self.deadline = deadline

    def start(self, now: float) -> bool:
        """True if the task is to run: not cancelled, deadline not passed."""
        if not self.future.set_running_or_notify_cancel():
            return False
        if self.deadline is not None and now >= self.deadline:
            self.future.set_exception(
                ServingError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"))
            return False
        return True


class _Queue:
    """The batches of one key: closed ones waiting for a thread, then the open one."""

    def __init__(self, options: BatchingOptions, run: Callable[[dict], dict],
                 max_bytes: Optional[int] = None):
        self.options = options
        self.run = run
        self.max_bytes = max_bytes
        self.batches: list[list[_Task]] = [[]]
        self.sizes = [0]
        self.nbytes = [0]

    def merged_bytes(self, nbytes: int, size: int, last: _Task) -> int:
        """Bytes of a merged batch of `size` examples and `nbytes` bytes, padding included.

        Padding rows are copies of the last task's first row (see `_merge`).
        """
        padding = self.options.padded_size(size) - size
        return nbytes + (padding * last.nbytes // last.size if last.size else 0)

    def _fits(self, task: _Task) -> bool:
        size = self.sizes[-1] + task.size
        if size > self.options.max_batch_size:
            return False
        if self.max_bytes is None or not self.batches[-1]:
            return True   # a task larger than max_bytes alone runs alone
        return self.merged_bytes(self.nbytes[-1] + task.nbytes, size, task) <= self.max_bytes

    def add(self, task: _Task) -> None:
        o = self.options
        if not self._fits(task):
            if len(self.batches) >= o.max_enqueued_batches:
                raise ServingError(
                    grpc.StatusCode.UNAVAILABLE,
                    "The batch scheduling queue to which this task was submitted is full; "
                    f"currently {len(self.batches)} batches enqueued and max_enqueued_batches "
                    f"is {o.max_enqueued_batches}")
            self.batches.append([])
            self.sizes.append(0)
            self.nbytes.append(0)
        self.batches[-1].append(task)
        self.sizes[-1] += task.size
        self.nbytes[-1] += task.nbytes

    def due_at(self) -> Optional[float]:
        """time.monotonic() at which the front batch may run; None when there is none."""
        full = self.sizes[0] >= self.options.max_batch_size or (
            self.max_bytes is not None and self.nbytes[0] >= self.max_bytes)
        if len(self.batches) > 1 or full:
            return float("-inf")
        if not self.batches[0]:
            return None
        return self.batches[0][0].enqueued + self.options.timeout

    def pop(self) -> list[_Task]:
        self.sizes.pop(0)
        self.nbytes.pop(0)
        batch = self.batches.pop(0)
        if not self.batches:
            self.batches, self.sizes, self.nbytes = [[]], [0], [0]
        return batch

    def empty(self) -> bool:
        return len(self.batches) == 1 and not self.batches[0]


class Batcher:
    """Queues of compatible requests and the batch threads that run them.

    Args:
        num_batch_threads: batches run at the same time, over all queues.
        thread_pool_name: the threads' name prefix.
        max_batch_bytes: most bytes in one merged batch, padding included, at the float32
            working size (None: no bound but `max_batch_size`).

    Example:

        batcher = Batcher(2)
        future = batcher.submit(key, BatchingOptions(max_batch_size=8), run, arrays)
        outputs = future.result()
    """

    def __init__(self, num_batch_threads: int = 1, thread_pool_name: str = "batch_threads",
                 max_batch_bytes: Optional[int] = None):
        if num_batch_threads < 1:
            raise ValueError(f"num_batch_threads must be positive. Received: {num_batch_threads}")
        if max_batch_bytes is not None and max_batch_bytes < 1:
            raise ValueError(f"max_batch_bytes must be positive. Received: {max_batch_bytes}")
        self.max_batch_bytes = max_batch_bytes
        self._queues: dict[tuple, _Queue] = {}
        self._cv = threading.Condition()
        self._closed = False
        self._next = 0
        self.calls = 0        # model calls made,
        self.examples = 0     # the examples they held (examples / calls is the mean batch),
        self.padding = 0      # the padding rows added to them,
        self.batch_sizes: collections.Counter = collections.Counter()   # and their sizes
        self._threads = [threading.Thread(target=self._loop, name=f"{thread_pool_name}-{i}",
                                          daemon=True) for i in range(num_batch_threads)]
        for t in self._threads:
            t.start()

    def submit(self, key: tuple, options: BatchingOptions, run: Callable[[dict], dict],
               arrays: dict[str, np.ndarray], deadline: Optional[float] = None) -> Future:
        """Queues one request.

        Args:
            key: requests with equal keys may share a batch (see the module docstring).
            options: the queue's batching options (those of the first request of the key).
            run: arrays -> outputs, every output batched on its first dimension.
            arrays: the request's inputs, every one batched on its first dimension.
            deadline: time.monotonic() after which the request is dropped unrun, or None.

        Returns:
            A Future of the request's outputs.

        Raises:
            ServingError: TF Serving's INVALID_ARGUMENT for a rank-0 input, unequal first
                dimensions or a request larger than max_batch_size; UNAVAILABLE when the
                queue is full.
        """
        if any(np.ndim(v) == 0 for v in arrays.values()):
            raise invalid("Batching Run() input tensors must have at least one dimension")
        sizes = {int(v.shape[0]) for v in arrays.values()}
        if len(sizes) != 1:
            raise invalid("Batching Run() input tensors must have equal 0th-dimension size")
        (size,) = sizes
        if size > options.max_batch_size:
            raise invalid(f"Task size {size} is larger than maximum input batch size "
                          f"{options.max_batch_size}")
        task = _Task(arrays, size, deadline)
        with self._cv:
            if self._closed:
                raise ServingError(grpc.StatusCode.UNAVAILABLE, "The server is shutting down.")
            queue = self._queues.get(key)
            if queue is None:
                queue = self._queues[key] = _Queue(options, run, self.max_batch_bytes)
            queue.add(task)
            self._cv.notify_all()
        return task.future

    def close(self) -> None:
        """Cancels what is queued (its callers are gone by shutdown), then stops the threads."""
        with self._cv:
            self._closed = True
            for queue in self._queues.values():
                for batch in queue.batches:
                    for t in batch:
                        t.future.cancel()
            self._cv.notify_all()
        for t in self._threads:
            t.join()

    def _take(self) -> Optional[tuple[_Queue, list[_Task]]]:
        """Waits for a due batch; None once closed and drained."""
        with self._cv:
            while True:
                keys = list(self._queues)
                if not keys and self._closed:
                    return None
                now, wait = time.monotonic(), None
                for i in range(len(keys)):
                    key = keys[(self._next + i) % len(keys)]
                    queue = self._queues[key]
                    due = queue.due_at()
                    if due is None:
                        continue
                    if due <= now or self._closed:
                        self._next = (self._next + i + 1) % len(keys)
                        batch = queue.pop()
                        if queue.empty():
                            del self._queues[key]
                        return queue, batch
                    wait = due - now if wait is None else min(wait, due - now)
                self._cv.wait(wait)

    def _loop(self) -> None:
        while True:
            item = self._take()
            if item is None:
                return
            queue, tasks = item
            now = time.monotonic()
            live = [t for t in tasks if t.start(now)]
            if live:
                self._run(queue.options, queue.run, live)

    def _run(self, options: BatchingOptions, run: Callable[[dict], dict],
             tasks: list[_Task]) -> None:
        total = sum(t.size for t in tasks)
        padded = options.padded_size(total)
        with self._cv:
            self.calls += 1
            self.examples += total
            self.padding += padded - total
            self.batch_sizes[padded] += 1
        try:
            if len(tasks) == 1 and padded == total:
                outputs = [run(tasks[0].arrays)]
            else:
                outputs = _split(run(_merge(tasks, padded - total)), tasks, padded)
        except BaseException as e:  # noqa: BLE001 - handed to every waiting request
            for t in tasks:
                t.future.set_exception(e)
            return
        for t, o in zip(tasks, outputs):
            t.future.set_result(o)


def _merge(tasks: list[_Task], padding: int) -> dict[str, np.ndarray]:
    """Every input concatenated on dimension 0, then `padding` copies of the last row 0."""
    merged = {}
    for name in tasks[0].arrays:
        parts = [t.arrays[name] for t in tasks]
        if padding:
            parts.append(np.repeat(parts[-1][:1], padding, axis=0))
        merged[name] = np.concatenate(parts)
    return merged


def _split(outputs: dict[str, np.ndarray], tasks: list[_Task],
           padded: int) -> list[dict[str, np.ndarray]]:
    """Each task's rows of every output (batching_session.cc's SplitOutputTensors)."""
    for value in outputs.values():
        if np.ndim(value) == 0:
            raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                               "Batched output tensor has 0 dimensions")
        if value.shape[0] != padded:
            raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                               "Batched output tensor's 0th dimension does not equal the sum "
                               "of the 0th dimension sizes of the input tensors")
    bounds = np.cumsum([0] + [t.size for t in tasks])
    return [{k: v[bounds[i]:bounds[i + 1]] for k, v in outputs.items()}
            for i in range(len(tasks))]
