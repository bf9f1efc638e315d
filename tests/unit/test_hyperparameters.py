import json

import pytest

from pipeline_lib.hyperparameters import HyperparameterError, load, parse

REQUIRED = {"num_classes": "3", "num_training_samples": "100"}


def test_defaults_match_sagemaker_documentation():
    hp = parse(REQUIRED)
    assert hp.base_network == "vgg-16"
    assert hp.use_pretrained_model == 1
    assert hp.epochs == 30
    assert hp.learning_rate == 0.001
    assert hp.mini_batch_size == 32
    assert hp.momentum == 0.9
    assert hp.weight_decay == 0.0005
    assert hp.optimizer == "sgd"
    assert hp.image_shape == 300
    assert hp.label_width == 350
    assert hp.nms_threshold == 0.45
    assert hp.overlap_threshold == 0.5
    assert hp.lr_scheduler_factor == 0.1
    assert hp.lr_scheduler_step == ()
    assert hp.early_stopping is False
    assert (hp.early_stopping_min_epochs, hp.early_stopping_patience) == (10, 5)


def test_string_values_are_parsed():
    hp = parse(
        {
            **REQUIRED,
            "epochs": "5",
            "learning_rate": "0.01",
            "lr_scheduler_step": "3,6",
            "early_stopping": "True",
            "base_network": "resnet-50",
            "freeze_layer_pattern": "^vgg.*conv[12]",
            "image_shape": "512",
        }
    )
    assert hp.epochs == 5 and hp.learning_rate == 0.01
    assert hp.lr_scheduler_step == (3, 6)
    assert hp.early_stopping is True
    assert hp.base_network == "resnet-50"
    assert hp.image_shape == 512


@pytest.mark.parametrize(
    "key,value,fragment",
    [
        ("epochs", "0", "an integer in [1, 10000]"),
        ("epochs", "two", "integer"),
        ("learning_rate", "0", "> 0"),
        ("learning_rate", "nan", "> 0"),
        ("base_network", "vgg-19", "one of vgg-16"),
        ("optimizer", "lamb", "one of sgd"),
        ("image_shape", "256", "[300, 1024]"),
        ("lr_scheduler_step", "10,5", "increasing"),
        ("freeze_layer_pattern", "(", "valid regex"),
        ("use_pretrained_model", "2", "[0, 1]"),
        ("early_stopping", "maybe", "true or false"),
        ("image_shape", "4096", "an integer in [300, 1024]"),
    ],
)
def test_invalid_values_name_key_value_and_range(key, value, fragment):
    with pytest.raises(HyperparameterError) as err:
        parse({**REQUIRED, key: value})
    message = str(err.value)
    assert key in message and repr(value) in message and fragment in message


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [  # issue 27: integers are integers, every number has an upper bound
        ("epochs", "1e308", "an integer in [1, 10000]"),
        ("epochs", "2.0", "an integer in [1, 10000]"),
        ("epochs", "1" + "0" * 5000, "an integer in [1, 10000]"),
        ("num_classes", "1000000000", "an integer in [1, 10000]"),
        ("seed", "1e29", "an integer in [0, 4294967295]"),
        ("seed", str(10**29), "an integer in [0, 4294967295]"),
        ("max_runtime_seconds", "1e30", "an integer in [0, 2419200]"),
        ("mini_batch_size", "100000", "an integer in [1, 1024]"),
        ("label_width", "10000000", "an integer in [7, 50002]"),
        ("overlap_threshold", "2", "a number > 0 and <= 0.999"),
        ("lr_scheduler_step", "10,1e9", "epoch numbers <= 10000"),
    ],
)
def test_numbers_are_bounded_and_integers_are_integers(key, value, fragment):
    with pytest.raises(HyperparameterError) as err:
        parse({**REQUIRED, key: value})
    message = str(err.value)
    assert key in message and fragment in message and len(message) < 300, message


def _deep(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("value", [{"a": "1"}, ["1"], _deep(5000)])
def test_nested_values_are_refused_not_printed(value):
    with pytest.raises(HyperparameterError, match="a string value"):
        parse({**REQUIRED, "epochs": value})


def test_a_fifo_and_deep_nesting_are_file_errors(tmp_path):
    import os

    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    with pytest.raises(HyperparameterError, match="a FIFO, not a regular file"):
        load(str(fifo))
    deep = tmp_path / "deep.json"
    deep.write_text('{"num_classes": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(HyperparameterError, match="nested too deeply"):
        load(str(deep))


def test_unknown_key_is_an_error():
    with pytest.raises(HyperparameterError, match="learning_rat"):
        parse({**REQUIRED, "learning_rat": "0.1"})


def test_required_keys():
    with pytest.raises(HyperparameterError, match="num_classes"):
        parse({"num_training_samples": "10"})


def test_round_trip_through_strings(tmp_path):
    hp = parse({**REQUIRED, "lr_scheduler_step": "2,4", "early_stopping": "true"})
    path = tmp_path / "hyperparameters.json"
    path.write_text(json.dumps(hp.to_strings()))
    assert load(str(path)) == hp


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("{not json", "not valid JSON"),
        ('["num_classes", "2"]', "a JSON list, not an object"),
        ('{"num_classes": "2", "num_classes": "3", "num_training_samples": "5"}', "appears twice"),
        ('{"num_classes": "2", "num_training_samples": "5", "epoch": "3"}', "'epoch'"),
        ('{"num_classes": "2", "num_training_samples": "5", "epochs": "-1"}', "'epochs'='-1'"),
        ('{"num_classes": "2"}', "'num_training_samples'"),
    ],
)
def test_load_names_the_file_and_the_problem(tmp_path, text, fragment):
    path = tmp_path / "hyperparameters.json"
    path.write_text(text)
    with pytest.raises(HyperparameterError) as err:
        load(str(path))
    message = str(err.value)
    assert message.startswith(f"{path}: ") and fragment in message and "\n" not in message


def test_load_refuses_non_utf8_and_huge_files(tmp_path):
    path = tmp_path / "hyperparameters.json"
    path.write_bytes(b'{"num_classes": "\xff"}')
    with pytest.raises(HyperparameterError, match="not UTF-8"):
        load(str(path))
    path.write_bytes(b" " * (2 << 20))
    with pytest.raises(HyperparameterError, match="larger than"):
        load(str(path))
