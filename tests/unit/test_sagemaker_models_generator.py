"""The test-side SageMaker Object Detection generator (tests/sagemaker_models.py) against
example/ssd's own training symbols (tests/data/example_ssd), and the artifacts it writes."""

from __future__ import annotations

import gzip
import json
import tarfile
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest
import sagemaker_models as sm

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "example_ssd"
GOLDEN_CONFIGS = [
    ("vgg16_reduced_300_3", "vgg-16", 300),
    ("vgg16_reduced_512_3", "vgg-16", 512),
    ("resnet50_300_3", "resnet-50", 300),
]


def _describe(graph: dict, index: int) -> str:
    node = graph["nodes"][index]
    inputs = [
        f"{graph['nodes'][i]['name']}[{out}]" if out else graph["nodes"][i]["name"]
        for i, out, _ in node["inputs"]
    ]
    return f"#{index} {node['op']} {node['name']!r} inputs={inputs} attrs={node.get('attrs', {})}"


def _graph_diff(expected: dict, actual: dict, limit: int = 8) -> list[str]:
    """Readable differences between two symbol JSONs (node by node, then heads, arg_nodes)."""
    diffs = []
    for i, (want, got) in enumerate(zip(expected["nodes"], actual["nodes"], strict=False)):
        if want != got:
            diffs.append(f"node {i}:\n  example/ssd: {_describe(expected, i)}")
            diffs.append(f"  generator:   {_describe(actual, i)}")
    if len(expected["nodes"]) != len(actual["nodes"]):
        diffs.append(f"{len(expected['nodes'])} nodes in example/ssd, {len(actual['nodes'])} here")
    for key in ("heads", "arg_nodes", "node_row_ptr"):
        if expected[key] != actual[key]:
            diffs.append(f"{key}: example/ssd {expected[key]}, generator {actual[key]}")
    return diffs[: 2 * limit]


@pytest.mark.parametrize(("golden", "base", "image_shape"), GOLDEN_CONFIGS)
def test_training_symbol_matches_example_ssd(golden: str, base: str, image_shape: int) -> None:
    with gzip.open(GOLDEN / f"{golden}-symbol.json.gz", "rt") as handle:
        expected = json.load(handle)
    # Unnamed nodes built before (and an active Prefix) must not shift the generated names.
    x = mx.sym.Variable("unrelated")
    for _ in range(2):
        x = mx.sym.Flatten(mx.sym.transpose(x)) + x * x - x
    with mx.name.Prefix("leak_"):
        symbol = sm.training_symbol(base, image_shape, 3, nms_threshold=0.45, nms_topk=400)
    actual = json.loads(symbol.tojson())
    diff = _graph_diff(expected, actual)
    assert not diff, "generated graph differs from example/ssd's:\n" + "\n".join(diff)
    assert actual["nodes"] == expected["nodes"]
    assert symbol.list_outputs() == [
        "cls_prob_output",
        "loc_loss_output",
        "cls_label_output",
        "det_out_output",
    ]
    assert {"data", "label"} <= set(symbol.list_arguments())


def test_training_symbol_follows_nms_settings() -> None:
    nodes = json.loads(
        sm.training_symbol("resnet-50", 300, 2, nms_threshold=0.3, nms_topk=50).tojson()
    )["nodes"]
    (detection,) = [n for n in nodes if n["name"] == "detection"]
    assert detection["attrs"]["nms_threshold"] == "0.3"
    assert detection["attrs"]["nms_topk"] == "50"
    assert detection["attrs"]["force_suppress"] == "False"


def _ssd_shapes(symbol: mx.sym.Symbol, image_shape: int) -> dict[str, tuple[int, ...]]:
    internals = symbol.get_internals()
    heads = mx.sym.Group([internals[f"{n}_output"] for n in (sm.CLS_PRED, sm.LOC_PRED, sm.ANCHORS)])
    _, shapes, _ = heads.infer_shape(data=(1, 3, image_shape, image_shape))
    return dict(zip((sm.CLS_PRED, sm.LOC_PRED, sm.ANCHORS), shapes, strict=True))


@pytest.mark.parametrize(
    ("base", "image_shape", "anchors"),
    [
        ("vgg-16", 300, 8732),  # SSD300's anchor count
        # Not the paper's SSD512 (24564): example/ssd's last extra layer has stride 1, pad 1,
        # so its map stays 2x2 (64, 32, 16, 8, 4, 2, 2).
        ("vgg-16", 512, 64 * 64 * 4 + (32 * 32 + 16 * 16 + 8 * 8 + 4 * 4) * 6 + 2 * 2 * 4 * 2),
        # ResNet-50: stride 16 and 32 maps (19, 10), then 5, 3, 2, 1; 4/6/6/6/4/4 per cell.
        ("resnet-50", 300, 19 * 19 * 4 + 10 * 10 * 6 + 5 * 5 * 6 + 3 * 3 * 6 + 2 * 2 * 4 + 4),
        ("resnet-50", 512, 32 * 32 * 4 + 16 * 16 * 6 + 8 * 8 * 6 + 4 * 4 * 6 + 2 * 2 * 4 + 4),
    ],
)
def test_training_symbol_shapes(base: str, image_shape: int, anchors: int) -> None:
    shapes = _ssd_shapes(sm.training_symbol(base, image_shape, 5), image_shape)
    assert shapes == {
        sm.CLS_PRED: (1, 6, anchors),
        sm.LOC_PRED: (1, 4 * anchors),
        sm.ANCHORS: (1, anchors, 4),
    }


