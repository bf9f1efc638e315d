"""Training failures, how each is reported (ClientError or AlgorithmError) and exit codes.

Every training module raises these; nothing here imports the rest of the package, so any
module can use them without an import cycle. As SageMaker does, ``ClientError`` is the
job's input or configuration (the message names the file), ``AlgorithmError`` is ours.
"""

from __future__ import annotations

import sys

from ..annotations import AnnotationError
from ..artifact import ArtifactError
from ..bounds import NumberError
from ..gate.rules import GateError
from ..hyperparameters import HyperparameterError
from ..images import ImageDecodeError
from ..localfs import FileTooLargeError, LinkedFileError, NotRegularFileError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_SIGTERM = 143  # 128 + SIGTERM, as a process killed by the signal would report


class TrainingError(Exception):
    """A user-facing training failure (bad configuration or data)."""


class DistributedError(RuntimeError):
    """The cluster could not be formed or lost a host."""


# Failures the job's input caused, not the algorithm, and their label in output/failure.
_CLIENT_ERRORS: dict[type[Exception], str] = {
    HyperparameterError: "ClientError: invalid hyperparameter",
    ArtifactError: "ClientError: bad model archive",
    ImageDecodeError: "ClientError: bad image",
    GateError: "ClientError: invalid input data",  # the input gate's refusals (rule code)
    AnnotationError: "ClientError: invalid annotation",
    FileNotFoundError: "ClientError: missing input",
    NotRegularFileError: "ClientError: not a regular file",
    LinkedFileError: "ClientError: a linked file",
    FileTooLargeError: "ClientError: a file above its bound",
    NumberError: "ClientError: invalid setting",  # an environment limit such as ODP_MAX_...
    TrainingError: "ClientError",
}


def _client_errors() -> dict[type[Exception], str]:
    """The table above, plus the manifest reader's error when that module is loaded (only a
    manifest channel raises it; importing it here would load numpy into every host role)."""
    manifest = sys.modules.get("pipeline_lib.manifest")
    if manifest is None:
        return _CLIENT_ERRORS
    return {**_CLIENT_ERRORS, manifest.ManifestError: "ClientError: invalid manifest"}


def is_client_error(exc: BaseException) -> bool:
    """True for a failure the job's input caused (no traceback is printed for these)."""
    return isinstance(exc, tuple(_client_errors()))


def failure_reason(exc: Exception) -> str:
    """The one paragraph written to ``output/failure``: ``ClientError: ...`` for bad input,
    ``AlgorithmError: <type>: ...`` for everything else; at most :data:`MAX_REASON`
    characters (a message quoting a huge input must not become a huge file)."""
    for cls, label in _client_errors().items():
        if isinstance(exc, cls):
            return _bounded(f"{label}: {exc}")
    return _bounded(f"AlgorithmError: {type(exc).__name__}: {exc}")


MAX_REASON = 4096


def _bounded(text: str) -> str:
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 3] + "..."
