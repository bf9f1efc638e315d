"""The embedded, one-machine environment: Airflow config, logins, URLs, ``make ui``, demo summary.

Used by the Makefile (``python -m pipeline_lib.localenv <command>``)::

    render-config   render airflow.cfg.template into $AIRFLOW_HOME/airflow.cfg
    urls            print the local UI URLs and the Airflow login
    ui              run Airflow (standalone) and an MLflow server in the foreground
    demo-summary    print mAP, registered version and aliases of the demo model

This module imports no Airflow: Airflow processes are started as subprocesses, and MLflow is
imported only by ``demo-summary``.

Environment (besides those in :mod:`pipeline_lib.settings`):

| variable                  | default  |
|---------------------------|----------|
| ODP_AIRFLOW_PORT          | 8080     |
| ODP_MLFLOW_PORT           | 5000     |
| ODP_AIRFLOW_USER          | admin    |
| ODP_AIRFLOW_PASSWORD      | admin    |
| ODP_AIRFLOW_PARALLELISM   | number of CPU cores, at least 2, at most 8 |
"""

from __future__ import annotations

import argparse
import base64
import configparser
import json
import os
import secrets
import signal
import string
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .settings import REPO_ROOT, load_settings

TEMPLATE = REPO_ROOT / "airflow.cfg.template"
PASSWORDS_FILE_NAME = "simple_auth_manager_passwords.json"
DAG_ID = "object_detection_training"

# (section, option) of generated secrets that survive re-rendering.
_SECRETS = {
    "FERNET_KEY": ("core", "fernet_key"),
    "SECRET_KEY": ("api", "secret_key"),
    "JWT_SECRET": ("api_auth", "jwt_secret"),
}


@dataclass(frozen=True)
class LocalEnv:
    """Ports and login of the local services."""

    airflow_port: int
    mlflow_port: int
    user: str
    password: str

    @property
    def airflow_url(self) -> str:
        """Airflow UI / REST API."""
        return f"http://localhost:{self.airflow_port}"

    @property
    def mlflow_url(self) -> str:
        """MLflow UI started by ``make ui`` (or the configured tracking server)."""
        uri = load_settings().mlflow_tracking_uri
        if uri.startswith(("http://", "https://")):
            return uri.rstrip("/")
        return f"http://127.0.0.1:{self.mlflow_port}"


def local_env() -> LocalEnv:
    """Read ports and login from the environment (see module docstring)."""
    return LocalEnv(
        airflow_port=int(os.environ.get("ODP_AIRFLOW_PORT", "8080")),
        mlflow_port=int(os.environ.get("ODP_MLFLOW_PORT", "5000")),
        user=os.environ.get("ODP_AIRFLOW_USER", "admin"),
        password=os.environ.get("ODP_AIRFLOW_PASSWORD", "admin"),
    )


# ------------------------------------------------------------------ airflow.cfg


def _existing_secrets(cfg_path: Path) -> dict[str, str]:
    if not cfg_path.is_file():
        return {}
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read(cfg_path)
    except configparser.Error:
        return {}
    out = {}
    for name, (section, option) in _SECRETS.items():
        value = parser.get(section, option, fallback="").strip()
        if value and not value.startswith("{"):  # skip Airflow's own "{FERNET_KEY}" markers
            out[name] = value
    return out


def _new_secret(name: str) -> str:
    if name == "FERNET_KEY":  # a Fernet key is 32 url-safe base64-encoded bytes
        return base64.urlsafe_b64encode(os.urandom(32)).decode()
    return secrets.token_urlsafe(32)


def _cfg_escape(value: str) -> str:
    """Airflow reads airflow.cfg with %-interpolation: a literal % must be doubled."""
    return value.replace("%", "%%")


def default_parallelism() -> int:
    """Task slots: one per core, at least 2, at most 8 (or ``ODP_AIRFLOW_PARALLELISM``)."""
    if value := os.environ.get("ODP_AIRFLOW_PARALLELISM"):
        return max(1, int(value))
    return min(8, max(2, os.cpu_count() or 2))


def template_values(airflow_home: Path, existing_cfg: Path | None = None) -> dict[str, str]:
    """The ``${NAME}`` values for the template; secrets are reused from ``existing_cfg``."""
    env = local_env()
    values = {
        "REPO_ROOT": str(REPO_ROOT),
        "DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW_HOME": str(airflow_home),
        "ODP_HOME": str(load_settings().home),
        "PARALLELISM": str(default_parallelism()),
        "API_PORT": str(env.airflow_port),
        "ADMIN_USER": env.user,
        "PASSWORDS_FILE": str(airflow_home / PASSWORDS_FILE_NAME),
    }
    values = {k: _cfg_escape(v) for k, v in values.items()}
    kept = _existing_secrets(existing_cfg) if existing_cfg else {}
    for name in _SECRETS:
        values[name] = kept.get(name) or _new_secret(name)
    return values


