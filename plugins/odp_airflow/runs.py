"""Run roots: ``{artifact_root}/runs/{dag_id}/{run_id}/{task}/`` for every task's outputs."""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_HOSTS = 64  # instance_count: the DAG Param's maximum too


def check_instance_count(value: object) -> int:
    """The ``instance_count`` Param as a host count (``ValueError`` naming it otherwise)."""
    from pipeline_lib import bounds

    return bounds.parse_int(value, "Param 'instance_count'", minimum=1, maximum=MAX_HOSTS)


def safe_segment(value: str) -> str:
    """A run id as one path segment (``:`` and ``+`` are legal in run ids, not in all stores)."""
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", value)


@dataclass(frozen=True)
class RunRoot:
    """Where one DAG run writes; ``task(name)`` is a task's own folder or prefix."""

    artifact_root: str
    dag_id: str
    run_id: str

    @property
    def uri(self) -> str:
        from pipeline_lib.storage import join

        return join(self.artifact_root, "runs", self.dag_id, safe_segment(self.run_id))

    def task(self, name: str) -> str:
        from pipeline_lib.storage import join

        return join(self.uri, name)
