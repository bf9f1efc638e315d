"""The Dockerfiles pass hadolint (the same check as `make lint`; no Docker engine needed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCKERFILES = sorted(
    p for p in (REPO / "docker").glob("Dockerfile.*") if not p.name.endswith(".dockerignore")
)


def test_there_are_dockerfiles() -> None:
    assert {p.name for p in DOCKERFILES} >= {
        "Dockerfile.train",
        "Dockerfile.airflow",
        "Dockerfile.serve",
    }


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint(dockerfile: Path) -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    proc = subprocess.run(  # noqa: S603  test-built argv, no shell
        [str(hadolint), "--no-color", str(dockerfile)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_training_image_runs_as_non_root_under_tini() -> None:
    text = (REPO / "docker" / "Dockerfile.train").read_text()
    assert 'ENTRYPOINT ["/usr/bin/tini", "--",' in text
    assert "USER ${UID}:${GID}" in text and "ARG UID=1000" in text
    assert "ARG VARIANT=cu117" in text and "FROM ubuntu:20.04 AS base-cpu" in text
    assert '"mxnet-${VARIANT}==1.9.1"' in text


def test_serving_image_answers_serve_as_a_sagemaker_container() -> None:
    text = (REPO / "docker" / "Dockerfile.serve").read_text()
    assert 'ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/odp-serve-entrypoint"]' in text
    assert 'CMD ["serve"]' in text and "EXPOSE 8080" in text
    assert "USER ${UID}:${GID}" in text and "ML_ROOT=/opt/ml" in text
    entrypoint = (REPO / "docker" / "serve-entrypoint.sh").read_text()
    assert 'if [ "${1:-}" = "serve" ]' in entrypoint and "exec odp serve" in entrypoint
