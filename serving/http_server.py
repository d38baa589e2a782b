"""The HTTP side of the local server: TF Serving's REST API and, if enabled, Prometheus metrics.

As in TF Serving (model_servers/http_server.cc), only paths under /v1/ reach
the REST API; the metrics page is served on its configured path; any other
path is a 404.
"""

from __future__ import annotations

import json
import logging
import time
from http.server import BaseHTTPRequestHandler
from typing import Optional

import grpc

from serving import monitoring, rest
from serving.errors import ServingError

log = logging.getLogger("vidgen.serving")


def make_handler(core, timeout: Optional[float], max_body: int,
                 metrics_path: Optional[str] = None) -> type[BaseHTTPRequestHandler]:
    """A request handler class over `core`.

    Args:
        core: the ServingCore.
        timeout: seconds a REST request may take, or None.
        max_body: largest request body accepted, in bytes.
        metrics_path: the Prometheus path (None: metrics are not served).
    """

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _send(self, status: int, data: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _reply(self, status: int, body: dict) -> None:
            self._send(status, json.dumps(body).encode(), "application/json")

        def _handle(self, method: str) -> None:
            try:
                length = int(self.headers.get("Content-Length") or 0)
                if length < 0:
                    raise ValueError
            except ValueError:
                self.close_connection = True
                self._reply(400, {"error": "Content-Length must be a non-negative integer. "
                                           f"Received: {self.headers.get('Content-Length')!r}"})
                return
            if length > max_body:
                # Read nothing more: the connection is closed after the answer.
                self.close_connection = True
                error = ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                     f"Request body of {length} bytes exceeds the server's "
                                     f"limit of {max_body} bytes (--max_request_bytes).")
                self._reply(413, {"error": error.message})
                return
            body = self.rfile.read(length) if length else b""
            path = self.path.split("?", 1)[0]
            if metrics_path is not None and path == metrics_path:
                self._send(200, core.metrics.exposition(), monitoring.CONTENT_TYPE)
                return
            if not path.lower().startswith("/v1/"):
                self._send(404, b"404 Not Found\n", "text/plain")
                return
            deadline = None if timeout is None else time.monotonic() + timeout
            status, out = rest.handle(core, method, self.path, body, deadline)
            self._reply(status, out)

        def do_GET(self):  # noqa: N802
            self._handle("GET")

        def do_POST(self):  # noqa: N802
            self._handle("POST")

        def log_message(self, fmt, *args):
            log.debug("REST %s", fmt % args)

    return Handler