def render_text(template_text: str, values: dict[str, str]) -> str:
    """Fill ``${NAME}`` placeholders; an unknown placeholder is an error (KeyError)."""
    return string.Template(template_text).substitute(values)


def _write_if_changed(path: Path, text: str, mode: int = 0o600) -> bool:
    if path.is_file() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    return True


def write_passwords_file(airflow_home: Path) -> tuple[Path, bool]:
    """Write SimpleAuthManager's password file with the fixed local login."""
    env = local_env()
    path = airflow_home / PASSWORDS_FILE_NAME
    return path, _write_if_changed(path, json.dumps({env.user: env.password}) + "\n")


def render_config(template: Path | None = None, output: Path | None = None) -> tuple[Path, bool]:
    """Render the template into ``$AIRFLOW_HOME/airflow.cfg`` (also the password file).

    The file is rewritten only when its content changes, so make's timestamps stay stable,
    and the generated secrets are kept from the previous rendering.

    Returns:
        ``(path, changed)``.
    """
    airflow_home = load_settings().airflow_home.resolve()
    output = output or airflow_home / "airflow.cfg"
    template = template or TEMPLATE
    airflow_home.mkdir(parents=True, exist_ok=True)
    text = render_text(template.read_text(), template_values(airflow_home, output))
    changed = _write_if_changed(output, text)
    write_passwords_file(airflow_home)
    return output, changed


# ------------------------------------------------------------------ urls and demo summary


def urls_text() -> str:
    """Human-readable URLs, login and locations of local state."""
    env = local_env()
    s = load_settings()
    return "\n".join(
        [
            f"Airflow UI   {env.airflow_url}   (login: {env.user} / {env.password})",
            f"MLflow UI    {env.mlflow_url}",
            "             (both started by `make ui`)",
            f"ODP_HOME     {s.home}",
            f"AIRFLOW_HOME {s.airflow_home}",
            f"MLflow store {s.mlflow_tracking_uri}",
            f"  artifacts  {s.mlflow_artifacts}",
        ]
    )


def _pick_map(metrics: dict[str, float]) -> tuple[str, float] | None:
    for key in ("mAP", "validation_mAP", "val_mAP", "validation:mAP"):
        if key in metrics:
            return key, metrics[key]
    for key in sorted(metrics):
        if key.lower().endswith("map"):
            return key, metrics[key]
    return None


def demo_summary(model_name: str, tracking_uri: str | None = None) -> dict[str, Any] | None:
    """The ``candidate`` version of ``model_name`` with its mAP, and the champion version."""
    from . import registry

    candidate = registry.get_candidate(model_name, tracking_uri)
    if candidate is None:
        return None
    picked = _pick_map(candidate["metrics"])
    champion = registry.get_champion(model_name, tracking_uri)
    return {
        "name": candidate["name"],
        "version": candidate["version"],
        "aliases": candidate["aliases"],
        "run_id": candidate["run_id"],
        "model_uri": candidate["model_uri"],
        "source": candidate["source"],
        "map_metric": picked[0] if picked else None,
        "mAP": picked[1] if picked else None,
        "champion_version": champion["version"] if champion else None,
        "created_ms": candidate.get("creation_timestamp"),
        "tracking_uri": registry.resolve_tracking_uri(tracking_uri),
    }


def format_demo_summary(summary: dict[str, Any]) -> str:
    """The text block printed at the end of ``make demo``."""
    env = local_env()
    m = summary["mAP"]
    map_text = f"{m:.4f}" if isinstance(m, int | float) else "not recorded"
    bar = "=" * 72
    return "\n".join(
        [
            bar,
            f" Demo finished: DAG {DAG_ID}",
            f"   validation mAP ({summary['map_metric'] or 'mAP'}): {map_text}",
            f"   registered model:  {summary['name']}  version {summary['version']}"
            f"  aliases: {', '.join(summary['aliases']) or '-'}",
            f"   champion version:  {summary['champion_version'] or '-'}",
            f"   MLflow run:        {summary['run_id']}",
            f"   model URI:         {summary['model_uri']}  (artifacts: {summary['source']})",
            f"   tracking store:    {summary['tracking_uri']}",
            "",
            " Where to look:",
            f"   make ui   -> Airflow {env.airflow_url}  (login {env.user} / {env.password})",
            f"                MLflow  {env.mlflow_url}/#/models/{summary['name']}"
            f"/versions/{summary['version']}",
            f"   logs      -> {load_settings().airflow_home}/logs/dag_id={DAG_ID}/",
            bar,
        ]
    )


# ------------------------------------------------------------------ make ui


def _http_up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True  # it answered (e.g. 401): it is up
    except (OSError, ValueError):
        return False


