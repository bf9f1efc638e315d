"""The training/validation DataLoaders."""

import signal
import time

import pytest


@pytest.fixture
def dataset(training_data):
    return training_data


def test_data_workers_obey_terminate_even_under_a_flag_only_handler(dataset):
    import mxnet as mx

    from pipeline_lib.training.cached_data import CacheBudget
    from pipeline_lib.training.data import ImageJsonDetection
    from pipeline_lib.training.loaders import val_loader

    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        ds = ImageJsonDetection(dataset / "validation", dataset / "validation_annotation")
        loader = val_loader(ds, 300, 2, workers=2, budget=CacheBudget(0))  # the worker path
        assert next(iter(loader))[0].shape == (2, 3, 300, 300)
        pool = loader._worker_pool
        start = time.monotonic()
        pool.terminate()  # hangs forever if the workers inherited the handler above
        assert time.monotonic() - start < 30
        del loader
        mx.nd.waitall()
    finally:
        signal.signal(signal.SIGTERM, previous)
