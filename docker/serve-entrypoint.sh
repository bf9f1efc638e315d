#!/bin/sh
# Entry point of the serving image: `odp serve` with any extra arguments.
# SageMaker starts inference containers as `<image> serve`: that leading `serve` argument is
# accepted and dropped. The image's runtime (ODP_SERVE_RUNTIME: mxnet, or onnx in the image
# built without MXNet) comes first, so a `--runtime` given here still wins.
set -eu
if [ "${1:-}" = "serve" ]; then
  shift
fi
exec odp serve --runtime "${ODP_SERVE_RUNTIME:-mxnet}" "$@"
