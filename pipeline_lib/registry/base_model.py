"""The seed of an incremental training run: a registered model or a ``model.tar.gz``,
resolved and checked against the job before anything else runs.

:func:`resolve_base_model` accepts ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` (read
with ``get_model_version_by_alias`` / ``get_model_version`` only: MLflow's search APIs have
returned versions without their aliases) or a ``model.tar.gz`` URI (local or ``s3://``).
:func:`check_base_model` is the pure compatibility rule (same base network, same number of
classes, same class map unless class changes are allowed); a refusal names both sides.
:func:`dataset_class_map` reads a dataset's class map from its annotation files, so the
check can run before validation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from .. import storage
from ..annotations import ImageAnnotation, class_map, load_json
from ..artifact import GLUONCV, MAX_SIDE_FILE_BYTES, archive_config
from .resolve import _MODELS_URI, resolve_model_uri

ANNOTATION_CHANNELS = ("train_annotation", "validation_annotation")
# what MLflow answers for a missing name, version or alias (an alias: INVALID_PARAMETER_VALUE)
_NOT_FOUND = {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"}
_EXPECTED = "expected models:/NAME@ALIAS, models:/NAME/VERSION or a model.tar.gz URI"


class BaseModelError(ValueError):
    """A ``base_model`` that cannot seed this job (unresolvable, or incompatible)."""


@dataclass(frozen=True)
class BaseModel:
    """A resolved seed model (JSON-able through :meth:`to_dict`)."""

    uri: str  # as given
    tar_path: str  # a local model.tar.gz
    base_network: str
    num_classes: int
    classes: dict[int, str]
    name: str | None = None  # registered model name and version, for models:/ URIs
    version: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    model_format: str = GLUONCV  # which graph it holds (a seed's format wins in training)
    named: bool = True  # False: a SageMaker job's archive, whose class names are unknown

    @property
    def lineage(self) -> str:
        """What a version seeded from it is tagged with: the URI and, from the registry,
        the version it resolved to (``models:/m@champion (m/3)``)."""
        return f"{self.uri} ({self.name}/{self.version})" if self.version else self.uri

    def to_dict(self) -> dict:
        """JSON-able (class ids as strings), for XCom."""
        data = asdict(self)
        data["classes"] = {str(k): v for k, v in self.classes.items()}
        data["lineage"] = self.lineage
        return data


def resolve_base_model(uri: str, tracking_uri: str | None = None) -> BaseModel:
    """Resolve ``uri`` to a local ``model.tar.gz`` and read its configuration.

    Raises:
        BaseModelError: not one of the accepted forms, no such version or file, or an
            archive without a usable ``hyperparams.json``/``class_map.json``.
    """
    from mlflow.exceptions import MlflowException

    uri = str(uri).strip()
    match = _MODELS_URI.match(uri)
    if uri.startswith("models:/") and not match:
        raise BaseModelError(f"base_model {uri!r}: {_EXPECTED}")
    if not match and not uri.endswith(".tar.gz"):
        raise BaseModelError(f"base_model {uri!r}: {_EXPECTED}")
    name = version = None
    metrics: dict[str, float] = {}
    try:
        if match:
            from .store import get_client

            client = get_client(tracking_uri)
            mv = (
                client.get_model_version_by_alias(match["name"], match["alias"])
                if match["alias"]
                else client.get_model_version(match["name"], match["version"])
            )
            name, version = mv.name, int(mv.version)
            if mv.run_id:
                metrics = dict(client.get_run(mv.run_id).data.metrics)
            tar = resolve_model_uri(f"models:/{name}/{version}", tracking_uri=tracking_uri)
        else:
            tar = resolve_model_uri(uri)
    except MlflowException as exc:
        if getattr(exc, "error_code", "") not in _NOT_FOUND:
            raise  # the server, not the name: a retry may help
        raise BaseModelError(f"base_model {uri!r}: not in the registry ({exc.message})") from None
    except FileNotFoundError as exc:
        raise BaseModelError(f"base_model {uri!r}: {exc}") from None
    try:
        config = archive_config(tar)
        num_classes = int(config.hyperparameters.get("num_classes", config.num_classes))
    except (FileNotFoundError, KeyError, ValueError) as exc:
        raise BaseModelError(
            f"base_model {uri!r}: not a model.tar.gz of odp train or of SageMaker's Object "
            f"Detection ({exc})"
        ) from None
    return BaseModel(
        uri,
        str(tar),
        str(config.hyperparameters.get("base_network")),
        num_classes,
        config.classes,
        name,
        version,
        metrics,
        config.format,
        config.class_names != "generated",
    )


def check_base_model(
    base: BaseModel,
    *,
    base_network: str,
    classes: Mapping[int, str] | None,
    num_classes: int | None = None,
    allow_class_change: bool = False,
) -> None:
    """Refuse a seed that does not fit the job; every message names both sides.

    ``classes`` is the dataset's class map (``None``: unknown yet, only the base network and
    ``num_classes`` are checked); ``num_classes`` defaults to ``len(classes)``. The number
    of classes must match always (as training requires); ``allow_class_change`` accepts
    other class names. A SageMaker job's archive names no classes: only their number counts.
    """
    seed = f"base_model {base.lineage}"
    if base.base_network != base_network:
        raise BaseModelError(
            f"{seed} is a {base.base_network} model but this run's base_network is "
            f"{base_network}; incremental training needs the same base network"
        )
    wanted = num_classes if num_classes is not None else (len(classes) if classes else None)
    if wanted is not None and wanted != base.num_classes:  # training refuses it too
        raise BaseModelError(
            f"{seed} has num_classes={base.num_classes} but this run's data has "
            f"num_classes={wanted}; incremental training needs the same number of classes"
        )
    if (
        base.named
        and classes is not None
        and dict(classes) != base.classes
        and not allow_class_change
    ):
        raise BaseModelError(
            f"{seed} has class map {base.classes} but the dataset's is {dict(classes)}; "
            "set allow_class_change to reuse the weights of the shared class names"
        )


def dataset_class_map(dataset_uri: str) -> dict[int, str]:
    """Class id -> name over the annotation files of an image+JSON dataset (local or
    ``s3://``), as validation names them; JSONs above the metadata size limit are refused."""
    records: list[ImageAnnotation] = []
    for channel in ANNOTATION_CHANNELS:
        folder = storage.join(dataset_uri, channel)
        if not storage.exists(folder):
            continue
        for uri in storage.list_files(folder):
            if not uri.endswith(".json"):
                continue
            if storage.size(uri) > MAX_SIDE_FILE_BYTES:
                raise BaseModelError(f"{uri}: larger than {MAX_SIDE_FILE_BYTES} bytes")
            data = load_json(storage.read_bytes(uri), uri)
            records.append(ImageAnnotation.from_json(data, uri))
    return class_map(records)


def is_base_model_uri(value: str | None) -> bool:
    """Whether a Param value asks for a seed (an empty value trains from scratch)."""
    return bool(value and str(value).strip())


__all__ = [
    "BaseModel",
    "BaseModelError",
    "check_base_model",
    "dataset_class_map",
    "is_base_model_uri",
    "resolve_base_model",
]
