"""The WSGI application: SageMaker's routes answered by one loaded detector.

:class:`InferenceApp` holds a :class:`~pipeline_lib.serving.detector.Detector` (or its
ONNX twin) and answers the routes of :mod:`.contract`. An invocation is checked in the
order that costs least: route, declared length (413 before a byte of the body is read),
content type (415), ``Accept`` (406), custom attributes (400); then the body is read, at
most the payload limit, and goes through :meth:`Detector.predict
<pipeline_lib.serving.detector.Detector.predict>`, the one path ``odp predict`` takes too
(image header and pixel limit before any decoding, 400 for an image it cannot use). A
refused request's body is read and dropped (up to :data:`DRAIN_LIMIT`) before the answer,
so that a client still sending sees the answer rather than a reset connection. Anything
else that goes wrong is a fault of ours: a 500 whose cause is logged with its traceback,
never shown to the client.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

from ..request import RequestError
from ..response import response_body
from . import contract
from .contract import HttpError

log = logging.getLogger("odp.serve")

DRAIN_LIMIT = 256 << 20  # bytes of a refused body read and dropped; beyond, the connection closes
_CHUNK = 1 << 16
REQUEST_NAME = "body"  # how an image error names the request's image

StartResponse = Callable[..., Any]


class InferenceApp:
    """A WSGI application over ``detector`` (see the module docstring); ``workers`` is what
    ``/execution-parameters`` reports as the concurrency."""

    def __init__(self, detector: Any, *, max_payload_bytes: int, workers: int = 1):
        self.detector = detector
        self.max_payload_bytes = max_payload_bytes
        self.workers = workers

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        """Answer one request."""
        try:
            status, headers, body = self._dispatch(environ)
        except HttpError as exc:
            _drain(environ)
            status, headers = exc.status, [*exc.headers]
            body = contract.error_body(exc.status, exc.message)
            headers.append(("Content-Type", "application/json"))
        except Exception:  # noqa: BLE001  a fault of ours: logged with its cause, a 500
            log.exception("500 for %s %s", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"))
            _drain(environ)
            status, body = 500, contract.error_body(500, "internal error (see the server log)")
            headers = [("Content-Type", "application/json")]
        headers.append(("Content-Length", str(len(body))))
        start_response(_status_line(status), headers)
        return [body]

    def _dispatch(self, environ: dict) -> tuple[int, list[tuple[str, str]], bytes]:
        name = contract.route(environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "/"))
        if name == contract.PING:
            return 200, [("Content-Type", "application/json")], b'{"status":"healthy"}'
        if name == contract.EXECUTION_PARAMETERS:
            doc = contract.execution_parameters(self.workers, self.max_payload_bytes)
            return 200, [("Content-Type", "application/json")], json.dumps(doc).encode()
        return self._invoke(environ)

    def _invoke(self, environ: dict) -> tuple[int, list[tuple[str, str]], bytes]:
        declared = _content_length(environ)
        if declared is not None and declared > self.max_payload_bytes:
            raise _too_large(declared, self.max_payload_bytes)
        contract.content_type(environ.get("CONTENT_TYPE"))
        options = contract.request_options(
            environ.get("HTTP_X_AMZN_SAGEMAKER_CUSTOM_ATTRIBUTES"), environ.get("HTTP_ACCEPT")
        )
        data = _read_body(environ, self.max_payload_bytes)
        try:
            result = self.detector.predict([data], options, [REQUEST_NAME])[0]
        except RequestError as exc:
            raise HttpError(400, str(exc)) from None
        headers = [("Content-Type", contract.response_type(options.verbose))]
        return 200, headers, response_body(result)


def _content_length(environ: dict) -> int | None:
    raw = environ.get("CONTENT_LENGTH")
    if raw in (None, ""):
        return None
    try:
        return int(raw)
    except ValueError:
        raise HttpError(400, f"Content-Length {raw!r}: expected a number of bytes") from None


def _too_large(size: int | str, limit: int) -> HttpError:
    return HttpError(
        413,
        f"a body of {size} bytes: HTTP content length exceeded {limit} bytes "
        "(the payload limit, --max-payload-mb)",
    )


def _read_body(environ: dict, limit: int) -> bytes:
    """The whole body, at most ``limit`` bytes (413 beyond; 408 when the client stops
    sending, 400 when it cannot be read, e.g. bad chunked framing); marks it consumed."""
    stream = environ["wsgi.input"]
    chunks, size = [], 0
    try:
        while size <= limit:
            chunk = stream.read(min(_CHUNK, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:  # a timeout, a malformed chunked body, a client gone
        environ["odp.drained"] = True  # nothing more can be read from this connection
        if isinstance(exc, TimeoutError):
            raise HttpError(408, f"the body stopped arriving after {size} bytes") from None
        raise HttpError(400, f"the body cannot be read after {size} bytes: {exc}") from None
    if size > limit:
        raise _too_large(f"more than {limit}", limit)
    environ["odp.drained"] = True
    return b"".join(chunks)


def _drain(environ: dict) -> None:
    """Read and drop what is left of the body (bounded), so the answer reaches a client that
    is still sending it."""
    if environ.get("odp.drained") or environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
        return
    environ["odp.drained"] = True
    stream = environ.get("wsgi.input")
    if stream is None:
        return
    declared = environ.get("CONTENT_LENGTH")
    if declared and declared.isdigit() and int(declared) > DRAIN_LIMIT:
        return  # too much to wait for: the connection is closed after the answer
    left = DRAIN_LIMIT
    try:
        while left > 0:
            chunk = stream.read(min(_CHUNK, left))
            if not chunk:
                return
            left -= len(chunk)
    except (OSError, ValueError):  # the client went away, or timed out
        return


_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    408: "Request Timeout",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    500: "Internal Server Error",
}


def _status_line(status: int) -> str:
    return f"{status} {_REASONS.get(status, 'Error')}"


__all__ = ["DRAIN_LIMIT", "InferenceApp"]
