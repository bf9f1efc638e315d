"""``odp serve``'s process model: a gunicorn master and its workers.

The master prepares the model once (``model.tar.gz`` extracted into a scratch folder, a
missing ONNX export written by a child process), binds the port (a port in use is one line
at once), and forks the workers; it never imports MXNet or onnxruntime, whose thread pools do
not survive a fork. Each worker then loads the model itself (MXNet's OpenMP threads, or
onnxruntime's, and OpenCV's sized by :func:`.config.thread_environment`), answers one warm-up
image, and only then accepts connections: a connection is never answered by a worker without
a model, so ``GET /ping`` answering means the model is loaded. A worker that cannot load the
model stops the server, and ``odp serve`` exits 1 with that worker's one-line reason.

Workers are gunicorn's synchronous workers, one request at a time each: an idle worker takes
the next connection from the kernel's queue (bounded by :data:`.config.BACKLOG`), so the
load spreads evenly and memory is bounded by one request per worker (body at most the payload
limit, decoded image at most the pixel limit). A client that stops sending is dropped after
the request timeout. SIGTERM (or SIGINT) stops accepting, lets in-flight requests finish
(within :data:`.config.GRACEFUL_TIMEOUT` seconds) and exits 0. Each request is one access
log line on stdout with its latency: ``<client> "<request line>" <status> <bytes> <ms> ms``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gunicorn import glogging, util
from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.http import errors as http_errors
from gunicorn.http.wsgi import Response, default_environ
from gunicorn.workers.sync import SyncWorker

from ...artifact import MODEL_FILE, SYMBOL, extract
from ..onnx_detector import ONNX_FILE
from . import contract
from .app import InferenceApp
from .config import ServeConfig, thread_environment

ACCESS_LOG_FORMAT = '%(h)s "%(r)s" %(s)s %(b)s %(ms)s ms'
BOOT_ERROR_FILE = "boot-error"
_BOOT_EXIT = Arbiter.WORKER_BOOT_ERROR
_WARMUP_SIDE = 64
_SHM = "/dev/shm"  # noqa: S108  gunicorn's documented worker_tmp_dir: heartbeats in memory


class ServeError(ValueError):
    """The server cannot start or stopped: one line (a bad model, a port in use)."""


@dataclass(frozen=True)
class PreparedModel:
    """What the master hands the workers: the artifact folder, the ONNX file (runtime
    ``onnx``), the user's name for the model (for messages) and the scratch folder."""

    source: str
    folder: Path
    onnx_file: Path | None
    scratch: Path
    class_names: dict[int, str] | None = None  # the user's (a SageMaker job's archive has none)


# ------------------------------------------------------------------ the master's part


def prepare_model(
    source: str | os.PathLike,
    runtime: str,
    scratch: Path,
    class_names: dict[int, str] | None = None,
) -> PreparedModel:
    """Make ``source`` (``model.tar.gz``, s3:// or local; a folder of artifact files, or one
    holding a ``model.tar.gz``) a local folder, once, for every worker.

    Raises:
        FileNotFoundError: nothing at ``source``, or no model in it.
        ServeError: runtime ``onnx`` without an export and without MXNet to write one.
    """
    from ... import storage

    source = str(source)
    path = Path(source)
    if storage.is_s3(source):  # a tarball, or a prefix holding model.tar.gz
        uri = source if source.endswith(".tar.gz") else storage.join(source, MODEL_FILE)
        path = storage.download(uri, scratch / "download" / MODEL_FILE)
    if path.is_dir() and not (path / SYMBOL).exists():
        tars = sorted(path.glob("*.tar.gz"))
        if len(tars) == 1:
            path = tars[0]
    if path.is_file():
        folder = extract(path, scratch / "model")
    elif path.is_dir():
        folder = path
    else:
        raise FileNotFoundError(f"no model at {source}")
    if not (folder / SYMBOL).is_file():
        raise FileNotFoundError(
            f"{source}: no {SYMBOL}: expected a model.tar.gz, its extracted files, or a "
            "models:/ URI"
        )
    onnx_file = None
    if runtime == "onnx":
        onnx_file = folder / ONNX_FILE
        if not onnx_file.is_file():
            onnx_file = _export_onnx(source, folder, scratch / ONNX_FILE, class_names)
    return PreparedModel(source, folder, onnx_file, scratch, class_names)


