"""One error type for every failure a request can meet, with TF Serving's codes.

The server raises `ServingError(code, message)`; gRPC answers with the code
and message, REST with TF Serving's HTTP status for the code and a body
`{"error": message}`. The clients raise the same type, so a caller handles
a refused request the same way over either transport.
"""

from __future__ import annotations

import grpc

# TF Serving's mapping from status code to HTTP status (model_servers/http_server.cc).
HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}

# The reverse, for the REST client: several codes share an HTTP status, so
# this names the most likely one.
CODE_FOR_HTTP = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.ABORTED,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    499: grpc.StatusCode.CANCELLED,
    501: grpc.StatusCode.UNIMPLEMENTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}

# tf.errors error_code (== absl status code) -> gRPC code.
_BY_VALUE = {code.value[0]: code for code in grpc.StatusCode}


class ServingError(Exception):
    """A request the server refused or could not answer.

    Args:
        code: a `grpc.StatusCode`.
        message: one sentence for the caller (TF Serving's wording where it has one).
        http_status: the HTTP status it travelled with (REST only).
    """

    def __init__(self, code: grpc.StatusCode, message: str, http_status: int | None = None):
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.http_status = http_status if http_status is not None else HTTP_STATUS[code]


class ConfigFileError(ValueError):
    """A config file (model, monitoring) that cannot be read or parsed; the message names it."""


def read_config_text(path: str, kind: str) -> str:
    """The text of the `kind` config file at `path` (ConfigFileError if it cannot be read)."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigFileError(f"{path}: expected a readable text {kind} file, "
                              f"received: {e}") from None


def from_tf_error(error) -> ServingError:
    """A `tf.errors.OpError` as a ServingError with the same code and message."""
    code = _BY_VALUE.get(getattr(error, "error_code", 2), grpc.StatusCode.UNKNOWN)
    return ServingError(code, getattr(error, "message", str(error)))


def invalid(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.NOT_FOUND, message)
