"""The server-wide bound on work in flight, shared by the gRPC and REST front ends.

TF Serving sheds load when its queues are full instead of queueing without
end; vidgen's server does the same one step earlier: a request is admitted
only while fewer than `max_requests` requests and fewer than `max_bytes`
request bytes are in flight, and is otherwise answered RESOURCE_EXHAUSTED
(REST: 429) at once. Every admitted request submits at most one model call,
so the model pool's and the batcher's queues are bounded by the same numbers.

A request is admitted at its wire size (all a front end knows), then, once its
shapes are checked and before anything is decoded, `ServingCore` raises its
charge to what it decodes to (`_Ticket.charge`): a one-value fill of a few
bytes can declare a tensor of megabytes, and that is what it would hold. A
request thus holds the larger of its wire size and its decoded size.
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

    def reserve(self, nbytes: int, wire: int = 0) -> _Ticket:
        """A ticket for `nbytes` bytes that counts no request (a request admitted elsewhere).

        Args:
            nbytes: the bytes to hold.
            wire: the request's wire size, for the message (0: unknown).

        Raises:
            ServingError: RESOURCE_EXHAUSTED when the bytes do not fit.
        """
        ticket = _Ticket(self, 0, counts_request=False)
        ticket.charge(nbytes, wire)
        return ticket

    def _grow(self, ticket: _Ticket, nbytes: int, wire: int) -> None:
        with self._lock:
            extra = nbytes - ticket._nbytes
            if extra <= 0:
                return
            others = self.bytes - ticket._nbytes
            if nbytes > self.max_bytes or self.bytes + extra > self.max_bytes:
                self.refused += 1
                on_wire = f"; {wire} bytes on the wire" if wire else ""
                what = (f"A request that decodes to {nbytes} bytes (its float32 working size, "
                        f"fills and padding included{on_wire})")
                if nbytes > self.max_bytes:
                    raise ServingError(
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"{what} exceeds the limit of {self.max_bytes} request bytes in flight "
                        "(--max_in_flight_bytes) even alone; raise --max_in_flight_bytes or "
                        "send a smaller request.")
                raise ServingError(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"{what} does not fit: {others} request bytes are in flight and the limit "
                    f"is {self.max_bytes} (--max_in_flight_bytes); retry later.")
            self.bytes += extra
            ticket._nbytes = nbytes

    def _release(self, ticket: _Ticket) -> None:
        with self._lock:
            if ticket.counts_request:
                self.requests -= 1
            self.bytes -= ticket._nbytes


class _Ticket:
    """One admitted request: released once, and cancelled when its client goes away."""

    def __init__(self, admission: Admission, nbytes: int, counts_request: bool = True):
        self._admission = admission
        self._nbytes = nbytes
        self.counts_request = counts_request
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

    @property
    def nbytes(self) -> int:
        """The bytes this ticket holds against the budget."""
        return self._nbytes

    @property
    def released(self) -> bool:
        return self._released

    def charge(self, nbytes: int, wire: int = 0) -> None:
        """Raises the bytes this ticket holds to `nbytes` (no change if it holds more).

        Args:
            nbytes: what the request decodes to (checked from its shapes, before decoding).
            wire: the request's wire size, for the message (0: unknown).

        Raises:
            ServingError: RESOURCE_EXHAUSTED when the larger charge does not fit; the
                ticket keeps what it held.
        """
        with self._lock:
            if self._released:
                return
            self._admission._grow(self, nbytes, wire)

    def release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
            self._admission._release(self)

    def __enter__(self) -> _Ticket:
        return self

    def __exit__(self, *exc) -> None:
        self.release()
