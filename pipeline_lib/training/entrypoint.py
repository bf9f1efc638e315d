"""``odp train``: the SageMaker training-container contract around the SSD engine.

Reads ``ML_ROOT/input/config/*.json`` and ``ML_ROOT/input/data/<channel>``, writes the model
to ``ML_ROOT/model``, resumable checkpoints to ``ML_ROOT/checkpoints``, the final metrics to
``ML_ROOT/output/metrics.json`` and, on failure, one paragraph to ``ML_ROOT/output/failure``.

Only wiring, shaped like torchvision's ``references/detection/train.py``: contract -> config
-> data -> model -> ``engine.fit`` -> artifact (see ``_Training.run``).
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import sys
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..artifact import HYPERPARAMS as HYPERPARAMS_FILE
from ..artifact import SAGEMAKER, ArtifactError, error_summary
from ..cpus import STREAMS_VARIABLE, CpuPlan, apply_cpu_plan, available_cpus, plan_cpu_training
from ..hyperparameters import (
    SAGEMAKER_GRAPH_BASES,
    HyperparameterError,
    Hyperparameters,
    parse_value,
)
from ..hyperparameters import replace as replace_hp
from ..workers import follow_parent
from .contract import JobConfig, MLPaths, read_config
from .errors import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_SIGTERM,
    TrainingError,
    failure_reason,
    is_client_error,
)
from .stopping import Stopper, StopRequested

if TYPE_CHECKING:
    from .distributed.cluster import Cluster
    from .engine import FitConfig, FitInputs, FitResult
    from .metrics_log import MetricLogger


def run_training(ml_root: str | None = None, allow_class_change: bool = False) -> int:
    """Run training under ``ml_root``; returns the process exit code."""
    paths = MLPaths(Path(ml_root or os.environ.get("ML_ROOT", "/opt/ml")))
    paths.output.mkdir(parents=True, exist_ok=True)
    (paths.output / "failure").unlink(missing_ok=True)
    stopper = Stopper()
    stopper.install()
    training, ok = _Training(paths, stopper, allow_class_change), False
    try:
        follow_parent(signal.SIGHUP)  # started by odp's own supervisor: stop when it dies
        code = training.run()
        ok = True
        return code
    except StopRequested as stop:  # a signal before training started: nothing to save
        (paths.output / "failure").write_text(
            f"Training was stopped ({stop.reason}) before it started; nothing was saved.\n"
        )
        return EXIT_SIGTERM
    except Exception as exc:  # every failure leaves a reason SageMaker-style
        reason = failure_reason(exc)
        (paths.output / "failure").write_text(reason + "\n")
        # A ClientError is the caller's one line (``odp train`` prints output/failure);
        # an AlgorithmError is ours: the reason and the traceback go to the log.
        if not is_client_error(exc):
            print(f"training failed: {reason}", file=sys.stderr, flush=True)
            traceback.print_exc()
        return EXIT_FAILURE
    finally:
        if training.log is not None:  # metrics still queued for MLflow
            training.log.close()
        if training.cluster is not None:  # several hosts: leave the parameter server
            training.cluster.close(ok=ok)
        stopper.uninstall()


@dataclass(frozen=True)
class _Setup:
    """The job's configuration as the later steps use it."""

    job: JobConfig
    log: MetricLogger
    ctx: list  # MXNet contexts: every GPU, else the CPU streams
    kv_type: str

    @property
    def hp(self) -> Hyperparameters:
        return self.job.hyperparameters


@dataclass(frozen=True)
class _Data:
    """The two channels' datasets and the class map of the job."""

    train: Any
    validation: Any
    classes: dict[int, str]  # every id 0..num_classes-1
    names: list[str]  # class names by id


