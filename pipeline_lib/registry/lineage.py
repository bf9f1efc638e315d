"""What a run and a version say about where they come from: the training dataset as an
MLflow dataset input (its content hash as digest), the project's git commit, and the tag
names the pipeline writes.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from ..settings import REPO_ROOT

GIT_COMMIT_ENV = "ODP_GIT_COMMIT"  # set in images built without the .git folder
DIGEST_LENGTH = 32  # MLflow keeps at most 36 characters of a dataset digest

# run tags
DAG_ID_TAG = "odp.dag_id"
DAG_RUN_ID_TAG = "odp.dag_run_id"
DATASET_URI_TAG = "odp.dataset_uri"
BASE_NETWORK_TAG = "odp.base_network"
GIT_COMMIT_TAG = "mlflow.source.git.commit"
# version tags
VALIDATION_MAP_TAG = "validation_mAP"
DATASET_DIGEST_TAG = "dataset_digest"
BASE_MODEL_TAG = "base_model"


def git_commit(repo: Path = REPO_ROOT) -> str:
    """The project's commit (``$ODP_GIT_COMMIT`` first), or ``"unknown"``."""
    if os.environ.get(GIT_COMMIT_ENV):
        return os.environ[GIT_COMMIT_ENV]
    try:
        out = subprocess.run(  # noqa: S603  fixed argv, no shell
            ["git", "-C", str(repo), "rev-parse", "HEAD"],  # noqa: S607  git from PATH
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def training_dataset(uri: str, content_hash: str, name: str | None = None) -> Any:
    """An ``mlflow.data`` dataset for ``uri`` (local folder or s3://) whose digest is the
    dataset's content hash (truncated to what MLflow stores)."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    source = resolve_dataset_source(uri)
    label = name or Path(uri.rstrip("/")).name or uri
    return MetaDataset(source, name=label, digest=content_hash[:DIGEST_LENGTH])
