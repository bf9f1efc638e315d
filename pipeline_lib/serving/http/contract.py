"""SageMaker's inference container contract, as pure functions (no I/O, no model).

* Routes: ``GET /ping``, ``POST /invocations``, ``POST /endpoints/{EndpointName}/invocations``
  (the ``sagemaker-runtime`` API's own path, so ``invoke_endpoint`` with ``endpoint_url``
  reaches the container unchanged; any endpoint name) and ``GET /execution-parameters``
  (what Batch Transform asks a container before sending it records).
* Request bodies: ``image/jpeg``, ``image/png``, ``application/x-image`` (raw image bytes);
  anything else is 415.
* ``Accept``: ``application/json`` (the default, also for ``*/*``, ``application/*`` and no
  header) or ``application/json;annotation=1``; a list is negotiated by its ``q`` values;
  nothing acceptable is 406.
* ``X-Amzn-SageMaker-Custom-Attributes``: ``key=value`` pairs separated by ``,`` or ``;``,
  at most 1024 characters (SageMaker's limit). ``threshold``, ``max_detections`` and
  ``nms_threshold`` are the options; a bad value of one is 400. SageMaker forwards the header
  as opaque text that may carry a client's own keys (trace ids and the like), so other keys
  are ignored.
* Errors: :class:`HttpError`, answered as one line of JSON ``{"code", "message"}``. The code
  is the name boto3 raises: ``ModelError`` (with ``OriginalStatusCode``) for what the
  container refuses (400, 406, 415), as SageMaker reports a container's 4xx;
  ``ValidationError`` for a payload over the limit (413); ``InternalFailure`` for a fault of
  ours (500).
"""

from __future__ import annotations

import json
import re

from ..request import ACCEPT_DEFAULT, ACCEPT_VERBOSE, PredictOptions, RequestError, parse_accept

PING = "ping"
INVOCATIONS = "invocations"
EXECUTION_PARAMETERS = "execution-parameters"

IMAGE_TYPES = ("image/jpeg", "image/png", "application/x-image")
_TYPE_ALIASES = {"image/jpg": "image/jpeg"}  # a common misspelling; the bytes decide anyway
CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"
MAX_CUSTOM_ATTRIBUTES = 1024  # characters: SageMaker's limit on the header
OPTION_KEYS = ("threshold", "max_detections", "nms_threshold")
MIB = 1 << 20
DEFAULT_MAX_PAYLOAD_MB = 6  # SageMaker's limit on an InvokeEndpoint body

_ENDPOINT_PATH = re.compile(r"^/endpoints/[^/]+/invocations/?$")
_ROUTES = {
    "/ping": (PING, ("GET", "HEAD")),
    "/invocations": (INVOCATIONS, ("POST",)),
    "/execution-parameters": (EXECUTION_PARAMETERS, ("GET", "HEAD")),
}
_CODES = {413: "ValidationError", 404: "NotFound", 405: "MethodNotAllowed"}


class HttpError(Exception):
    """A request answered with ``status`` and a one-line JSON ``message``."""

    def __init__(self, status: int, message: str, headers: tuple[tuple[str, str], ...] = ()):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def error_document(status: int, message: str) -> dict:
    """The JSON error body for ``status`` (see the module docstring)."""
    if status >= 500:
        return {"code": "InternalFailure", "message": message}
    code = _CODES.get(status)
    if code is None:  # what the container refuses, as SageMaker reports it
        return {"code": "ModelError", "message": message, "OriginalStatusCode": status}
    return {"code": code, "message": message}


def error_body(status: int, message: str) -> bytes:
    """:func:`error_document` as the bytes of one line."""
    line = " ".join(str(message).split())
    return json.dumps(error_document(status, line), separators=(",", ":")).encode()


def route(method: str, path: str) -> str:
    """Which route ``method path`` is (:data:`PING`, :data:`INVOCATIONS`,
    :data:`EXECUTION_PARAMETERS`); 404 for another path, 405 for another method."""
    name, methods = _ROUTES.get(path, (None, ()))
    if name is None and _ENDPOINT_PATH.match(path):
        name, methods = INVOCATIONS, ("POST",)
    if name is None:
        raise HttpError(
            404,
            f"no route {path!r}: expected POST /invocations, "
            "POST /endpoints/{EndpointName}/invocations, GET /ping or GET /execution-parameters",
        )
    if method not in methods:
        allow = ", ".join(methods)
        raise HttpError(405, f"{method} {path}: expected {allow}", (("Allow", allow),))
    return name