def _export_onnx(
    source: str, folder: Path, out: Path, class_names: dict[int, str] | None = None
) -> Path:
    """The model's ONNX export, written by a child process (MXNet stays out of the master)."""
    import importlib.util

    if importlib.util.find_spec("mxnet") is None:
        raise ServeError(
            f"{source}: no {ONNX_FILE} beside the model files, and no MXNet here to export "
            "one: add the export (pipeline_lib.serving.onnx_export) to the model"
        )
    logging.getLogger("odp.serve").info("exporting %s to ONNX (no %s in it)", source, ONNX_FILE)
    code = (
        "import json, sys\nfrom pipeline_lib.serving.onnx_export import export_onnx\n"
        "names = json.loads(sys.argv[3])\n"
        "export_onnx(sys.argv[1], sys.argv[2], {int(k): v for k, v in names.items()} or None)\n"
    )
    names = json.dumps({str(k): v for k, v in (class_names or {}).items()})
    proc = subprocess.run(  # noqa: S603  our own interpreter and module, no shell
        [sys.executable, "-c", code, str(folder), str(out), names],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0 or not out.is_file():
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        raise ServeError(
            f"{source}: the ONNX export failed: {lines[-1] if lines else proc.returncode}"
        )
    return out


# ------------------------------------------------------------------ the workers' part


def load_detector(model: PreparedModel, config: ServeConfig) -> Any:
    """The model, loaded in this (worker) process, answered once (a warm-up)."""
    import cv2
    import numpy as np

    cv2.setNumThreads(config.threads)
    if config.runtime == "onnx":
        from ..onnx_detector import OnnxDetector

        detector = OnnxDetector.load(model.onnx_file, config.threads)  # type: ignore[arg-type]
    else:
        from ..detector import Detector

        detector = Detector.load(model.folder, class_names=model.class_names)
    yy, xx = np.mgrid[0:_WARMUP_SIDE, 0:_WARMUP_SIDE]
    image = np.stack([xx * 4, yy * 4, (xx + yy) * 2], axis=-1).astype(np.uint8)
    detector.predict([cv2.imencode(".jpg", image)[1].tobytes()])
    return detector


class _Logger(glogging.Logger):
    """gunicorn's logger with a latency atom in milliseconds (``%(ms)s``), and a client that
    stops sending logged as one line, not a traceback."""

    def atoms(self, resp, req, environ, request_time):  # noqa: D102  gunicorn's hook
        atoms = super().atoms(resp, req, environ, request_time)
        atoms["ms"] = f"{request_time.total_seconds() * 1e3:.1f}"
        return atoms

    def exception(self, msg, *args, **kwargs):  # noqa: D102  gunicorn's hook
        exc = sys.exc_info()[1]
        if isinstance(exc, TimeoutError):
            self.warning("a client sent nothing for the request timeout: connection closed")
            return
        super().exception(msg, *args, **kwargs)


_PROTOCOL_STATUS: tuple[tuple[type, int, str], ...] = (
    (http_errors.LimitRequestHeaders, 431, "Request Header Fields Too Large"),
    (http_errors.UnsupportedTransferCoding, 501, "Not Implemented"),
    (http_errors.ExpectationFailed, 417, "Expectation Failed"),
    (http_errors.ForbiddenProxyRequest, 403, "Forbidden"),
    (http_errors.ConfigurationProblem, 500, "Internal Server Error"),
    (http_errors.ParseException, 400, "Bad Request"),
)


class Worker(SyncWorker):
    """gunicorn's synchronous worker with a read timeout on every connection and one-line
    JSON bodies for the requests its HTTP parser refuses."""

    def accept(self, listener) -> None:  # noqa: D102  gunicorn's hook
        client, addr = listener.accept()
        client.settimeout(self.cfg.timeout)
        util.close_on_exec(client)
        self.handle(listener, client, addr)

    def handle_error(self, req, client, addr, exc) -> None:  # noqa: D102  gunicorn's hook
        status, reason = 500, "Internal Server Error"
        for kind, code, text in _PROTOCOL_STATUS:
            if isinstance(exc, kind):
                status, reason = code, text
                break
        if status >= 500:
            self.log.exception("500 for a request the HTTP parser could not handle")
            message = "internal error (see the server log)"
        else:
            self.log.warning("refused a malformed request (%s): %s", status, exc)
            message = f"malformed HTTP request: {exc}"
        body = contract.error_body(status, message)
        if req is not None:
            environ = default_environ(req, client, self.cfg)
            environ["REMOTE_ADDR"] = (addr or ("-",))[0]
            resp = Response(req, client, self.cfg)
            resp.status, resp.sent = f"{status} {reason}", len(body)
            from datetime import timedelta

            self.log.access(resp, req, environ, timedelta(0))
        head = (
            f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        try:
            client.sendall(head.encode("latin-1") + body)
        except OSError:
            self.log.debug("could not send the error answer")


class _Application(BaseApplication):
    """gunicorn's application: the settings, and the app each worker loads after the fork."""

    def __init__(self, config: ServeConfig, model: PreparedModel):
        self.config = config
        self.model = model
        super().__init__(prog="odp serve")

    def load_config(self) -> None:  # noqa: D102  gunicorn's hook
        c = self.config
        settings = {
            "bind": [f"[{c.host}]:{c.port}" if ":" in c.host else f"{c.host}:{c.port}"],
            "workers": c.workers,
            "worker_class": Worker,
            "backlog": c.backlog,
            "timeout": c.timeout,
            "graceful_timeout": c.graceful_timeout,
            "max_requests": 0,
            "preload_app": False,  # each worker loads the model after the fork
            "accesslog": "-",
            "errorlog": "-",
            "loglevel": "info",
            "access_log_format": ACCESS_LOG_FORMAT,
            "logger_class": _Logger,
            "control_socket_disable": True,  # no socket file in $HOME (read-only in images)
            "proc_name": "odp-serve",
        }
        if os.access(_SHM, os.W_OK):  # heartbeat files in memory, not on the disk
            settings["worker_tmp_dir"] = _SHM
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self) -> InferenceApp:
        """In a worker: load the model (a failure stops the server with its one line)."""
        gunicorn_log = logging.getLogger("gunicorn.error")
        odp_log = logging.getLogger("odp.serve")
        odp_log.handlers, odp_log.propagate = gunicorn_log.handlers, False
        odp_log.setLevel(logging.INFO)
        started = time.monotonic()
        try:
            detector = load_detector(self.model, self.config)
        except Exception as exc:  # noqa: BLE001  reported by the master as one line
            line = " ".join(f"{exc}".split()) or type(exc).__name__
            line = line.replace(str(self.model.scratch / "model"), self.model.source)
            odp_log.error("the model cannot be loaded: %s", line)
            try:
                (self.model.scratch / BOOT_ERROR_FILE).write_text(line)
            except OSError:
                pass
            sys.exit(_BOOT_EXIT)
        odp_log.info("model loaded in %.1f s: accepting requests", time.monotonic() - started)
        return InferenceApp(
            detector, max_payload_bytes=self.config.max_payload_bytes, workers=self.config.workers
        )


# ------------------------------------------------------------------ running it


def serve(
    model: str | os.PathLike, config: ServeConfig, class_names: dict[int, str] | None = None
) -> int:
    """Serve ``model`` until SIGTERM or SIGINT; returns 0 (see the module docstring).

    Raises:
        ServeError: the port is in use, or a worker could not load the model.
        FileNotFoundError: no model at ``model``.
        ArtifactError: the archive cannot be extracted.
    """
    from gunicorn.sock import TCP6Socket, TCPSocket

    master = os.getpid()
    scratch = Path(tempfile.mkdtemp(prefix="odp-serve-"))
    try:
        prepared = prepare_model(model, config.runtime, scratch, class_names)
        os.environ.update(thread_environment(config))
        app = _Application(config, prepared)
        arbiter = Arbiter(app)
        address = app.cfg.address[0]
        kind = TCP6Socket if ":" in config.host else TCPSocket
        try:
            arbiter.LISTENERS = [kind(address, app.cfg, arbiter.log)]
        except OSError as exc:
            raise ServeError(
                f"{config.host}:{config.port}: {exc.strerror or exc}: expected a free port "
                "(--port) and an address of this host (--host)"
            ) from None
        arbiter.log.info("odp serve: %s, %s", prepared.source, config.describe())
        try:
            arbiter.run()
        except SystemExit as exc:
            if os.getpid() != master:  # a worker's exit unwinding through this frame
                raise
            if exc.code in (0, None):
                return 0
            reason = scratch / BOOT_ERROR_FILE
            if reason.is_file():
                raise ServeError(reason.read_text()) from None
            raise ServeError(
                f"the server stopped (gunicorn status {exc.code}): see the log above"
            ) from None
        return 0
    finally:
        if os.getpid() == master:
            shutil.rmtree(scratch, ignore_errors=True)


__all__ = ["PreparedModel", "ServeError", "Worker", "load_detector", "prepare_model", "serve"]
