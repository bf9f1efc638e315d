"""Multi-host training over MXNet's parameter server (ps-lite), started from resourceconfig.json.

Every host runs one *server* process and its training process is the *worker*; ``hosts[0]``
also runs the *scheduler*. The server/scheduler are child processes running
``python -c "import mxnet"`` with ``DMLC_ROLE`` set (importing MXNet runs the role and exits,
as MXNet's own launcher does); the worker gets its ``DMLC_*`` variables before
``mx.kv.create('dist_sync')``. Locally every host can be a process on 127.0.0.1 (set
``ODP_DIST_HOST_ADDRESSES=127.0.0.1``), which is how this is tested.

Besides the kvstore, ``hosts[0]`` keeps a small TCP link to every other host (the *watch*,
on ``DMLC_PS_ROOT_PORT + 1``). ps-lite never notices a peer that died, so without it one
failed host would leave the others blocked forever; over the watch:

* a host that ends without saying ``done`` (crash, OOM kill, a failed pod) makes the others
  write ``output/failure`` and exit non-zero at once;
* hosts that have not all joined within ``ODP_DIST_START_TIMEOUT`` seconds fail the same way;
* ``hosts[0]`` (the *chief*: the only host that writes checkpoints, the model and
  metrics.json) sends its last checkpoint to the others, so every worker resumes from the
  same epoch, weights and optimizer state.

With ``dist_sync`` a stop (SIGTERM, ``max_runtime_seconds``) is agreed between batches through
the kvstore, so every worker stops at the same step instead of waiting on the others.

Environment (all optional): ``ODP_DIST_HOST_ADDRESSES`` (``algo-1=10.0.0.5,algo-2=10.0.0.6``,
or one address for every host), ``DMLC_PS_ROOT_URI`` / ``DMLC_PS_ROOT_PORT`` (scheduler address
and port; default ``hosts[0]`` resolved by DNS, port 9091), ``ODP_DIST_WATCH_PORT``,
``ODP_DIST_START_TIMEOUT`` (default 900), ``DMLC_INTERFACE`` (else resourceconfig's
``network_interface_name``).

Modules, one job each:

* ``roles``: hosts -> ps-lite roles and their ``DMLC_*`` variables, the kvstore type;
* ``sharding``: each worker's disjoint part of an epoch;
* ``processes``: starting, watching and stopping the server/scheduler child processes;
* ``watch``: the TCP peer-watch protocol (joining, checkpoint hand-over, done/abort);
* ``cluster``: this host's part of a run, tying the above to the kvstore (stop votes, the
  chief's mAP, shutdown).
"""