def _expected_param_shapes(symbol: mx.sym.Symbol, image_shape: int) -> dict[str, tuple]:
    args, _, auxs = symbol.infer_shape(data=(1, 3, image_shape, image_shape), label=(1, 2, 5))
    expected = {
        f"arg:{n}": s
        for n, s in zip(symbol.list_arguments(), args, strict=True)
        if n not in ("data", "label")
    }
    expected.update(
        {f"aux:{n}": s for n, s in zip(symbol.list_auxiliary_states(), auxs, strict=True)}
    )
    return expected


@pytest.mark.parametrize(
    ("base", "image_shape", "tar"), [("vgg-16", 300, False), ("resnet-50", 512, True)]
)
def test_write_artifact(tmp_path: Path, base: str, image_shape: int, tar: bool) -> None:
    written = sm.write_artifact(
        tmp_path / "out",
        base,
        image_shape,
        5,
        hyperparameters={"nms_threshold": "0.5", "epochs": "3"},
        tar=tar,
    )
    if tar:
        assert written == tmp_path / "out" / "model.tar.gz"
        with tarfile.open(written) as archive:
            assert sorted(archive.getnames()) == sorted(
                [sm.SYMBOL_FILE, sm.PARAMS_FILE, sm.HYPERPARAMS_FILE]
            )
            archive.extractall(tmp_path / "extracted", filter="data")
        folder = tmp_path / "extracted"
    else:
        assert written == tmp_path / "out"
        folder = written
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [sm.SYMBOL_FILE, sm.PARAMS_FILE, sm.HYPERPARAMS_FILE]
    )

    hyper = json.loads((folder / sm.HYPERPARAMS_FILE).read_text())
    assert all(isinstance(v, str) for v in hyper.values())
    assert hyper["base_network"] == base
    assert (hyper["num_classes"], hyper["image_shape"]) == ("5", str(image_shape))
    assert (hyper["nms_threshold"], hyper["epochs"], hyper["optimizer"]) == ("0.5", "3", "sgd")

    graph = json.loads((folder / sm.SYMBOL_FILE).read_text())
    assert graph["attrs"]["mxnet_version"] == ["int", 10300]
    reference = json.loads(sm.training_symbol(base, image_shape, 5, nms_threshold=0.5).tojson())
    assert graph["nodes"] == reference["nodes"]

    symbol, args, auxs = mx.model.load_checkpoint(str(folder / "model_algo_1"), 0)
    saved = mx.nd.load(str(folder / sm.PARAMS_FILE))
    expected = _expected_param_shapes(symbol, image_shape)
    assert {k: v.shape for k, v in saved.items()} == expected
    assert len(args) + len(auxs) == len(expected)

    # example/ssd's Module initialisation: Xavier weights, __init__ attrs, BatchNorm defaults.
    for key, value in saved.items():
        array = value.asnumpy()
        assert np.isfinite(array).all(), key
        name = key[4:]
        if name.endswith("_scale"):
            assert (array == 20).all(), key
        elif name.endswith(("_bias", "_beta", "_moving_mean")):
            assert (array == 0).all(), key
        elif name.endswith(("_gamma", "_moving_var")):
            assert (array == 1).all(), key
        else:
            assert name.endswith("_weight"), key
            assert array.std() > 0, key


def test_write_artifact_is_seeded_and_takes_params(tmp_path: Path) -> None:
    symbol = sm.training_symbol("resnet-50", 128, 2)
    first, again, other = (sm.initial_params(symbol, 128, seed=s) for s in (3, 3, 4))
    key = "arg:conv0_weight"
    assert np.array_equal(first[key].asnumpy(), again[key].asnumpy())
    assert not np.array_equal(first[key].asnumpy(), other[key].asnumpy())

    bare = {k[4:]: v for k, v in first.items()}  # names without arg:/aux:
    folder = sm.write_artifact(tmp_path, "resnet-50", 128, 2, params=bare, tar=False)
    saved = mx.nd.load(str(folder / sm.PARAMS_FILE))
    assert sorted(saved) == sorted(first)
    assert all(np.array_equal(saved[k].asnumpy(), first[k].asnumpy()) for k in first)


def test_reference_detections(tmp_path: Path) -> None:
    num_classes = 3
    tarball = sm.write_artifact(tmp_path, "resnet-50", 128, num_classes, seed=1)
    rng = np.random.default_rng(0)
    images = [
        rng.integers(0, 256, (90, 140, 3), dtype=np.uint8),
        rng.integers(0, 256, (160, 100, 3), dtype=np.uint8),
    ]
    detections = sm.reference_detections(tarball, images)
    assert len(detections) == len(images)
    for rows in detections:
        assert rows.ndim == 2 and rows.shape[1] == 6 and len(rows) > 0
        assert np.isfinite(rows).all()
        classes, scores = rows[:, 0], rows[:, 1]
        assert ((classes >= 0) & (classes < num_classes)).all()
        assert np.array_equal(classes, np.round(classes))
        assert ((scores >= 0) & (scores <= 1)).all()
        assert (np.diff(scores) <= 0).all(), "not in descending score order"

    # No suppression at an NMS threshold of 1: at least as many rows, the same best score.
    unsuppressed = sm.reference_detections(tarball, images[:1], nms_threshold=1.0)
    assert len(unsuppressed[0]) >= len(detections[0])
    assert unsuppressed[0][0, 1] == detections[0][0, 1]