def content_type(header: str | None) -> str:
    """The request body's media type; 415 unless it is one of :data:`IMAGE_TYPES`."""
    media = (header or "").split(";", 1)[0].strip().lower()
    media = _TYPE_ALIASES.get(media, media)
    if media not in IMAGE_TYPES:
        got = f"content type {header!r}" if header else "no content type"
        raise HttpError(415, f"{got}: expected {', '.join(IMAGE_TYPES)} (the image's bytes)")
    return media


def _media_ranges(header: str) -> list[tuple[float, str]]:
    """``(q, media range without q)`` of each entry of an ``Accept`` header, best first."""
    ranges: list[tuple[float, int, str]] = []
    for i, entry in enumerate(header.split(",")):
        parts = [p.strip() for p in entry.split(";") if p.strip()]
        if not parts:
            continue
        q, params = 1.0, []
        for p in parts[1:]:
            key, _, value = p.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
            else:
                params.append(p)
        media = parts[0].lower()
        if media == "application/*":
            media = "application/json"
        ranges.append((q, i, ";".join([media, *params])))
    ranges.sort(key=lambda r: (-r[0], r[1]))
    return [(q, media) for q, _, media in ranges if q > 0]


def negotiate_accept(header: str | None) -> bool:
    """Whether the response is the verbose layout (``annotation=1``); 406 when ``header``
    accepts neither of SageMaker's JSON layouts."""
    if not header or not header.strip():
        return False
    for _, media in _media_ranges(header):
        try:
            return parse_accept(media)
        except RequestError:
            continue
    raise HttpError(406, f"accept {header!r}: expected {ACCEPT_DEFAULT!r} or {ACCEPT_VERBOSE!r}")


def response_type(verbose: bool) -> str:
    """The ``Content-Type`` of a response in the layout asked for."""
    return ACCEPT_VERBOSE if verbose else ACCEPT_DEFAULT


def custom_attributes(header: str | None) -> dict[str, str]:
    """The options among the custom attributes (other keys ignored); 400 when the header is
    too long or names an option twice."""
    if not header:
        return {}
    if len(header) > MAX_CUSTOM_ATTRIBUTES:
        raise HttpError(
            400,
            f"{CUSTOM_ATTRIBUTES}: {len(header)} characters: expected at most "
            f"{MAX_CUSTOM_ATTRIBUTES}",
        )
    found: dict[str, str] = {}
    for item in re.split(r"[,;]", header):
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep or key not in OPTION_KEYS:
            continue
        if key in found:
            raise HttpError(400, f"{CUSTOM_ATTRIBUTES}: {key} given twice: expected it once")
        found[key] = value.strip()
    return found


def request_options(attributes: str | None, accept: str | None) -> PredictOptions:
    """The :class:`~pipeline_lib.serving.request.PredictOptions` a request asks for with its
    custom attributes and ``Accept`` header (400 / 406 as above)."""
    verbose = negotiate_accept(accept)
    params = custom_attributes(attributes)
    for key, value in params.items():
        try:
            float(value)
        except ValueError:
            raise HttpError(
                400, f"{CUSTOM_ATTRIBUTES}: {key}={value!r}: expected a number"
            ) from None
    try:
        options = PredictOptions.from_params(params)
    except RequestError as exc:
        message = str(exc).replace("parameter ", "", 1)
        raise HttpError(400, f"{CUSTOM_ATTRIBUTES}: {message}") from None
    if verbose:
        from dataclasses import replace

        options = replace(options, verbose=True)
    return options


def execution_parameters(workers: int, max_payload_bytes: int) -> dict:
    """``GET /execution-parameters``: one image per request, as many at once as workers."""
    return {
        "MaxConcurrentTransforms": workers,
        "BatchStrategy": "SINGLE_RECORD",
        "MaxPayloadInMB": max(1, max_payload_bytes // MIB),
    }


__all__ = [
    "CUSTOM_ATTRIBUTES",
    "DEFAULT_MAX_PAYLOAD_MB",
    "EXECUTION_PARAMETERS",
    "IMAGE_TYPES",
    "INVOCATIONS",
    "MIB",
    "PING",
    "HttpError",
    "content_type",
    "custom_attributes",
    "error_body",
    "error_document",
    "execution_parameters",
    "negotiate_accept",
    "request_options",
    "response_type",
    "route",
]
