#!/bin/sh
# Entry point of the training image: `odp train` with any extra arguments.
# SageMaker starts bring-your-own-container images as `<image> train`: that leading
# `train` argument is accepted and dropped, so the same image works there and on Kubernetes.
set -eu
if [ "${1:-}" = "train" ]; then
  shift
fi
exec odp train "$@"
