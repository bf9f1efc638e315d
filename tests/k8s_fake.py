"""A Kubernetes API server fake on localhost whose pods run as local processes.

It speaks the few core/v1 endpoints the provider's KubernetesPodOperator and the headless
Service task use (pods: create, get, list by label selector, log with follow, patch, delete;
events; services: create, delete), so the provider's own client code runs unchanged.

A "kubelet" thread runs each created pod: the container's command (or the image's
ENTRYPOINT, from ``entrypoints``) with the pod's arguments and environment, as a local
process whose ``/opt/ml`` is a temporary folder (``ML_ROOT``). The phase, container states,
exit code and termination message (read from ``terminationMessagePath``) follow the process.
Deleting a pod sends its process SIGTERM, then SIGKILL after the pod's grace period.

A pod whose image is listed in ``pending_images`` never starts: it stays Pending with the
container waiting reason, condition and Warning event a real cluster reports for it.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

ML = "/opt/ml"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class FakePod:
    body: dict[str, Any]
    ml_root: Path
    log: Path
    proc: subprocess.Popen | None = None
    deleted: bool = False
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.body["metadata"]["name"]

    @property
    def container(self) -> dict[str, Any]:
        return self.body["spec"]["containers"][0]


def _selector_matches(selector: str, labels: dict[str, str]) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.split("=", 1)
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


class FakeKubernetes:
    """The API server and kubelet; ``url`` for a kubeconfig, ``close()`` kills every pod."""

    def __init__(
        self,
        workdir: Path,
        entrypoints: dict[str, list[str]],
        base_env: dict[str, str],
        pending_images: dict[str, tuple[str, str]] | None = None,
        extra_env: dict[str, str] | None = None,
    ):
        self.workdir = Path(workdir)
        self.entrypoints, self.base_env = entrypoints, base_env
        self.pending_images = pending_images or {}
        self.extra_env = extra_env or {}
        self.pods: dict[tuple[str, str], FakePod] = {}
        self.services: dict[tuple[str, str], dict[str, Any]] = {}
        self.created: list[str] = []  # pod names, in creation order
        self.deleted_pods: list[str] = []
        self.deleted_services: list[str] = []
        self.lock = threading.RLock()
        self.on_running: Any = None  # optional callback(fake, pod) once a pod runs
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                fake._dispatch(self, "GET")

            def do_POST(self) -> None:  # noqa: N802
                fake._dispatch(self, "POST")

            def do_PATCH(self) -> None:  # noqa: N802
                fake._dispatch(self, "PATCH")

            def do_DELETE(self) -> None:  # noqa: N802
                fake._dispatch(self, "DELETE")

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    # ---------------------------------------------------------------- kubeconfig

    def kubeconfig(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": "fake"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
            "current-context": "fake",
        }

    # ---------------------------------------------------------------- HTTP

    def _dispatch(self, req: http.server.BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(req.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        parts = [p for p in url.path.split("/") if p]
        length = int(req.headers.get("Content-Length") or 0)
        body = json.loads(req.rfile.read(length)) if length else None
        try:
            if parts[:3] != ["api", "v1", "namespaces"] or len(parts) < 5:
                return self._reply(req, 404, _status(404, f"no route {url.path}"))
            ns, kind, rest = parts[3], parts[4], parts[5:]
            if kind == "pods":
                return self._pods(req, method, ns, rest, query, body)
            if kind == "events" and method == "GET":
                return self._reply(req, 200, self._events(ns, query))
            if kind == "services":
                return self._services(req, method, ns, rest, body)
            return self._reply(req, 404, _status(404, f"no route {url.path}"))
        except BrokenPipeError:
            return

    def _reply(self, req, code: int, obj: dict[str, Any]) -> None:
        data = json.dumps(obj).encode()
        req.send_response(code)
        req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(data)))
        req.end_headers()
        req.wfile.write(data)

    def _pods(self, req, method, ns, rest, query, body) -> None:
        if not rest and method == "POST":
            return self._reply(req, 201, self._create_pod(ns, body))
        if not rest and method == "GET":
            selector = query.get("labelSelector", "")
            with self.lock:
                items = [
                    p.body
                    for (pns, _), p in self.pods.items()
                    if pns == ns and _selector_matches(selector, p.body["metadata"]["labels"])
                ]
            return self._reply(
                req, 200, {"kind": "PodList", "apiVersion": "v1", "items": items, "metadata": {}}
            )
        pod = self.pods.get((ns, rest[0]))
        if pod is None:
            return self._reply(req, 404, _status(404, f'pods "{rest[0]}" not found'))
        if len(rest) == 2 and rest[1] == "log":
            return self._log(req, pod, query.get("follow") == "true")
        if method == "GET":
            return self._reply(req, 200, pod.body)
        if method == "PATCH":
            with self.lock:
                pod.body["metadata"]["labels"].update(
                    (body or {}).get("metadata", {}).get("labels", {})
                )
            return self._reply(req, 200, pod.body)
        if method == "DELETE":
            grace = (body or {}).get("gracePeriodSeconds")
            self._delete_pod(ns, pod, grace)
            return self._reply(req, 200, pod.body)
        return self._reply(req, 405, _status(405, "method not allowed"))

    def _log(self, req, pod: FakePod, follow: bool) -> None:
        req.send_response(200)
        req.send_header("Content-Type", "text/plain")
        req.end_headers()  # HTTP/1.0: the stream ends when the connection closes
        sent = 0
        while True:
            data = pod.log.read_bytes() if pod.log.exists() else b""
            if len(data) > sent:
                req.wfile.write(data[sent:])
                req.wfile.flush()
                sent = len(data)
            done = pod.deleted or pod.body["status"]["phase"] in ("Succeeded", "Failed")
            if not follow or (
                done and sent >= len(pod.log.read_bytes() if pod.log.exists() else b"")
            ):
                return
            time.sleep(0.2)

    def _events(self, ns: str, query: dict[str, str]) -> dict[str, Any]:
        name = query.get("fieldSelector", "").partition("involvedObject.name=")[2]
        with self.lock:
            pod = self.pods.get((ns, name))
            items = list(pod.events) if pod else []
        return {
            "kind": "EventList",
            "apiVersion": "v1",
            "items": items,
            "metadata": {"resourceVersion": "1"},
        }

    def _services(self, req, method, ns, rest, body) -> None:
        if not rest and method == "POST":
            key = (ns, body["metadata"]["name"])
            with self.lock:
                if key in self.services:
                    return self._reply(req, 409, _status(409, "already exists", "AlreadyExists"))
                self.services[key] = body
            return self._reply(req, 201, body)
        if rest and method == "DELETE":
            with self.lock:
                svc = self.services.pop((ns, rest[0]), None)
            if svc is None:
                return self._reply(req, 404, _status(404, "not found"))
            self.deleted_services.append(rest[0])
            return self._reply(req, 200, _status(200, "deleted", "Success"))
        return self._reply(req, 405, _status(405, "method not allowed"))

    # ---------------------------------------------------------------- kubelet

    def _create_pod(self, ns: str, body: dict[str, Any]) -> dict[str, Any]:
        name = body["metadata"]["name"]
        body["metadata"].update(namespace=ns, uid=str(uuid.uuid4()), creationTimestamp=_now())
        body["metadata"].setdefault("labels", {})
        body["metadata"]["resourceVersion"] = "1"
        body["status"] = {"phase": "Pending", "conditions": []}
        root = self.workdir / name
        pod = FakePod(body, root / "opt-ml", root / "container.log")
        pod.ml_root.mkdir(parents=True)
        with self.lock:
            self.pods[(ns, name)] = pod
            self.created.append(name)
        image = pod.container["image"]
        if image in self.pending_images:
            self._stay_pending(pod, *self.pending_images[image])
        else:
            threading.Thread(target=self._run, args=(pod,), daemon=True).start()
        return body

    def _stay_pending(self, pod: FakePod, reason: str, message: str) -> None:
        status = pod.body["status"]
        if reason == "Unschedulable":
            status["conditions"] = [
                {"type": "PodScheduled", "status": "False", "reason": reason, "message": message}
            ]
            event_reason = "FailedScheduling"
        else:  # an image error: scheduled, container waiting
            status["conditions"] = [{"type": "PodScheduled", "status": "True"}]
            status["containerStatuses"] = [
                {
                    "name": pod.container["name"],
                    "image": pod.container["image"],
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "state": {"waiting": {"reason": reason, "message": message}},
                }
            ]
            event_reason = "Failed"
        pod.events.append(
            {
                "metadata": {"name": f"{pod.name}.1", "resourceVersion": "1"},
                "involvedObject": {"kind": "Pod", "name": pod.name},
                "type": "Warning",
                "reason": event_reason,
                "message": message,
            }
        )

    def _command(self, pod: FakePod) -> list[str]:
        container = pod.container
        command = container.get("command") or self.entrypoints[container["image"]]
        return [*command, *(container.get("args") or [])]

    def _env(self, pod: FakePod) -> dict[str, str]:
        env = dict(self.base_env)
        for item in pod.container.get("env") or []:
            env[item["name"]] = item.get("value", "")
        env.update(self.extra_env)
        env["ML_ROOT"] = str(pod.ml_root)  # the pod's /opt/ml volume
        env["HOSTNAME"] = pod.body["spec"].get("hostname") or pod.name
        return env

    def _run(self, pod: FakePod) -> None:
        with open(pod.log, "wb") as out:
            proc = subprocess.Popen(  # noqa: S603  the pod's own argv, no shell
                self._command(pod),
                env=self._env(pod),
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=pod.ml_root,
                start_new_session=True,
            )
        with self.lock:
            pod.proc = proc
            pod.body["status"].update(
                phase="Running",
                startTime=_now(),
                conditions=[
                    {"type": "PodScheduled", "status": "True"},
                    {"type": "Ready", "status": "True"},
                ],
                containerStatuses=[
                    {
                        "name": pod.container["name"],
                        "image": pod.container["image"],
                        "imageID": "",
                        "ready": True,
                        "restartCount": 0,
                        "started": True,
                        "state": {"running": {"startedAt": _now()}},
                    }
                ],
            )
        if self.on_running is not None:
            threading.Thread(target=self.on_running, args=(self, pod), daemon=True).start()
        code = proc.wait()
        self._terminated(pod, code)

    def _terminated(self, pod: FakePod, code: int) -> None:
        container = pod.container
        path = container.get("terminationMessagePath", "/dev/termination-log")
        message = ""
        if path.startswith(ML + "/"):
            file = pod.ml_root / path[len(ML) + 1 :]
            if file.is_file():
                message = file.read_text(errors="replace")[-4096:]
        if (
            not message
            and code
            and container.get("terminationMessagePolicy") == "FallbackToLogsOnError"
        ):
            message = "\n".join(pod.log.read_text(errors="replace").splitlines()[-80:])
        with self.lock:
            pod.body["status"]["phase"] = "Succeeded" if code == 0 else "Failed"
            pod.body["status"]["containerStatuses"][0].update(
                ready=False,
                started=False,
                state={
                    "terminated": {
                        "exitCode": code if code >= 0 else 128 - code,
                        "reason": "Completed" if code == 0 else "Error",
                        "message": message,
                        "finishedAt": _now(),
                    }
                },
            )

    def _delete_pod(self, ns: str, pod: FakePod, grace: int | None) -> None:
        with self.lock:
            if pod.deleted:
                return
            pod.deleted = True
            self.deleted_pods.append(pod.name)
        if grace is None:
            grace = pod.body["spec"].get("terminationGracePeriodSeconds", 30)
        threading.Thread(target=self._stop, args=(ns, pod, grace), daemon=True).start()

    def _stop(self, ns: str, pod: FakePod, grace: int) -> None:
        proc = pod.proc
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        time.sleep(0.5)  # the pod object goes once its containers have stopped
        with self.lock:
            self.pods.pop((ns, pod.name), None)

    def kill_pod_process(self, pod: FakePod, sig: int = signal.SIGTERM) -> None:
        """What a node does to a pod it loses or evicts: signal the process directly."""
        if pod.proc is not None and pod.proc.poll() is None:
            os.killpg(pod.proc.pid, sig)

    def running(self) -> list[FakePod]:
        with self.lock:
            return [p for p in self.pods.values() if p.proc is not None and p.proc.poll() is None]

    def close(self) -> None:
        with self.lock:
            pods = list(self.pods.values())
        for pod in pods:
            if pod.proc is not None and pod.proc.poll() is None:
                os.killpg(pod.proc.pid, signal.SIGKILL)
                pod.proc.wait()
        self.server.shutdown()
        self.server.server_close()


def _status(code: int, message: str, reason: str = "NotFound") -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure" if code >= 400 else "Success",
        "message": message,
        "reason": reason,
        "code": code,
    }
