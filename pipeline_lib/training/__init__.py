"""SSD training: data loading (3 input formats), models, train loop, checkpoints, contract."""
