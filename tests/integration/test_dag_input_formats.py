"""Each of SageMaker's three input formats through the whole DAG (``dag.test()``), and the
combinations ``resolve_inputs`` refuses, naming the Params."""

from __future__ import annotations

import json
import time

import pytest
from dag_runs import load_dag, small_conf, task_states

from pipeline_lib.manifest import dataset_to_manifest
from pipeline_lib.recordio.convert import convert_to_recordio
from pipeline_lib.synthetic import SynthConfig, generate

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """One tiny dataset in all three formats: image+JSON root, two .rec, two manifests
    (custom label attribute, so attribute_names matter)."""
    root = tmp_path_factory.mktemp("formats")
    dataset = root / "dataset"
    generate(dataset, SynthConfig(images=16, classes=2, seed=11, min_size=96, max_size=128))
    convert_to_recordio(dataset, root / "rec" / "data", progress=False)
    for channel in ("train", "validation"):
        dataset_to_manifest(dataset, dataset / f"{channel}.manifest", "boxes", channel)
    return dataset, root / "rec"


def _conf(dataset, name, **overrides):
    conf = small_conf(dataset, name, epochs=1, mini_batch_size=4, **overrides)
    conf["hyperparameters"] = {"num_workers": "0"}
    return conf


def _run(conf):
    started = time.monotonic()
    dagrun = load_dag().test(run_conf=conf)
    return dagrun, time.monotonic() - started


@pytest.mark.parametrize("fmt", ["image+json", "recordio", "augmented-manifest"])
def test_each_input_format_trains_evaluates_and_registers(dag_env, tiny_data, fmt, capsys):
    odp_home = dag_env
    from mlflow.tracking import MlflowClient

    dataset, rec = tiny_data
    name = f"fmt-{fmt.replace('+', '-')}"
    extra = {
        "image+json": {},
        "recordio": {
            "train_rec_uri": str(rec / "data_train.rec"),
            "validation_rec_uri": str(rec / "data_validation.rec"),
        },
        "augmented-manifest": {
            "train_manifest_uri": str(dataset / "train.manifest"),
            "validation_manifest_uri": str(dataset / "validation.manifest"),
            "attribute_names": ["source-ref", "boxes"],
        },
    }[fmt]
    dagrun, seconds = _run(_conf(dataset, name, input_format=fmt, **extra))
    states = task_states(dagrun)
    assert str(dagrun.state) == "success", states
    with capsys.disabled():
        print(f"\n[end-to-end] input_format={fmt}: {seconds:.1f} s")

    version = MlflowClient(odp_home.mlflow_tracking_uri).get_model_version_by_alias(
        name, "candidate"
    )
    assert version.tags["odp.input_format"] == fmt
    # the UI's "MLflow" extra links on train, evaluate (the run) and register (the version)
    from odp_links import MLflowLink

    tis = {ti.task_id: ti for ti in dagrun.get_task_instances()}
    links = {t: MLflowLink().get_link(None, ti_key=tis[t].key) for t in tis}
    assert links["train"] == links["evaluate"] and links["train"].endswith(version.run_id)
    assert links["register"].endswith(f"/#/models/{name}/versions/{version.version}")
    run_dir = next((odp_home.artifact_root / "runs" / "object_detection_training").iterdir())
    metrics = json.loads((run_dir / "evaluate" / "metrics.json").read_text())
    assert 0.0 <= metrics["metrics"]["mAP"] <= 1.0
    if fmt == "recordio":  # trained as it is: linked, not converted
        staged = run_dir / "convert" / "train" / "train.rec"
        assert staged.stat().st_ino == (rec / "data_train.rec").stat().st_ino
        assert not (odp_home.artifact_root / "cache" / "recordio").exists()
    if fmt == "augmented-manifest":  # written out as image+JSON once, by content
        (cached,) = (odp_home.artifact_root / "cache" / "manifest").iterdir()
        lines = (dataset / "validation.manifest").read_text().splitlines()
        written = list((cached / "validation" / "validation_annotation").glob("*.json"))
        assert len(written) == len(lines)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"train_rec_uri": "/data/train.rec"},
            "'train_rec_uri' belongs to input_format 'recordio', but input_format is 'image+json'",
        ),
        (
            {"input_format": "recordio", "train_rec_uri": "TRAIN_REC"},
            "Param 'validation_rec_uri' is empty: input_format 'recordio' needs a validation",
        ),
        (
            {"input_format": "augmented-manifest", "train_manifest_uri": "TRAIN_REC"},
            "'train_manifest_uri' = ",
        ),
        ({"dataset_uri": "TRAIN_REC"}, "Param 'dataset_uri' = "),
        (
            {
                "input_format": "augmented-manifest",
                "train_manifest_uri": "MANIFEST",
                "validation_manifest_uri": "VAL_MANIFEST",
                "attribute_names": ["boxes", "boxes"],
            },
            "Param 'attribute_names'",
        ),
    ],
)
def test_invalid_combinations_fail_the_first_task_naming_the_fields(
    dag_env, tiny_data, overrides, message, capfd
):
    dataset, rec = tiny_data
    paths = {
        "TRAIN_REC": str(rec / "data_train.rec"),
        "MANIFEST": str(dataset / "train.manifest"),
        "VAL_MANIFEST": str(dataset / "validation.manifest"),
    }
    overrides = {k: paths.get(v, v) if isinstance(v, str) else v for k, v in overrides.items()}
    dagrun = load_dag().test(
        run_conf=_conf(dataset, "bad-combination", **overrides),
        mark_success_pattern="validate|convert|train|evaluate|register",
    )
    states = task_states(dagrun)
    assert states["resolve_inputs"] == "failed", states
    assert states["validate"] == "upstream_failed"
    captured = capfd.readouterr()
    errors = [
        line
        for line in (captured.out + captured.err).splitlines()
        if line.startswith("airflow.sdk.exceptions.AirflowFail")
    ]
    assert any(message in line for line in errors), errors
