"""``odp serve``: SageMaker's inference container contract over HTTP.

Modules: :mod:`.contract` (the contract's rules as pure functions: routes, content types,
``Accept`` negotiation, ``X-Amzn-SageMaker-Custom-Attributes``, error bodies),
:mod:`.app` (the WSGI application answering the routes with a loaded detector),
:mod:`.config` (workers, threads and limits from the CPUs, flags and SageMaker's
environment), :mod:`.server` (gunicorn: the master prepares the model, each worker loads it
after the fork, graceful SIGTERM, access log). The master process imports neither MXNet nor
onnxruntime: only the workers run a network.
"""
