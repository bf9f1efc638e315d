"""odp_airflow.local.config: airflow.cfg rendering and the login file."""

from __future__ import annotations

import configparser
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from odp_airflow.local import config
from pipeline_lib.settings import REPO_ROOT


def _read_cfg(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser()  # %-interpolation, as Airflow reads it
    parser.read(path)
    return parser


def test_render_config_points_at_the_repo_and_local_state(odp_home) -> None:
    path, changed = config.render_config()
    assert changed and path == odp_home.airflow_home / "airflow.cfg"
    text = path.read_text()
    settings_lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert not [line for line in settings_lines if "${" in line]
    cfg = _read_cfg(path)
    assert cfg["core"]["dags_folder"] == str(REPO_ROOT / "dags")
    assert cfg["core"]["plugins_folder"] == str(REPO_ROOT / "plugins")
    assert cfg["core"]["load_examples"] == "False"
    assert cfg["core"]["executor"] == "LocalExecutor"
    assert cfg["core"]["auth_manager"].endswith("SimpleAuthManager")
    assert cfg["core"]["simple_auth_manager_users"] == "admin:admin"
    assert int(cfg["core"]["parallelism"]) >= 2
    assert cfg["database"]["sql_alchemy_conn"] == f"sqlite:///{odp_home.airflow_home}/airflow.db"
    assert cfg["api"]["host"] == "127.0.0.1"
    for section, option in config._SECRETS.values():
        assert len(cfg[section][option]) >= 32

    passwords = Path(cfg["core"]["simple_auth_manager_passwords_file"])
    assert passwords.parent == odp_home.airflow_home
    assert json.loads(passwords.read_text()) == {"admin": "admin"}
    assert (path.stat().st_mode & 0o077) == 0  # secrets inside: owner-only


def test_render_config_is_stable_and_keeps_secrets(odp_home) -> None:
    path, _ = config.render_config()
    before, mtime = path.read_text(), path.stat().st_mtime_ns
    time.sleep(0.01)
    assert config.render_config() == (path, False)
    assert path.read_text() == before and path.stat().st_mtime_ns == mtime


def test_render_config_follows_environment(odp_home, monkeypatch: pytest.MonkeyPatch) -> None:
    path, _ = config.render_config()
    jwt = _read_cfg(path)["api_auth"]["jwt_secret"]
    monkeypatch.setenv("ODP_AIRFLOW_PORT", "18080")
    monkeypatch.setenv("ODP_AIRFLOW_PASSWORD", "s3cret")
    monkeypatch.setenv("ODP_AIRFLOW_PARALLELISM", "3")
    _, changed = config.render_config()
    assert changed
    cfg = _read_cfg(path)
    assert cfg["api"]["port"] == "18080"
    assert cfg["core"]["execution_api_server_url"] == "http://127.0.0.1:18080/execution/"
    assert cfg["core"]["parallelism"] == "3"
    assert cfg["api_auth"]["jwt_secret"] == jwt
    assert json.loads((odp_home.airflow_home / config.PASSWORDS_FILE_NAME).read_text()) == {
        "admin": "s3cret"
    }


def test_percent_in_paths_is_escaped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "100%home"
    monkeypatch.setenv("ODP_HOME", str(home))
    monkeypatch.setenv("AIRFLOW_HOME", str(home / "airflow"))
    path, _ = config.render_config()
    assert _read_cfg(path)["database"]["sql_alchemy_conn"].endswith("100%home/airflow/airflow.db")


def test_unknown_placeholder_is_an_error() -> None:
    with pytest.raises(KeyError):
        config.render_text("[core]\nx = ${NOT_A_VALUE}\n", {})


def test_airflow_reads_the_rendered_config(odp_home) -> None:
    config.render_config()
    env = {**os.environ, "AIRFLOW_HOME": str(odp_home.airflow_home)}
    env = {k: v for k, v in env.items() if not k.startswith("AIRFLOW__")}
    script = (
        "import json; from airflow.configuration import conf; print(json.dumps({k: conf.get(s, k)"
        " for s, k in [('core', 'dags_folder'), ('core', 'executor'), ('core', 'load_examples'),"
        " ('database', 'sql_alchemy_conn')]}))"
    )
    out = subprocess.run(  # noqa: S603  test-built argv, no shell
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    values = json.loads(out.stdout.strip().splitlines()[-1])
    assert values == {
        "dags_folder": str(REPO_ROOT / "dags"),
        "executor": "LocalExecutor",
        "load_examples": "False",
        "sql_alchemy_conn": f"sqlite:///{odp_home.airflow_home}/airflow.db",
    }
