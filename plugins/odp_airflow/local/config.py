"""``airflow.cfg`` for the local stack: rendered from ``airflow.cfg.template``, secrets kept.

The template lives at the top of the checkout; ``make`` renders it into ``$AIRFLOW_HOME``
every time (cheap), and the file is rewritten only when its content changes. The generated
secrets (Fernet key, API secret, JWT secret) survive re-rendering.
"""

from __future__ import annotations

import base64
import configparser
import json
import os
import secrets
import string
from pathlib import Path

from pipeline_lib.settings import REPO_ROOT, load_settings

from .env import default_parallelism, local_env

TEMPLATE = REPO_ROOT / "airflow.cfg.template"
PASSWORDS_FILE_NAME = "simple_auth_manager_passwords.json"

# (section, option) of generated secrets that survive re-rendering.
_SECRETS = {
    "FERNET_KEY": ("core", "fernet_key"),
    "SECRET_KEY": ("api", "secret_key"),
    "JWT_SECRET": ("api_auth", "jwt_secret"),
}


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
