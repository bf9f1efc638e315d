"""``odp train``: the SageMaker training-container contract around the SSD engine.

Reads ``ML_ROOT/input/config/*.json`` and ``ML_ROOT/input/data/<channel>``, writes the model
to ``ML_ROOT/model``, resumable checkpoints to ``ML_ROOT/checkpoints``, the final metrics to
``ML_ROOT/output/metrics.json`` and, on failure, one paragraph to ``ML_ROOT/output/failure``.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

from ..hyperparameters import HyperparameterError, Hyperparameters
from ..hyperparameters import load as load_hyperparameters
from .contract import MLPaths

EXIT_FAILURE = 1
EXIT_SIGTERM = 143


class TrainingError(Exception):
    """A user-facing training failure (bad configuration or data)."""


def run_training(ml_root: str | None = None, allow_class_change: bool = False) -> int:
    """Run training under ``ml_root``; returns the process exit code."""
    paths = MLPaths(Path(ml_root or os.environ.get("ML_ROOT", "/opt/ml")))
    paths.output.mkdir(parents=True, exist_ok=True)
    (paths.output / "failure").unlink(missing_ok=True)
    stopper = _Stopper()
    stopper.install()
    trainer, ok = _Trainer(paths, stopper, allow_class_change), False
    try:
        code = trainer.run()
        ok = True
        return code
    except Exception as exc:  # every failure leaves a reason SageMaker-style
        reason = _failure_reason(exc)
        (paths.output / "failure").write_text(reason + "\n")
        print(f"training failed: {reason}", file=sys.stderr, flush=True)
        if not isinstance(exc, TrainingError | HyperparameterError | FileNotFoundError):
            traceback.print_exc()
        return EXIT_FAILURE
    finally:
        if trainer.cluster is not None:  # several hosts: leave the parameter server
            trainer.cluster.close(ok=ok)
        stopper.uninstall()


def _failure_reason(exc: Exception) -> str:
    kind = {
        HyperparameterError: "ClientError: invalid hyperparameter",
        FileNotFoundError: "ClientError: missing input",
        TrainingError: "ClientError",
    }
    for cls, label in kind.items():
        if isinstance(exc, cls):
            return f"{label}: {exc}"
    return f"AlgorithmError: {type(exc).__name__}: {exc}"


class _Stopper:
    """Turns SIGTERM into a flag checked between batches, plus the run-time limit."""

    def __init__(self) -> None:
        self.signal_reason: str | None = None
        self.deadline: float | None = None

    def install(self) -> None:
        self._previous = signal.signal(signal.SIGTERM, self._on_signal)

    def uninstall(self) -> None:
        """Put back the handler that was there before (training may run in-process)."""
        signal.signal(signal.SIGTERM, self._previous)

    def _on_signal(self, signum, _frame) -> None:
        self.signal_reason = f"received {signal.Signals(signum).name}"

    def __call__(self) -> str | None:
        if self.signal_reason:
            return self.signal_reason
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return "max_runtime_seconds reached"
        return None


class _Trainer:
    def __init__(self, paths: MLPaths, stopper: _Stopper, allow_class_change: bool):
        self.paths, self.stopper, self.allow_class_change = paths, stopper, allow_class_change
        self.started = time.monotonic()
        self.cluster = None  # distributed.Cluster when resourceconfig.json lists several hosts

    # ---------------------------------------------------------------- set-up

    def _configs(self) -> tuple[Hyperparameters, dict, dict]:
        hp_path = self.paths.config / "hyperparameters.json"
        if not hp_path.exists():
            raise FileNotFoundError(f"{hp_path} not found")
        hp = load_hyperparameters(str(hp_path))
        data_cfg = _read_json(self.paths.config / "inputdataconfig.json")
        resource = _read_json(self.paths.config / "resourceconfig.json") or {
            "current_host": "algo-1",
            "hosts": ["algo-1"],
        }
        return hp, data_cfg, resource

    def _datasets(self, data_cfg: dict):
        from .data import ChannelSpec, open_channel

        out = {}
        for name in ("train", "validation"):
            path = self.paths.channel(name)
            if not path.exists():
                raise FileNotFoundError(
                    f"channel '{name}' is required: {path} does not exist (SageMaker Object "
                    "Detection needs both train and validation channels)"
                )
            cfg = data_cfg.get(name, {})
            content_type = cfg.get("ContentType", _guess_content_type(path))
            spec = ChannelSpec(name, path, content_type, tuple(cfg.get("AttributeNames", ())))
            ann = self.paths.channel(f"{name}_annotation")
            out[name] = open_channel(spec, ann if ann.exists() else None)
        return out["train"], out["validation"]

    def run(self) -> int:
        import mxnet as mx
        import numpy as np

        from .checkpoints import Checkpointer, LoopState
        from .data import dataset_classes
        from .distributed import Cluster, kv_store_type
        from .engine import (
            NonFiniteLoss,
            StopRequested,
            evaluate,
            train_loader,
            train_one_epoch,
            val_loader,
        )
        from .metrics_log import MetricLogger
        from .model import build_ssd

        hp, data_cfg, resource = self._configs()
        hosts = resource.get("hosts", ["algo-1"])
        host = resource.get("current_host", hosts[0])
        log = MetricLogger(host=host, mlflow_run_id=os.environ.get("ODP_MLFLOW_RUN_ID"))
        kv_type = kv_store_type(hp.kv_store, len(hosts), len(_contexts()))
        if len(hosts) > 1:
            self.cluster = Cluster.start(
                resource, kv_type, self.paths.output / "failure", self.paths.checkpoints, log.info
            )
            log.info(
                f"mini_batch_size={hp.mini_batch_size} per host: effective batch "
                f"{hp.mini_batch_size * len(hosts)} over {len(hosts)} hosts"
            )
            if not self.cluster.sync and hp.lr_scheduler_step:
                log.info("warning: lr_scheduler_step is not applied with kv_store=dist_async")
        if hp.max_runtime_seconds:
            self.stopper.deadline = self.started + hp.max_runtime_seconds
        random.seed(hp.seed)
        np.random.seed(hp.seed)
        mx.random.seed(hp.seed)

        train_ds, val_ds = self._datasets(data_cfg)
        classes = dataset_classes(train_ds, self.paths.channel("train"))
        for cid, name in dataset_classes(val_ds, self.paths.channel("validation")).items():
            classes.setdefault(cid, name)
        classes = dict(sorted(classes.items()))
        if max(classes) >= hp.num_classes:
            raise TrainingError(
                f"num_classes={hp.num_classes} but the data uses class id {max(classes)} "
                f"(ids must be 0..num_classes-1)"
            )
        for cid in range(hp.num_classes):
            classes.setdefault(cid, f"class_{cid}")
        if hp.num_training_samples != len(train_ds):
            log.info(
                f"warning: num_training_samples={hp.num_training_samples} but the train "
                f"channel holds {len(train_ds)} images; using the data"
            )
        names = [classes[i] for i in range(hp.num_classes)]
        log.info(
            f"training SSD {hp.base_network} {hp.image_shape}x{hp.image_shape} on "
            f"{len(train_ds)} train / {len(val_ds)} validation images, {hp.num_classes} classes"
        )

        ctx = _contexts()
        mxnet_home = os.environ.get("MXNET_HOME") or str(_default_mxnet_home())
        _fetch_pretrained(hp, mxnet_home)
        if hp.use_pretrained_model:
            from .model import find_pretrained

            log.info(f"ImageNet base weights: {find_pretrained(hp.base_network, mxnet_home)}")
        net = build_ssd(
            hp.base_network,
            names,
            hp.image_shape,
            pretrained_base=bool(hp.use_pretrained_model),
            mxnet_home=mxnet_home,
            nms_thresh=hp.nms_threshold,
        )
        seeded = self._initialize(net, hp, classes, ctx)

        trainable = net.collect_params()
        if hp.freeze_layer_pattern:
            pattern = re.compile(hp.freeze_layer_pattern)
            frozen = [n for n in trainable.keys() if pattern.search(n)]
            for n in frozen:
                trainable[n].grad_req = "null"
            log.info(f"froze {len(frozen)} parameters matching {hp.freeze_layer_pattern!r}")
        params = {n: p for n, p in trainable.items() if p.grad_req != "null"}
        opt_params, update_on_kvstore = _optimizer_params(hp), None
        if self.cluster:
            kv = self.cluster.create_kvstore(hp.seed)
            opt_params["rescale_grad"] = self.cluster.rescale_grad
            update_on_kvstore = self.cluster.update_on_kvstore
        else:
            kv = mx.kv.create(kv_type)
        trainer = mx.gluon.Trainer(
            params, hp.optimizer, opt_params, kvstore=kv, update_on_kvstore=update_on_kvstore
        )

        if self.cluster:  # only the chief writes; the others resume from the chief's
            ckpt = self.cluster.checkpointer(self.paths.checkpoints)
        else:
            ckpt = Checkpointer(self.paths.checkpoints)
        state = ckpt.load(net, trainer, ctx) or LoopState(learning_rate=hp.learning_rate)
        start_epoch = state.epoch + 1
        if start_epoch:
            log.info(
                f"resuming from checkpoint after epoch {state.epoch} (best mAP {state.best_map:.4f})"
            )

        workers = hp.num_workers if hp.num_workers >= 0 else (os.cpu_count() or 1)
        shard = self.cluster.sampler(len(train_ds), hp.seed, start_epoch) if self.cluster else None
        tl = train_loader(
            train_ds,
            net,
            hp.image_shape,
            hp.mini_batch_size,
            workers,
            hp.overlap_threshold,
            shard,
            # new draws for a resumed job, and for every host of a distributed one
            hp.seed + start_epoch + 7919 * (self.cluster.plan.host_index if self.cluster else 0),
        )
        stop_check = self.cluster.stop_check(self.stopper) if self.cluster else self.stopper
        vl = val_loader(val_ds, hp.image_shape, hp.mini_batch_size, workers)
        log_interval = max(1, min(20, len(train_ds) // hp.mini_batch_size // 2))

        if seeded and start_epoch == 0:
            state.initial_map, _ = evaluate(net, vl, ctx, names)
            log.info(f"validation mAP of the seed model before training: {state.initial_map:.4f}")
            # The seed is the best model so far: training must beat it to replace it.
            state.best_map, state.best_epoch = state.initial_map, -1
            ckpt.save_best(net)
        status = "completed"
        try:
            for epoch in range(start_epoch, hp.epochs):
                lr = hp.learning_rate * hp.lr_scheduler_factor ** sum(
                    1 for s in hp.lr_scheduler_step if epoch >= s
                )
                trainer.set_learning_rate(lr)
                stats = train_one_epoch(net, trainer, tl, ctx, epoch, log, stop_check, log_interval)
                val_map, per_class = evaluate(net, vl, ctx, names)
                if self.cluster:  # every host follows the chief's mAP (early stopping)
                    val_map = self.cluster.chief_value(val_map)
                log.validation_map(epoch, val_map)
                log.throughput(stats.throughput)
                log.info(
                    f"epoch {epoch}: {stats.samples} samples in {stats.seconds:.1f}s, "
                    f"waited {stats.data_wait_seconds:.1f}s for data, lr={lr:g}"
                )
                improved = val_map > state.best_map * (1 + hp.early_stopping_tolerance) or (
                    state.best_map < 0
                )
                if val_map > state.best_map:
                    state.best_map, state.best_epoch = val_map, epoch
                    ckpt.save_best(net)
                state.epochs_without_improvement = (
                    0 if improved else state.epochs_without_improvement + 1
                )
                record = {
                    "epoch": epoch,
                    "train_cross_entropy": stats.cross_entropy,
                    "train_smooth_l1": stats.smooth_l1,
                    "validation_mAP": val_map,
                    "learning_rate": lr,
                    "throughput": stats.throughput,
                    "data_wait_fraction": stats.data_wait_seconds / max(stats.seconds, 1e-9),
                }
                state.history.append(record)
                log.epoch_end(record)
                state.epoch, state.learning_rate = epoch, lr
                ckpt.save(net, trainer, state)
                log.progress(epoch + 1, hp.epochs)
                if (
                    hp.early_stopping
                    and epoch + 1 >= hp.early_stopping_min_epochs
                    and state.epochs_without_improvement >= hp.early_stopping_patience
                ):
                    log.info(
                        f"early stopping after epoch {epoch}: no improvement for "
                        f"{state.epochs_without_improvement} epochs"
                    )
                    status = "early_stopped"
                    break
                reason = stop_check()
                if reason:
                    raise StopRequested(reason)
        except StopRequested as stop:
            if self.stopper.signal_reason:
                ckpt.save(net, trainer, state)
                self._finish(net, hp, classes, state, ckpt, ctx, vl, names, "interrupted", log)
                (self.paths.output / "failure").write_text(
                    f"Training was stopped ({stop.reason}) after epoch {state.epoch}; a "
                    f"checkpoint and the best model so far were saved. Run the job again "
                    f"to resume from {self.paths.checkpoints}.\n"
                )
                return EXIT_SIGTERM
            status = "max_runtime_reached"
            log.info(f"stopping: {stop.reason}")
        except NonFiniteLoss as exc:
            raise TrainingError(str(exc)) from None
        self._finish(net, hp, classes, state, ckpt, ctx, vl, names, status, log)
        log.info(
            f"training {status}: best validation mAP {state.best_map:.4f} (epoch {state.best_epoch})"
        )
        return 0

    def _initialize(self, net, hp: Hyperparameters, classes: dict[int, str], ctx) -> bool:
        """Initialise weights; seed them from the ``model`` channel when present."""
        import mxnet as mx

        from ..artifact import GLUON_PARAMS, model_files, read_artifact_config

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deferred-init notices
            # Xavier for convolution kernels; layers keep their own initialisers otherwise.
            net.collect_params(".*conv.*weight").initialize(
                mx.init.Xavier(rnd_type="gaussian", factor_type="out", magnitude=2), ctx=ctx
            )
            net.initialize(ctx=ctx)
        seed_dir = self.paths.channel("model")
        if not seed_dir.exists() or not any(seed_dir.iterdir()):
            return False
        scratch = Path(tempfile.mkdtemp(prefix="odp-seed-"))
        model_dir = model_files(seed_dir, scratch)
        seed_hp, seed_classes = read_artifact_config(model_dir)
        if seed_hp.get("base_network") != hp.base_network:
            raise TrainingError(
                f"model channel holds a {seed_hp.get('base_network')} model but "
                f"base_network={hp.base_network}; incremental training needs the same base network"
            )
        if int(seed_hp.get("num_classes", -1)) != hp.num_classes:
            raise TrainingError(
                f"model channel holds a model with num_classes={seed_hp.get('num_classes')} but "
                f"num_classes={hp.num_classes}; they must match for incremental training"
            )
        if seed_classes != classes and not self.allow_class_change:
            raise TrainingError(
                f"class map of the seed model {seed_classes} differs from the data's {classes}; "
                "pass --allow-class-change to reuse weights for shared class names"
            )
        if seed_classes == classes:
            net.load_parameters(str(model_dir / GLUON_PARAMS), ctx=ctx)
        else:
            # Load into the seed's class layout, then re-map the class predictors by name
            # (GluonCV reset_class): shared names keep their weights, new ones start fresh.
            seed_names = [seed_classes[i] for i in sorted(seed_classes)]
            net.reset_class(seed_names)
            net.load_parameters(str(model_dir / GLUON_PARAMS), ctx=ctx)
            names = [classes[i] for i in sorted(classes)]
            shared = {n: n for n in names if n in seed_names}
            net.reset_class(names, reuse_weights=shared)
            print(f"class map changed: reused weights for {sorted(shared)}", flush=True)
        print(f"seeded weights from {seed_dir}", flush=True)
        return True

    def _finish(self, net, hp, classes, state, ckpt, ctx, vl, names, status, log) -> None:
        from .artifacts import export_model
        from .engine import evaluate

        if self.cluster is not None:
            if not self.cluster.is_chief:
                return  # only the chief host writes the model and metrics.json
            self.cluster.detach(net)
        if ckpt.best.exists():
            net.load_parameters(str(ckpt.best), ctx=ctx)
        else:  # stopped before any validation: measure what we have
            state.best_map, _ = evaluate(net, vl, ctx, names)
            state.best_epoch = state.epoch
        export_model(net, self.paths.model, hp, classes)
        summary = {
            "status": status,
            "validation:mAP": state.best_map,
            "best_epoch": state.best_epoch,
            "initial_validation:mAP": state.initial_map,
            "epochs_completed": state.epoch + 1,
            "seconds": time.monotonic() - self.started,
            "epochs": state.history,
        }
        (self.paths.output / "metrics.json").write_text(json.dumps(summary, indent=1))


def _optimizer_params(hp: Hyperparameters) -> dict:
    params = {"learning_rate": hp.learning_rate, "wd": hp.weight_decay}
    if hp.optimizer == "sgd":
        params["momentum"] = hp.momentum
    elif hp.optimizer == "rmsprop":
        params["gamma1"] = hp.momentum
    return params


def _contexts():
    import mxnet as mx

    n = mx.context.num_gpus()
    return [mx.gpu(i) for i in range(n)] if n else [mx.cpu()]


def _default_mxnet_home() -> Path:
    from ..settings import load_settings

    return load_settings().mxnet_home


def _fetch_pretrained(hp: Hyperparameters, mxnet_home: str) -> None:
    """Copy pretrained weights from ODP_PRETRAINED_URI (s3:// or a folder) into the cache."""
    uri = os.environ.get("ODP_PRETRAINED_URI")
    if not hp.use_pretrained_model or not uri:
        return
    from .. import storage
    from .model import BASES, pretrained_root

    name = BASES[hp.base_network].gluon_name
    for file_uri in storage.list_files(uri):
        base = file_uri.rsplit("/", 1)[-1]
        if base.startswith(f"{name}-") and base.endswith(".params"):
            dest = pretrained_root(mxnet_home) / base
            if not dest.exists():
                storage.download(file_uri, dest)


def _guess_content_type(path: Path) -> str:
    if any(p.suffix == ".rec" for p in path.iterdir()):
        return "application/x-recordio"
    return "application/x-image"


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}
