"""Server-side batching: requests that can share one model call are stacked into it.

Requests are compatible when they go to the same loaded version and
signature, their batched inputs agree in every dimension but the first, and
their scalar inputs (the horizon) are equal. A batch is run when it holds
`max_batch_size` examples or its oldest request has waited `timeout`
seconds, whichever comes first (TF Serving's `max_batch_size` and
`batch_timeout_micros`). A request larger than `max_batch_size` is refused
with TF Serving's message, as TF Serving does without large-batch splitting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np

from serving.errors import invalid


class _Task:
    __slots__ = ("arrays", "size", "future", "enqueued")

    def __init__(self, arrays, size):
        self.arrays = arrays
        self.size = size
        self.future: Future = Future()
        self.enqueued = time.monotonic()


class Batcher:
    """Queues compatible requests and runs them together.

    Args:
        max_batch_size: most examples in one model call.
        timeout: seconds the oldest request of a batch may wait for others.
        threads: batches run at the same time.
    """

    def __init__(self, max_batch_size: int, timeout: float, threads: int = 1):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be positive. Received: {max_batch_size}")
        if timeout < 0:
            raise ValueError(f"batch timeout must be >= 0. Received: {timeout}")
        self.max_batch_size = max_batch_size
        self.timeout = timeout
        self._queues: dict[tuple, tuple[Callable, list[_Task]]] = {}
        self._cv = threading.Condition()
        self._closed = False
        self.calls = 0        # model calls made, and
        self.examples = 0     # examples they held: examples / calls is the mean batch
        self._threads = [threading.Thread(target=self._loop, name=f"batcher-{i}", daemon=True)
                         for i in range(threads)]
        for t in self._threads:
            t.start()

    def submit(self, key: tuple, run: Callable[[dict], dict], arrays: dict[str, np.ndarray],
               batched: list[str]) -> Future:
        """Queues one request.

        Args:
            key: requests with equal keys may share a call (see the module docstring).
            run: arrays -> outputs, each output batched on its first dimension.
            arrays: the request's inputs.
            batched: names of the inputs stacked on their first dimension.

        Returns:
            A Future of the request's outputs.
        """
        size = int(arrays[batched[0]].shape[0])
        if size > self.max_batch_size:
            raise invalid(f"Task size {size} is larger than maximum input batch size "
                          f"{self.max_batch_size}")
        task = _Task(arrays, size)
        with self._cv:
            if self._closed:
                raise RuntimeError("The batcher is closed.")
            entry = self._queues.setdefault(key, (run, batched, []))
            entry[2].append(task)
            self._cv.notify_all()
        return task.future

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        for t in self._threads:
            t.join()

    def _take(self):
        """Waits for a batch to be due; returns (run, batched, tasks) or None when closed."""
        with self._cv:
            while True:
                if not self._queues:
                    if self._closed:
                        return None
                    self._cv.wait()
                    continue
                key = min(self._queues, key=lambda k: self._queues[k][2][0].enqueued)
                run, batched, tasks = self._queues[key]
                due = tasks[0].enqueued + self.timeout
                now = time.monotonic()
                if sum(t.size for t in tasks) < self.max_batch_size and now < due \
                        and not self._closed:
                    self._cv.wait(due - now)
                    continue
                taken, total = [], 0
                while tasks and total + tasks[0].size <= self.max_batch_size:
                    total += tasks[0].size
                    taken.append(tasks.pop(0))
                if not tasks:
                    del self._queues[key]
                return run, batched, taken

    def _loop(self) -> None:
        while True:
            item = self._take()
            if item is None:
                return
            run, batched, tasks = item
            live = [t for t in tasks if t.future.set_running_or_notify_cancel()]
            if not live:
                continue
            self.calls += 1
            self.examples += sum(t.size for t in live)
            try:
                if len(live) == 1:
                    outputs = [run(live[0].arrays)]
                else:
                    merged = dict(live[0].arrays)
                    for name in batched:
                        merged[name] = np.concatenate([t.arrays[name] for t in live])
                    out = run(merged)
                    bounds = np.cumsum([0] + [t.size for t in live])
                    outputs = [{k: v[bounds[i]:bounds[i + 1]] for k, v in out.items()}
                               for i in range(len(live))]
            except BaseException as e:  # noqa: BLE001 - handed to every waiting request
                for t in live:
                    t.future.set_exception(e)
                continue
            for t, o in zip(live, outputs):
                t.future.set_result(o)