class _Training:
    """One training job: set-up step by step, ``engine.fit``, then the model artifact."""

    def __init__(self, paths: MLPaths, stopper: Stopper, allow_class_change: bool):
        self.paths, self.stopper, self.allow_class_change = paths, stopper, allow_class_change
        self.started = time.monotonic()
        self.cluster: Cluster | None = None  # when resourceconfig.json lists several hosts
        self.log: MetricLogger | None = None
        self.model_format = "gluoncv"  # the graph trained: hyperparameter, or the seed's

    def run(self) -> int:
        """contract -> config -> data -> model -> fit -> artifact; returns the exit code."""
        job = read_config(self.paths)
        plan = cpu_plan(job.hyperparameters.mini_batch_size)  # before MXNet is imported
        from .engine import FitConfig, fit

        setup = self._configure(job, plan)
        data = self._data(setup)
        net, seeded = self._model(setup, data)
        inputs, state = self._fit_inputs(setup, data, net)
        log_interval = max(1, min(20, len(data.train) // setup.hp.mini_batch_size // 2))
        config = self._budgeted(
            FitConfig.from_hyperparameters(setup.hp, log_interval), setup, state
        )
        self.stopper.start_saving()
        result = fit(inputs, config, state, seeded)
        self._write_model(setup, data.classes, inputs, result)
        return self._report(result, setup.log)

    # ---------------------------------------------------------------- config

    def _configure(self, job: JobConfig, plan: CpuPlan) -> _Setup:
        """Logger, devices, kvstore (joining the other hosts), run-time limit, random seeds."""
        import mxnet as mx
        import numpy as np

        from .distributed.roles import kv_store_type
        from .metrics_log import MetricLogger

        hp, hosts = job.hyperparameters, job.hosts
        log = MetricLogger(host=job.current_host, mlflow_run_id=os.environ.get("ODP_MLFLOW_RUN_ID"))
        self.log = log
        ctx = _contexts(plan)
        if ctx[0].device_type == "cpu":
            log.info(plan.describe(hp.mini_batch_size))
        kv_type = kv_store_type(hp.kv_store, len(hosts), len(ctx))
        if len(hosts) > 1:
            self._join_cluster(job, kv_type, log)
        self.stopper.limit_runtime(hp.max_runtime_seconds, self.started)
        random.seed(hp.seed)
        np.random.seed(hp.seed)
        mx.random.seed(hp.seed)
        return _Setup(job, log, ctx, kv_type)

    def _join_cluster(self, job: JobConfig, kv_type: str, log: MetricLogger) -> None:
        from .distributed.cluster import Cluster

        hp, hosts = job.hyperparameters, job.hosts
        self.cluster = Cluster.start(
            job.resource, kv_type, self.paths.output / "failure", self.paths.checkpoints, log.info
        )
        log.info(
            f"mini_batch_size={hp.mini_batch_size} per host: effective batch "
            f"{hp.mini_batch_size * len(hosts)} over {len(hosts)} hosts"
        )
        if not self.cluster.sync and hp.lr_scheduler_step:
            log.info("warning: lr_scheduler_step is not applied with kv_store=dist_async")

    # ---------------------------------------------------------------- data

    def _data(self, setup: _Setup) -> _Data:
        """Open the train and validation channels; the class map both use."""
        from .data import dataset_classes

        hp, log = setup.hp, setup.log
        train_ds, val_ds = self._datasets(setup.job.input_data)
        self._gate(train_ds, val_ds, log)
        _check_batch(
            hp, len(train_ds), len(val_ds), len(setup.job.hosts), len(setup.ctx), self.paths
        )
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
        return _Data(train_ds, val_ds, classes, names)

    def _gate(self, train_ds, val_ds, log: MetricLogger) -> None:
        """Refuse, before any training, what ``odp validate`` refuses in an image+JSON or
        manifest channel: broken image rules (header only) and a train/validation overlap
        (:func:`~pipeline_lib.training.data.gate_channels`). RecordIO records are checked
        as they are decoded."""
        from ..images import max_image_pixels
        from .data import gate_channels

        started = time.monotonic()
        n = gate_channels({"train": train_ds, "validation": val_ds}, max_image_pixels())
        if n:
            log.info(
                f"input gate: {n} images checked (image rules, train/validation overlap) in "
                f"{time.monotonic() - started:.1f} s"
            )

    def _datasets(self, data_cfg: dict):
        from .data import ChannelSpec, channel_format, check_channel_folder, open_channel

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
            ann_path = ann if ann.exists() else None
            if channel_format(spec, ann_path) != "recordio":  # folders leaving the dataset
                for channel, folder in ((name, path), (ann.name, ann_path)):
                    if folder is not None:
                        check_channel_folder(folder, channel)
            out[name] = open_channel(spec, ann_path)
        return out["train"], out["validation"]

    # ---------------------------------------------------------------- model

    def _model(self, setup: _Setup, data: _Data) -> tuple[Any, bool]:
        """The SSD network of the job's format (GluonCV's or SageMaker's graph; a seed
        model's own format wins), initialised (ImageNet base, or the ``model`` channel's
        weights); True when seeded from the ``model`` channel."""
        from .model import build_sagemaker_ssd, build_ssd, fetch_pretrained, mxnet_home

        hp, log = setup.hp, setup.log
        self.model_format = self._seed_format(hp.model_format, log) or hp.model_format
        home = mxnet_home()
        if hp.use_pretrained_model:
            fetch_pretrained(hp.base_network, home, self.model_format)
        if self.model_format == SAGEMAKER:
            if hp.base_network not in SAGEMAKER_GRAPH_BASES:
                raise TrainingError(
                    f"the model channel holds SageMaker's graph, which has no base_network="
                    f"{hp.base_network}: use {' or '.join(SAGEMAKER_GRAPH_BASES)}"
                )
            log.info(f"model_format=sagemaker: SageMaker's {hp.base_network} SSD (example/ssd)")
            net = build_sagemaker_ssd(
                hp.base_network,
                data.names,
                hp.image_shape,
                setup.ctx,
                pretrained_base=bool(hp.use_pretrained_model),
                mxnet_home=home,
                nms_thresh=hp.nms_threshold,
                log=log.info,
            )
            return net, self._seed(net, hp, data.classes, setup.ctx)
        if hp.use_pretrained_model:
            from .model import find_pretrained

            log.info(f"ImageNet base weights: {find_pretrained(hp.base_network, home)}")
        net = build_ssd(
            hp.base_network,
            data.names,
            hp.image_shape,
            pretrained_base=bool(hp.use_pretrained_model),
            mxnet_home=home,
            nms_thresh=hp.nms_threshold,
        )
        self._initialize(net, setup.ctx)
        return net, self._seed(net, hp, data.classes, setup.ctx)

    def _seed_format(self, wanted: str, log: MetricLogger) -> str | None:
        """The format of the ``model`` channel's model, when there is one; it wins over
        the ``model_format`` hyperparameter (said in the log when they differ)."""
        from ..artifact import model_folder, model_format

        channel = self.paths.channel("model")
        if not channel.exists() or not any(channel.iterdir()):
            return None
        try:
            with model_folder(channel) as model_dir:
                found = model_format(model_dir, channel)
        except FileNotFoundError as exc:
            raise ArtifactError(f"model channel {channel}: {exc}") from None
        if found != wanted:
            log.info(
                f"the model channel holds a {found}-format model: training model_format={found}"
            )
        return found

    def _initialize(self, net, ctx) -> None:
        """Initialise a GluonCV network's weights."""
        import mxnet as mx

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deferred-init notices
            # Xavier for convolution kernels; layers keep their own initialisers otherwise.
            net.collect_params(".*conv.*weight").initialize(
                mx.init.Xavier(rnd_type="gaussian", factor_type="out", magnitude=2), ctx=ctx
            )
            net.initialize(ctx=ctx)

    def _seed(self, net, hp: Hyperparameters, classes: dict[int, str], ctx) -> bool:
        """Seed the weights from the ``model`` channel when it holds a model."""
        seed_dir = self.paths.channel("model")
        if not seed_dir.exists() or not any(seed_dir.iterdir()):
            return False
        self._load_seed(net, hp, classes, ctx)
        print(f"seeded weights from {seed_dir}", flush=True)
        return True

    def _load_seed(self, net, hp: Hyperparameters, classes: dict[int, str], ctx) -> None:
        """Load the ``model`` channel's weights (incremental training)."""
        from ..artifact import GLUON_PARAMS, PARAMS, model_folder, read_model_config

        channel = self.paths.channel("model")
        try:
            with model_folder(channel) as model_dir:
                seed = read_model_config(model_dir, channel)
                named = seed.class_names != "generated"
                _check_seed(
                    seed.hyperparameters, seed.classes, hp, classes, self.allow_class_change, named
                )
                if seed.format == SAGEMAKER:
                    self._load_sagemaker_weights(
                        net, model_dir / PARAMS, seed.classes, classes, named
                    )
                    return
                if not (model_dir / GLUON_PARAMS).is_file():
                    raise ArtifactError(
                        f"model channel {channel} has no {GLUON_PARAMS} (the Gluon weights that "
                        "odp train writes into model.tar.gz); it cannot seed training"
                    )
                self._load_weights(net, model_dir / GLUON_PARAMS, seed.classes, classes, ctx)
        except FileNotFoundError as exc:  # an incomplete archive is a bad archive
            raise ArtifactError(f"model channel {channel}: {exc}") from None

    def _load_sagemaker_weights(
        self, net, params: Path, seed_classes: dict[int, str], classes: dict[int, str], named: bool
    ) -> None:
        """A SageMaker graph's ``arg:``/``aux:`` weights into the network, every one the
        graph has, of its shape; with another class map, each class predictor's rows follow
        the class names (shared names keep their weights, new ones start fresh)."""
        from ..inference import load_weights
        from ..sagemaker_ssd.network import remap_class_rows

        channel = self.paths.channel("model")
        weights = load_weights(params, f"model channel {channel}")
        body = net.body.collect_params()
        missing = [n for n in body.keys() if n not in weights]
        if missing:
            raise ArtifactError(
                f"model channel {channel}: {params.name} lacks {len(missing)} of the network's "
                f"{len(body.keys())} weights (first: {missing[:3]})"
            )
        for name, param in body.items():
            if tuple(weights[name].shape) != tuple(param.shape):
                raise ArtifactError(
                    f"model channel {channel}: {params.name}: {name} has shape "
                    f"{tuple(weights[name].shape)}, the network's is {tuple(param.shape)}"
                )
        if named and seed_classes != classes:
            weights, shared = remap_class_rows(body, weights, seed_classes, classes)
            print(f"class map changed: reused weights for {sorted(shared)}", flush=True)
        for name, param in body.items():
            param.set_data(weights[name].astype(param.dtype))

    def _load_weights(self, net, params: Path, seed_classes, classes, ctx) -> None:
        import mxnet as mx

        try:
            if seed_classes == classes:
                net.load_parameters(str(params), ctx=ctx)
                return
            # Load into the seed's class layout, then re-map the class predictors by name
            # (GluonCV reset_class): shared names keep their weights, new ones start fresh.
            seed_names = [seed_classes[i] for i in sorted(seed_classes)]
            net.reset_class(seed_names)
            net.load_parameters(str(params), ctx=ctx)
        except (mx.base.MXNetError, AssertionError, ValueError, KeyError) as exc:
            first = error_summary(exc)
            raise ArtifactError(
                f"model channel {self.paths.channel('model')}: {params.name} does not fit the "
                f"network ({first})"
            ) from None
        names = [classes[i] for i in sorted(classes)]
        shared = {n: n for n in names if n in seed_names}
        net.reset_class(names, reuse_weights=shared)
        print(f"class map changed: reused weights for {sorted(shared)}", flush=True)

    # ---------------------------------------------------------------- fit

    def _fit_inputs(self, setup: _Setup, data: _Data, net) -> tuple[FitInputs, Any]:
        """Trainer, checkpointer (resuming from it), loaders and stop checks for ``fit``;
        and the loop state to start from."""
        from ..tuning.report import TrialReporter
        from .engine import FitInputs
        from .optimizer import make_trainer

        trainer = make_trainer(net, setup.hp, setup.kv_type, self.cluster, setup.log.info)
        ckpt, state = self._resume(setup, net, trainer)
        train_data, val_data = self._loaders(setup.hp, data, net, state.epoch + 1, setup.log.info)
        cluster = self.cluster
        inputs = FitInputs(
            net=net,
            trainer=trainer,
            train_data=train_data,
            val_data=val_data,
            ctx=setup.ctx,
            class_names=data.names,
            checkpointer=ckpt,
            log=setup.log,
            stopper=self.stopper,
            stop_check=cluster.stop_check(self.stopper) if cluster else self.stopper,
        )
        if cluster:  # every host follows the chief's mAP (early stopping)
            inputs.agree = cluster.chief_value
        inputs.after_epoch = TrialReporter.from_env(setup.log.info)  # a tuning trial's pruner
        return inputs, state

    def _budgeted(self, config: FitConfig, setup: _Setup, state) -> FitConfig:
        """``config`` with the job's time budget (``time_budget_seconds``, else
        ``max_runtime_seconds``), continued from a resumed job's loop state."""
        import dataclasses

        from .budget import TimeBudget

        hp = setup.hp
        seconds = hp.time_budget_seconds or hp.max_runtime_seconds
        if not seconds:
            return config
        budget = TimeBudget(seconds, hp.epochs, self.started, state.spent_seconds)
        setup.log.info(
            f"time budget: the learning-rate schedule spans {seconds} s ({budget.reserve:.0f} s "
            f"kept for the export), at most {hp.epochs} epochs"
            + (f"; {state.spent_seconds:.0f} s spent before" if state.spent_seconds else "")
        )
        return dataclasses.replace(config, budget=budget)

    def _resume(self, setup: _Setup, net, trainer) -> tuple[Any, Any]:
        """The checkpointer and the loop state of its last checkpoint (a fresh one if none)."""
        from .checkpoints import Checkpointer, LoopState

        if self.cluster:  # only the chief writes; the others resume from the chief's
            ckpt = self.cluster.checkpointer(self.paths.checkpoints)
        else:
            ckpt = Checkpointer(self.paths.checkpoints)
        state = ckpt.load(net, trainer, setup.ctx) or LoopState(
            learning_rate=setup.hp.learning_rate
        )
        if state.epoch + 1:
            setup.log.info(
                f"resuming from checkpoint after epoch {state.epoch} (best mAP {state.best_map:.4f})"
            )
        return ckpt, state

    def _loaders(
        self, hp: Hyperparameters, data: _Data, net, start_epoch: int, log
    ) -> tuple[Any, Any]:
        from .cached_data import CacheBudget
        from .loaders import train_loader, val_loader

        workers = hp.num_workers if hp.num_workers >= 0 else available_cpus()
        cluster = self.cluster
        shard = cluster.sampler(len(data.train), hp.seed, start_epoch) if cluster else None
        train_data = train_loader(
            data.train,
            net,
            hp.image_shape,
            hp.mini_batch_size,
            workers,
            iou=hp.overlap_threshold,
            sampler=shard,
            # new draws for a resumed job, and for every host of a distributed one
            seed=hp.seed + start_epoch + 7919 * (cluster.plan.host_index if cluster else 0),
            augmentation=hp.augmentation,
            budget=(budget := CacheBudget(log=log)),
        )
        val_data = val_loader(data.validation, hp.image_shape, hp.mini_batch_size, workers, budget)
        return train_data, val_data

    # ---------------------------------------------------------------- artifact

    def _write_model(
        self, setup: _Setup, classes: dict[int, str], inputs: FitInputs, result: FitResult
    ) -> None:
        """The best model to ``model/`` and ``output/metrics.json`` (the chief host only)."""
        from .artifacts import export_model, export_sagemaker_model
        from .engine import evaluate

        net, state = inputs.net, result.state
        if self.cluster is not None:
            if not self.cluster.is_chief:
                return  # only the chief host writes the model and metrics.json
            self.cluster.detach(net)
        if inputs.checkpointer.best.exists():
            net.load_parameters(str(inputs.checkpointer.best), ctx=inputs.ctx)
        else:  # stopped before any validation: measure what we have
            state.best_map, _ = evaluate(net, inputs.val_data, inputs.ctx, inputs.class_names)
            state.best_epoch = state.epoch
        if self.model_format == SAGEMAKER:
            hp = replace_hp(setup.hp, model_format=SAGEMAKER)
            export_sagemaker_model(net, self.paths.model, hp, classes)
        else:
            export_model(net, self.paths.model, setup.hp, classes)
        summary = {
            "status": result.status,
            "validation:mAP": state.best_map,
            "best_epoch": state.best_epoch,
            "initial_validation:mAP": state.initial_map,
            "epochs_completed": state.epoch + 1,
            "seconds": time.monotonic() - self.started,
            "epochs": state.history,
        }
        (self.paths.output / "metrics.json").write_text(
            json.dumps(finite_json(summary), indent=1, allow_nan=False)
        )

    def _report(self, result: FitResult, log: MetricLogger) -> int:
        """The exit code; after a signal, ``output/failure`` says how to resume."""
        state = result.state
        if result.status == "interrupted":
            (self.paths.output / "failure").write_text(
                f"Training was stopped ({result.stop_reason}) after epoch {state.epoch}; a "
                f"checkpoint and the best model so far were saved. Run the job again "
                f"to resume from {self.paths.checkpoints}.\n"
            )
            return EXIT_SIGTERM
        log.info(
            f"training {result.status}: best validation mAP {state.best_map:.4f} "
            f"(epoch {state.best_epoch})"
        )
        return EXIT_OK


def finite_json(obj: Any) -> Any:
    """``obj`` with every NaN/infinite float replaced by ``None`` (JSON has no NaN)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_json(v) for v in obj]
    return obj


def _check_batch(
    hp: Hyperparameters, n_train: int, n_val: int, hosts: int, devices: int, paths: MLPaths
) -> None:
    """Refuse, before training, a batch that the data cannot fill (SageMaker's ClientError):
    with ``last_batch="rollover"`` an epoch would run zero batches and learn nothing."""
    per_host = math.ceil(n_train / max(1, hosts))
    if hp.mini_batch_size > per_host:
        spread = f" ({per_host} per host over {hosts} hosts)" if hosts > 1 else ""
        raise TrainingError(
            f"mini_batch_size={hp.mini_batch_size} is larger than the {n_train} images of the "
            f"train channel {paths.channel('train')}{spread}; set mini_batch_size <= {per_host}"
        )
    if n_val < 1:
        raise TrainingError(f"the validation channel {paths.channel('validation')} is empty")
    if hp.mini_batch_size % devices:
        raise TrainingError(
            f"mini_batch_size={hp.mini_batch_size} does not split evenly over {devices} devices; "
            f"use a multiple of {devices}"
        )


def _check_seed(
    seed_hp: dict[str, str],
    seed_classes: dict[int, str],
    hp: Hyperparameters,
    classes: dict[int, str],
    allow_class_change: bool,
    named: bool = True,
) -> None:
    """Refuse a seed model that does not fit the job (base network, classes); ``named``:
    the seed names its classes (a SageMaker job's archive does not: only their number
    counts)."""
    if seed_hp.get("base_network") != hp.base_network:
        raise TrainingError(
            f"model channel holds a {seed_hp.get('base_network')} model but "
            f"base_network={hp.base_network}; incremental training needs the same base network"
        )
    try:
        seed_num_classes = parse_value("num_classes", seed_hp.get("num_classes", "0"))
    except HyperparameterError as exc:
        raise ArtifactError(f"model channel: {HYPERPARAMS_FILE}: {exc}") from None
    if seed_num_classes != hp.num_classes:
        raise TrainingError(
            f"model channel holds a model with num_classes={seed_hp.get('num_classes')} but "
            f"num_classes={hp.num_classes}; they must match for incremental training"
        )
    if named and seed_classes != classes and not allow_class_change:
        raise TrainingError(
            f"class map of the seed model {seed_classes} differs from the data's {classes}; "
            "pass --allow-class-change to reuse weights for shared class names"
        )


def cpu_plan(batch: int) -> CpuPlan:
    """How training will use the CPUs (:func:`~pipeline_lib.cpus.plan_cpu_training`), its
    thread counts given to MXNet when it is not imported yet. Once it is (training called
    in-process) its threads are fixed: one stream unless ``ODP_CPU_STREAMS`` asks for more.
    On a GPU machine the CPUs only feed the GPUs: one stream with every CPU."""
    try:
        plan = plan_cpu_training(batch)
    except ValueError as exc:
        raise TrainingError(str(exc)) from None
    imported = "mxnet" in sys.modules
    if _gpu_devices() or (imported and not os.environ.get(STREAMS_VARIABLE)):
        threads = plan.cpus if not imported else int(os.environ.get("OMP_NUM_THREADS") or 1)
        plan = CpuPlan(1, threads, plan.cpus)
    if not imported:
        apply_cpu_plan(plan)
    return plan


def _gpu_devices() -> bool:
    """Whether this machine has NVIDIA GPUs (device nodes), known without importing MXNet."""
    return any(Path("/dev").glob("nvidia[0-9]*"))


def _contexts(plan: CpuPlan):
    """Every GPU, else the plan's CPU streams."""
    import mxnet as mx

    n = mx.context.num_gpus()
    return [mx.gpu(i) for i in range(n)] if n else [mx.cpu(i) for i in range(plan.streams)]


def _guess_content_type(path: Path) -> str:
    if any(p.suffix == ".rec" for p in path.iterdir()):
        return "application/x-recordio"
    return "application/x-image"