def _mlflow_server_command(env: LocalEnv) -> list[str] | None:
    s = load_settings()
    if s.mlflow_tracking_uri.startswith(("http://", "https://")):
        return None  # a real tracking server is configured: nothing to start
    artifacts = s.mlflow_artifacts
    if "://" not in artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        artifacts = Path(artifacts).resolve().as_uri()
    return [
        str(Path(sys.executable).parent / "mlflow"),
        "server",
        "--backend-store-uri",
        s.mlflow_tracking_uri,
        "--default-artifact-root",
        artifacts,
        "--host",
        "127.0.0.1",
        "--port",
        str(env.mlflow_port),
        "--workers",
        "1",
    ]


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _stop_all(procs: dict[str, subprocess.Popen], grace: float = 30) -> None:
    """SIGINT each process group, then SIGTERM, then SIGKILL what is left."""
    for sig, wait in ((signal.SIGINT, grace), (signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        alive = [p for p in procs.values() if p.poll() is None]
        if not alive:
            break
        for proc in alive:
            _signal_group(proc, sig)
        deadline = time.monotonic() + wait
        for proc in alive:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
    for proc in procs.values():  # grandchildren left behind in a group whose leader exited
        _signal_group(proc, signal.SIGKILL)


def run_ui() -> int:
    """Run ``airflow standalone`` and ``mlflow server`` until Ctrl-C; print URLs when ready."""
    env = local_env()
    bin_dir = Path(sys.executable).parent
    proc_env = dict(os.environ)
    proc_env["PATH"] = f"{bin_dir}{os.pathsep}{proc_env.get('PATH', '')}"
    # MLflow's background job runner (GenAI features) is not used here: fewer processes.
    proc_env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    if load_settings().mlflow_tracking_uri.startswith("sqlite:"):
        from .registry import get_client

        get_client()  # create the local store with the right artifact root before the server
    commands = {"airflow": [str(bin_dir / "airflow"), "standalone"]}
    if (mlflow_cmd := _mlflow_server_command(env)) is not None:
        commands["mlflow"] = mlflow_cmd

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    # Each service runs in its own process group, so that stopping it reaches its children
    # (Airflow's scheduler/api-server/..., MLflow's uvicorn workers) too.
    procs: dict[str, subprocess.Popen] = {}
    stop = threading.Event()
    code = 0
    try:
        for name, cmd in commands.items():
            procs[name] = subprocess.Popen(cmd, env=proc_env, start_new_session=True)

        def banner() -> None:
            checks = [f"http://127.0.0.1:{env.airflow_port}/api/v2/monitor/health"]
            if "mlflow" in procs:
                checks.append(f"http://127.0.0.1:{env.mlflow_port}/health")
            while not stop.is_set():
                if all(_http_up(u) for u in checks):
                    line = "=" * 72
                    print(f"\n{line}\n{urls_text()}\n  Ctrl-C stops both.\n{line}", flush=True)
                    return
                stop.wait(2)

        threading.Thread(target=banner, daemon=True).start()
        while not stop.is_set():
            for name, proc in procs.items():
                if proc.poll() is not None:
                    print(f"localenv ui: {name} exited with {proc.returncode}", file=sys.stderr)
                    code = proc.returncode or 1
                    stop.set()
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nlocalenv ui: stopping Airflow and MLflow ...", file=sys.stderr, flush=True)
    finally:
        stop.set()
        _stop_all(procs)
    return code


# ------------------------------------------------------------------ CLI


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m pipeline_lib.localenv``."""
    parser = argparse.ArgumentParser(
        prog="python -m pipeline_lib.localenv",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("render-config", help="render airflow.cfg.template into AIRFLOW_HOME")
    p.add_argument("--template", type=Path, default=None)
    p.add_argument("--output", type=Path, default=None)
    sub.add_parser("urls", help="print local URLs and the login")
    sub.add_parser("ui", help="run Airflow standalone and an MLflow server in the foreground")
    p = sub.add_parser("demo-summary", help="print the demo model's mAP, version and aliases")
    p.add_argument("--model-name", required=True)
    p.add_argument("--tracking-uri", default=None)
    p.add_argument("--json", action="store_true", help="print one JSON object instead")
    p.add_argument(
        "--since",
        type=float,
        default=None,
        help="fail unless the candidate version was registered after this Unix time",
    )
    args = parser.parse_args(argv)

    if args.command == "render-config":
        path, changed = render_config(args.template, args.output)
        print(f"{path} {'written' if changed else 'up to date'}")
        return 0
    if args.command == "urls":
        print(urls_text())
        return 0
    if args.command == "ui":
        return run_ui()
    summary = demo_summary(args.model_name, args.tracking_uri)
    if summary is None:
        print(
            f"demo-summary: no version of model {args.model_name!r} has the alias 'candidate' "
            "(did the register task run?)",
            file=sys.stderr,
        )
        return 1
    created = (summary.get("created_ms") or 0) / 1000
    if args.since is not None and created < args.since:
        print(
            f"demo-summary: the newest {args.model_name!r} version ({summary['version']}) was "
            "registered before this run started: the run registered nothing",
            file=sys.stderr,
        )
        return 1
    print(json.dumps(summary) if args.json else format_demo_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
