"""SageMaker's graph as odp builds it is example/ssd's, node for node: against example/ssd's
own training symbols (tests/data/example_ssd) and against the test-side generator
(tests/sagemaker_models.py) for both bases, several input sizes and class counts; what a
saved symbol is (format, base network, classes) read from its JSON alone."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import sagemaker_models

from pipeline_lib.sagemaker_ssd.graph import training_symbol
from pipeline_lib.sagemaker_ssd.symbol_info import (
    SAGEMAKER,
    SymbolError,
    describe,
    symbol_format,
)

GOLDEN = Path(__file__).parents[2] / "data" / "example_ssd"


def _graph(symbol) -> list[tuple]:
    """Every node as (op, name, inputs, attrs), and the heads."""
    data = json.loads(symbol.tojson()) if not isinstance(symbol, dict) else symbol
    nodes = [(n["op"], n["name"], n["inputs"], n.get("attrs", {})) for n in data["nodes"]]
    return nodes + [("heads", data["heads"])]


def _first_difference(ours: list[tuple], theirs: list[tuple]) -> str:
    for i, (a, b) in enumerate(zip(ours, theirs, strict=False)):
        if a != b:
            return f"node {i}: ours {a} != theirs {b}"
    return f"{len(ours)} nodes != {len(theirs)} nodes"


@pytest.mark.parametrize(
    ("base", "shape", "golden"),
    [
        ("vgg-16", 300, "vgg16_reduced_300_3"),
        ("vgg-16", 512, "vgg16_reduced_512_3"),
        ("resnet-50", 300, "resnet50_300_3"),
    ],
)
def test_the_training_symbol_is_example_ssds(base: str, shape: int, golden: str) -> None:
    theirs = json.loads(gzip.decompress((GOLDEN / f"{golden}-symbol.json.gz").read_bytes()))
    ours = _graph(training_symbol(base, shape, 3, nms_threshold=0.45))
    assert ours == _graph(theirs), _first_difference(ours, _graph(theirs))


@pytest.mark.parametrize(
    ("base", "shape"),
    [("vgg-16", 300), ("vgg-16", 400), ("vgg-16", 512), ("vgg-16", 600), ("resnet-50", 512)],
)
@pytest.mark.parametrize("classes", [1, 20])
def test_the_training_symbol_equals_the_generators(base: str, shape: int, classes: int) -> None:
    ours = _graph(training_symbol(base, shape, classes, nms_threshold=0.3))
    theirs = _graph(sagemaker_models.training_symbol(base, shape, classes, nms_threshold=0.3))
    assert ours == theirs, _first_difference(ours, theirs)


@pytest.mark.parametrize("base", ["vgg-16", "resnet-50"])
@pytest.mark.parametrize("classes", [1, 7, 80])
def test_a_saved_graph_tells_its_base_network_and_classes(base: str, classes: int) -> None:
    symbol = json.loads(sagemaker_models.training_symbol(base, 512, classes).tojson())
    assert symbol_format(symbol) == SAGEMAKER
    info = describe(symbol)
    assert (info.base_network, info.num_classes) == (base, classes)


def test_an_operator_outside_example_ssds_graph_is_refused_by_name() -> None:
    symbol = json.loads(sagemaker_models.training_symbol("resnet-50", 300, 2).tojson())
    symbol["nodes"][5]["op"] = "Custom"
    with pytest.raises(SymbolError, match="operator 'Custom' is not part of SageMaker's SSD"):
        describe(symbol)


def test_a_graph_of_neither_base_is_refused() -> None:
    symbol = json.loads(sagemaker_models.training_symbol("resnet-50", 300, 2).tojson())
    for node in symbol["nodes"]:
        if node["name"] == "bn_data":
            node["name"] = "bn_input"
    with pytest.raises(SymbolError, match="neither SageMaker's vgg-16 nor resnet-50"):
        describe(symbol)
