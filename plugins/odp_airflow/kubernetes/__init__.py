"""Training on Kubernetes: cluster settings, the pod operator, the headless Service, dry run."""
