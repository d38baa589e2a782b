"""The HTTP side of the local server: TF Serving's REST API and, if enabled, Prometheus metrics.

As in TF Serving (model_servers/http_server.cc), only paths under /v1/ reach
the REST API; the metrics page is served on its configured path; any other
path is a 404.

Bounded: at most `max_connections` connection threads (beyond: a 503 and the
connection closed, from the accepting thread); a connection may spend at most
`read_timeout` seconds reading a request line and headers, or a body, after
which its socket is shut for reading (slow and idle clients hold no thread
for long); on drain, idle keep-alive connections are closed at once and busy
ones after their answer. Every answer of the REST API is JSON, errors
included: an unexpected exception is a 500 `{"error": ...}`, never a dropped
connection.

A REST predict takes its admission slot (shared with gRPC) only once its body
is in: a slow body holds a connection thread, never a slot of the model's work.
The bodies being received hold bytes of a budget of their own, as large as the
in-flight one (`--max_in_flight_bytes`): beyond it a request is answered 429
before its body is read, so memory stays bounded however many clients send
slowly, and gRPC is never starved by them.
While it waits for the model, a request whose client closed its connection is
cancelled like a gRPC call (its queued model call is not started). A malformed
request line or header gets a JSON body and a status line too.
"""

from __future__ import annotations

import json
import logging
import select
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional

import grpc

from serving import monitoring, rest
from serving.errors import ServingError

log = logging.getLogger("vidgen.serving")

# Seconds between two looks at the socket of a REST request waiting for its model call.
_PEER_POLL = 0.1


def _json_bytes(status: int, message: str, close: bool = True) -> bytes:
    body = json.dumps({"error": message}).encode()
    reason = {429: "Too Many Requests", 503: "Service Unavailable"}.get(status, "Error")
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n" + ("Connection: close\r\n" if close else "")
            + "\r\n").encode() + body


class _Connection:
    __slots__ = ("sock", "deadline", "busy")

    def __init__(self, sock, deadline: float):
        self.sock = sock
        self.deadline = deadline
        self.busy = False


class RestServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer with a connection cap, read deadlines and a prompt drain.

    Args:
        address: (host, port) to bind.
        handler: the request handler class (`make_handler`).
        max_connections: connection threads at most.
        read_timeout: seconds a connection may take to send a request line and headers (or
            stay idle between requests), and again to send the body.
    """

    daemon_threads = True     # drain() waits for them itself, up to its grace period
    block_on_close = False

    def __init__(self, address, handler, max_connections: int = 256,
                 read_timeout: float = 30.0):
        if max_connections < 1:
            raise ValueError(f"max_connections must be positive. Received: {max_connections}")
        self.max_connections = max_connections
        self.read_timeout = read_timeout
        self._cv = threading.Condition()
        self._connections: dict[int, _Connection] = {}
        self._draining = False
        self._closed = False
        super().__init__(address, handler)
        self._reaper = threading.Thread(target=self._reap, name="rest-reaper", daemon=True)
        self._reaper.start()

    # ---- connections --------------------------------------------------------------

    def process_request(self, request, client_address):
        with self._cv:
            full = len(self._connections) >= self.max_connections or self._draining
            if not full:
                self._connections[id(request)] = _Connection(
                    request, time.monotonic() + self.read_timeout)
                self._cv.notify_all()
        if full:
            self._refuse(request)
            return
        super().process_request(request, client_address)

    def _refuse(self, request) -> None:
        message = ("The server is shutting down." if self._draining else
                   f"The server already holds {self.max_connections} REST connections, its "
                   "limit (--max_rest_connections); retry later.")
        try:
            request.settimeout(1.0)
            request.sendall(_json_bytes(503, message))
        except OSError:
            pass
        self.shutdown_request(request)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._cv:
                self._connections.pop(id(request), None)
                self._cv.notify_all()

    def reading(self, request, body: bool = False) -> bool:
        """The connection waits for a request (or its body); False once draining."""
        with self._cv:
            conn = self._connections.get(id(request))
            if conn is not None:
                conn.busy = False
                conn.deadline = time.monotonic() + self.read_timeout
                self._cv.notify_all()
            return not self._draining or body

    def busy(self, request) -> bool:
        """The request was read and is being answered; False when draining (answer 503)."""
        with self._cv:
            conn = self._connections.get(id(request))
            if conn is not None:
                conn.busy = True
            return not self._draining

    def _reap(self) -> None:
        """Shuts the read side of connections past their read deadline (or idle, on drain)."""
        with self._cv:
            while not self._closed:
                now, wait = time.monotonic(), None
                for conn in self._connections.values():
                    # Already shut (deadline inf): a wait of inf would overflow and kill this
                    # thread, leaving every later connection without a read deadline.
                    if conn.busy or conn.deadline == float("inf"):
                        continue
                    if self._draining or conn.deadline <= now:
                        _shut_read(conn.sock)
                        conn.deadline = float("inf")
                    else:
                        wait = conn.deadline - now if wait is None else min(wait,
                                                                            conn.deadline - now)
                self._cv.wait(wait)

    def drain(self, grace: float) -> bool:
        """Stops accepting, closes idle connections, waits up to `grace` s for busy ones.

        Returns:
            True if every connection closed within `grace`.
        """
        end = time.monotonic() + grace
        with self._cv:
            self._draining = True
            self._cv.notify_all()
            while self._connections:
                left = end - time.monotonic()
                if left <= 0:
                    break
                self._cv.wait(left)
            done = not self._connections
            self._closed = True
            self._cv.notify_all()
        self.server_close()
        if not done:
            log.warning("REST: %d connections still open after the %.1f s drain; closed "
                        "without waiting for them.", len(self._connections), grace)
        return done


def _shut_read(sock) -> None:
    try:
        sock.shutdown(socket.SHUT_RD)
    except OSError:
        pass


def _peer_closed(sock) -> bool:
    """The client closed (or reset) its connection; bytes it sent since do not count as gone."""
    try:
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        if not poller.poll(0):
            return False
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, InterruptedError):
        return False
    except (OSError, ValueError):   # reset, or the socket is already closed
        return True


class _PeerGone:
    """The `cancelled` event of a REST ticket: also set once the client's socket is closed.

    `serving.core` asks `is_set()` before it submits a model call and again on the model
    thread just before the call starts, so the moment the call would start is checked
    exactly; `_RestTicket.watch` covers the wait in between (and the batcher's queue).
    """

    def __init__(self, ticket, sock):
        self._ticket = ticket
        self._sock = sock

    def is_set(self) -> bool:
        if self._ticket.cancelled.is_set():
            return True
        if _peer_closed(self._sock):
            self._ticket.cancel()
            return True
        return False


class _RestTicket:
    """An admission ticket whose request is cancelled when its REST client goes away.

    gRPC learns of a client gone from its RPC; a REST request learns it from its socket:
    while its model call is queued, a watcher looks at the socket every `_PEER_POLL` s and
    cancels the call (and so frees the admission slot) once the client has closed it.

    Args:
        ticket: the `serving.admission` ticket of the request.
        sock: the request's connection.
    """

    def __init__(self, ticket, sock):
        self._ticket = ticket
        self.cancelled = _PeerGone(ticket, sock)

    def watch(self, future) -> None:
        self._ticket.watch(future)
        done = threading.Event()
        future.add_done_callback(lambda _: done.set())
        threading.Thread(target=self._watch, args=(done,), name="rest-peer",
                         daemon=True).start()

    def _watch(self, done: threading.Event) -> None:
        while not done.wait(_PEER_POLL):
            if self.cancelled.is_set():
                return

    @property
    def nbytes(self) -> int:
        return self._ticket.nbytes

    def charge(self, nbytes: int, wire: int = 0) -> None:
        self._ticket.charge(nbytes, wire)

    def cancel(self) -> None:
        self._ticket.cancel()

    def release(self) -> None:
        self._ticket.release()


# A refused body up to this size is read (in blocks) and dropped, so a client still sending
# it gets its answer instead of a reset connection.
_DISCARD_BYTES = 16 << 20


class _BodyBytes:
    """The bytes of the REST bodies being received, bounded.

    Args:
        limit: the most bytes all bodies being received may hold together.
    """

    def __init__(self, limit: int):
        self.limit = limit
        self.held = 0
        self._lock = threading.Lock()

    def refusal(self, nbytes: int) -> Optional[str]:
        """Why a body of `nbytes` would not fit now, or None when it would."""
        if self.held + nbytes <= self.limit:
            return None
        return (f"The REST bodies being received already hold {self.held} bytes; this one "
                f"of {nbytes} would pass the server's limit (--max_in_flight_bytes "
                f"{self.limit}); retry later.")

    def hold(self, nbytes: int) -> None:
        """Holds `nbytes` or raises RESOURCE_EXHAUSTED (HTTP 429) at once."""
        with self._lock:
            message = self.refusal(nbytes)
            if message is not None:
                raise ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED, message,
                                   http_status=429)
            self.held += nbytes

    def release(self, nbytes: int) -> None:
        with self._lock:
            self.held -= nbytes


def make_handler(core, timeout: Optional[float], max_body: int,
                 metrics_path: Optional[str] = None, admission=None,
                 max_json_body: Optional[int] = None) -> type[BaseHTTPRequestHandler]:
    """A request handler class over `core` (for `RestServer`).

    Args:
        core: the ServingCore.
        timeout: seconds a REST request may take (body read and JSON parsing included),
            or None.
        max_body: largest request body accepted, in bytes.
        metrics_path: the Prometheus path (None: metrics are not served).
        admission: the server's `serving.admission.Admission`, or None (no bound); a REST
            predict is admitted once its body is read.
        max_json_body: largest body of a REST API (JSON) request, checked before reading it.
    """
    max_json_body = max_body if max_json_body is None else min(max_body, max_json_body)
    receiving = None if admission is None else _BodyBytes(admission.max_bytes)
    socket_timeout = 30.0 if timeout is None else max(timeout, 1.0)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Every socket read and write: a backstop behind RestServer's read deadlines.
        timeout = socket_timeout

        def send_error(self, code, message=None, explain=None):
            """A malformed request line or header (http.server's errors), answered in JSON.

            http.server's own answer pastes the request's text unescaped into its body and
            its status line, and none at all has a status line when the version could not
            be parsed (it is taken for HTTP/0.9); this one always has both.
            """
            short, long = self.responses.get(code, ("Error", "Error"))
            text = f"{code} {message or short}: {explain or long}"
            self.log_error("code %d, message %r", code, message)
            if not str(self.request_version).startswith("HTTP/1."):
                self.request_version = "HTTP/1.1"   # the status line is always sent
            self.close_connection = True
            body = json.dumps({"error": text}).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def parse_request(self):
            if not super().parse_request():
                return False
            if self.request_version == self.default_request_version:
                # A two-word request line is HTTP/0.9, whose answers have no status line.
                self.send_error(400, "Bad request syntax",
                                "expected a request line 'METHOD PATH HTTP/1.x', received "
                                f"{self.requestline[:200]!r}")
                return False
            return True

        def _send(self, status: int, data: bytes, content_type: str) -> None:
            self._send_chunks(status, [data], content_type)

        def _send_chunks(self, status: int, chunks: list[bytes], content_type: str) -> None:
            # Written piece by piece: a large JSON answer is never joined into one more copy.
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(sum(len(c) for c in chunks)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            for chunk in chunks:
                self.wfile.write(chunk)

        def _reply(self, status: int, body: dict) -> None:
            self._send(status, json.dumps(body).encode(), "application/json")

        def _handle(self, method: str) -> None:
            self._sent = False
            try:
                self._handle_checked(method)
            except Exception:  # noqa: BLE001 - every failure is answered, none drops the line
                log.exception("REST %s %s failed", method, self.path[:200])
                if self._sent:
                    self.close_connection = True
                    return
                self.close_connection = self.close_connection or not self._body_read
                try:
                    self._reply(500, {"error": "Internal error while handling the request; "
                                               "the server's log has the traceback."})
                except OSError:
                    self.close_connection = True
            finally:
                if not self.server.reading(self.request):
                    self.close_connection = True

        def _body_refusal(self, length: int, api: bool) -> Optional[tuple[int, str]]:
            """(status, message) when a body of `length` bytes is refused unread, else None."""
            limit, flag = ((max_json_body, "--max_json_request_bytes") if api
                           and max_json_body < max_body else (max_body, "--max_request_bytes"))
            if length > limit:
                return 413, (f"Request body of {length} bytes exceeds the server's limit of "
                             f"{limit} bytes ({flag}).")
            message = None if receiving is None else receiving.refusal(length)
            return None if message is None else (429, message)

        def _refuse_body(self, status: int, message: str, length: int) -> None:
            """Answers a request whose body is refused, reading none of it into memory.

            The answer goes first (a client waiting for it gets it at once) and closes the
            connection; then up to _DISCARD_BYTES of the body are read and dropped, in
            blocks and under the body's read deadline, so a client still sending it reads
            the answer instead of a reset connection. A client that sent `Expect:
            100-continue` is refused before it sends the body (`handle_expect_100`).
            """
            self.close_connection = True
            self._reply(status, {"error": message})
            left = min(length, _DISCARD_BYTES)
            try:
                while left:
                    block = self.rfile.read(min(left, 64 << 10))
                    if not block:
                        break
                    left -= len(block)
            except OSError:
                pass

        def handle_expect_100(self):
            """`Expect: 100-continue`: refuses a body it would not take before it is sent."""
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = 0   # answered 400 once the request is handled
            refusal = self._body_refusal(length, self.path.lower().startswith("/v1/"))
            if refusal is None:
                return super().handle_expect_100()
            self.close_connection = True
            self._reply(refusal[0], {"error": refusal[1]})
            return False

        def _handle_checked(self, method: str) -> None:
            self._body_read = False
            deadline = None if timeout is None else time.monotonic() + timeout
            self.server.reading(self.request, body=True)   # the body gets its own deadline
            try:
                length = int(self.headers.get("Content-Length") or 0)
                if length < 0:
                    raise ValueError
            except ValueError:
                self.close_connection = True
                self._reply(400, {"error": "Content-Length must be a non-negative integer. "
                                           f"Received: {self.headers.get('Content-Length')!r}"})
                return
            path = self.path.split("?", 1)[0]
            api = path.lower().startswith("/v1/")
            refusal = self._body_refusal(length, api)
            if refusal is not None:
                self._refuse_body(*refusal, length)
                return
            # The body first, under its read deadline and before any admission slot: a slow
            # client holds its connection thread (bounded by --max_rest_connections, its
            # body by the Content-Length limit and the bytes of the bodies being received),
            # never a slot of the model's work.
            if receiving is not None and length:
                try:
                    receiving.hold(length)
                except ServingError as e:
                    self._refuse_body(e.http_status, e.message, length)
                    return
            try:
                body = self.rfile.read(length) if length else b""
            except TimeoutError:   # the socket's backstop timeout beat the read deadline
                body = b""
            finally:
                if receiving is not None and length:
                    receiving.release(length)   # from here the admission counts the body
            if len(body) < length:
                self.close_connection = True
                self._reply(408, {"error": f"The request body ({length} bytes) was not received "
                                           "within the REST timeout "
                                           "(--rest_api_timeout_in_ms)."})
                return
            self._body_read = True
            ticket = None
            if api and method == "POST" and admission is not None:
                try:
                    ticket = _RestTicket(admission.admit(length), self.connection)
                except ServingError as e:
                    self._reply(e.http_status, {"error": e.message})
                    return
            try:
                self._answer(method, path, api, body, deadline, ticket)
            finally:
                if ticket is not None:
                    ticket.release()

        def _answer(self, method, path, api, body, deadline, ticket) -> None:
            if not self.server.busy(self.request):
                self.close_connection = True
                self._reply(503, {"error": "The server is shutting down."})
                return
            if metrics_path is not None and path == metrics_path:
                self._send(200, core.metrics.exposition(), monitoring.CONTENT_TYPE)
                return
            if not api:
                self._send(404, b"404 Not Found\n", "text/plain")
                return
            status, out = rest.handle(core, method, self.path, body, deadline, ticket)
            chunks = out.chunks if isinstance(out, rest.JsonText) else [json.dumps(out).encode()]
            self._sent = True
            try:
                self._send_chunks(status, chunks, "application/json")
            except OSError as e:   # the client left while its answer was made
                self.close_connection = True
                log.debug("REST %s %s: the answer was not delivered: %s", method,
                          path[:200], e)

        def do_GET(self):  # noqa: N802
            self._handle("GET")

        def do_POST(self):  # noqa: N802
            self._handle("POST")

        # TF Serving answers any other method with 400 "Malformed request: PUT ..." in JSON.
        def do_PUT(self):  # noqa: N802
            self._handle("PUT")

        def do_DELETE(self):  # noqa: N802
            self._handle("DELETE")

        def do_PATCH(self):  # noqa: N802
            self._handle("PATCH")

        def do_OPTIONS(self):  # noqa: N802
            self._handle("OPTIONS")

        def log_message(self, fmt, *args):
            log.debug("REST %s", fmt % args)

    return Handler
