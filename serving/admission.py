"""The server-wide bound on work in flight, shared by the gRPC and REST front ends.

TF Serving sheds load when its queues are full instead of queueing without
end; vidgen's server does the same one step earlier: a request is admitted
only while fewer than `max_requests` requests and fewer than `max_bytes`
request bytes are in flight, and is otherwise answered RESOURCE_EXHAUSTED
(REST: 429) at once. Every admitted request submits at most one model call,
so the model pool's and the batcher's queues are bounded by the same numbers.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future

import grpc

from serving.errors import ServingError


class Admission:
    """Counts requests and request bytes in flight; refuses what goes beyond the limits.

    Args:
        max_requests: requests in flight at most (vidgen's --max_in_flight_requests).
        max_bytes: request bytes in flight at most (vidgen's --max_in_flight_bytes).

    Example:

        admission = Admission(32, 1 << 30)
        with admission.admit(len(body)) as ticket:
            ...   # run the request; `ticket.cancel()` when the client goes away
    """

    def __init__(self, max_requests: int, max_bytes: int):
        if max_requests < 1:
            raise ValueError(f"max_requests must be positive. Received: {max_requests}")
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be positive. Received: {max_bytes}")
        self.max_requests = max_requests
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self.requests = 0
        self.bytes = 0
        self.refused = 0

    def admit(self, nbytes: int) -> _Ticket:
        """A ticket for one request of `nbytes` bytes (release it, or use it in `with`).

        Raises:
            ServingError: RESOURCE_EXHAUSTED when the request does not fit.
        """
        with self._lock:
            if self.requests >= self.max_requests:
                self.refused += 1
                raise ServingError(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"The server already has {self.requests} requests in flight, its limit "
                    f"(--max_in_flight_requests {self.max_requests}); retry later.")
            if self.bytes + nbytes > self.max_bytes:
                self.refused += 1
                raise ServingError(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"A request of {nbytes} bytes does not fit: {self.bytes} request bytes "
                    f"are in flight and the limit is {self.max_bytes} "
                    "(--max_in_flight_bytes); retry later.")
            self.requests += 1
            self.bytes += nbytes
        return _Ticket(self, nbytes)

    def _release(self, nbytes: int) -> None:
        with self._lock:
            self.requests -= 1
            self.bytes -= nbytes


class _Ticket:
    """One admitted request: released once, and cancelled when its client goes away."""

    def __init__(self, admission: Admission, nbytes: int):
        self._admission = admission
        self._nbytes = nbytes
        self._lock = threading.Lock()
        self._released = False
        self.cancelled = threading.Event()
        self._futures: list[Future] = []

    def watch(self, future: Future) -> None:
        """Cancels `future` (if it has not started) when the ticket is cancelled."""
        with self._lock:
            self._futures.append(future)
        if self.cancelled.is_set():
            future.cancel()

    def cancel(self) -> None:
        """The client went away: queued work of this request is dropped."""
        self.cancelled.set()
        with self._lock:
            futures = list(self._futures)
        for f in futures:
            f.cancel()

    def release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        self._admission._release(self._nbytes)

    def __enter__(self) -> _Ticket:
        return self

    def __exit__(self, *exc) -> None:
        self.release()
