# One entry point for a fresh clone: every target sets up what it needs, and skips what is
# already done on a second run.
#
#   make demo   set up, generate a small synthetic dataset, run the whole DAG, print the result
#   make test   set up, run the whole test suite (integration tests included)
#   make ui     Airflow (standalone) + MLflow UI on localhost, in the foreground
#   make lint   ruff check + ruff format --check
#
# All local state lives under $(ODP_HOME) (default .local/, git-ignored). Every variable
# below can be overridden from the environment or the command line (make demo DEMO_EPOCHS=3).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules

REPO := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
PYTHON ?= python3.11
UV_VERSION ?= 0.13.8
VENV := $(REPO)/.venv
PY := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.odp-synced

# ---- the environment every target (and every process it starts) sees: one place ----------
export ODP_HOME ?= $(REPO)/.local
export AIRFLOW_HOME ?= $(ODP_HOME)/airflow
export MLFLOW_TRACKING_URI ?= sqlite:///$(ODP_HOME)/mlflow/mlflow.db
export ODP_MLFLOW_ARTIFACTS ?= $(ODP_HOME)/mlflow/artifacts
export MXNET_HOME ?= $(ODP_HOME)/mxnet
export PATH := $(VENV)/bin:$(PATH)
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export UV_LINK_MODE ?= copy
export PYTHONUNBUFFERED := 1

AIRFLOW_CFG := $(AIRFLOW_HOME)/airflow.cfg
AIRFLOW_DB_STAMP := $(AIRFLOW_HOME)/.odp-db-migrated

# ---- demo parameters (small enough to finish in minutes on 2 CPU cores) -------------------
DEMO_DIR := $(ODP_HOME)/demo
DEMO_DATA := $(DEMO_DIR)/dataset
DEMO_MODEL ?= odp-demo
DEMO_IMAGES ?= 300
DEMO_CLASSES ?= 3
DEMO_SEED ?= 0
DEMO_CUE ?= shape
DEMO_EPOCHS ?= 30
DEMO_BATCH ?= 8
# The README's from-scratch CPU recipe (benchmarks/learn.py measures it); keep in step with
# FROM_SCRATCH_CPU in pipeline_lib/training/recipes.py.
DEMO_CONF ?= {"dataset_uri": "$(DEMO_DATA)", "model_name": "$(DEMO_MODEL)", \
  "epochs": $(DEMO_EPOCHS), "base_network": "mobilenet-0.25", "use_pretrained_model": false, \
  "mini_batch_size": $(DEMO_BATCH), "image_shape": 300, "optimizer": "adam", \
  "learning_rate": 0.003, "hyperparameters": {"seed": "0", "weight_decay": "0.0005", \
  "augmentation": "flip", "overlap_threshold": "0.4", "lr_schedule": "cosine", \
  "lr_warmup_epochs": "2"}}

# ---- tests ----------------------------------------------------------------------------------
# `make test` runs everything, integration tests included (so does CI, with CI=true);
# `make test-unit` leaves out the slow tests marked `integration`.
PYTEST_ARGS ?=
PYTEST_TIMEOUT ?= 900
# Two test processes, a test file each at a time (pytest-xdist): the suite waits on servers,
# sleeps and subprocesses as much as it computes (measured on 2 cores: 32 -> 23 minutes).
# PYTEST_WORKERS=0 runs everything in one process.
PYTEST_WORKERS ?= 2
PYTEST := $(PY) -m pytest --timeout=$(PYTEST_TIMEOUT) --durations=30 -n $(PYTEST_WORKERS) --dist loadfile

.PHONY: help venv airflow-init demo test test-unit ui urls lint format clean-local FORCE

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

# ---- virtualenv -------------------------------------------------------------------------------
$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/bin/uv: | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# Re-synced only when the lock (or the package metadata) changed since the last sync.
# --compile-bytecode: .pyc files are written now, so imports never compile (numpy alone takes
# 0.2 s to compile, and PYTHONDONTWRITEBYTECODE=1 would make every process pay it again).
# editable_mode=compat: a plain path in a .pth, not an import hook (10 ms off every start-up).
# The lock installs one cv2 (opencv-python-headless; see requirements.overrides.txt): it is
# reinstalled on every sync because removing an old opencv-python deletes the cv2/ files the
# two wheels share. The editable install puts the repo on sys.path (pipeline_lib); the
# odp-plugins.pth line does the same for plugins/ (odp_airflow), as a wheel install would.
$(VENV_STAMP): $(REPO)/requirements.lock $(REPO)/pyproject.toml | $(VENV)/bin/uv
	$(VENV)/bin/uv pip sync --python $(PY) --compile-bytecode \
	  --reinstall-package opencv-python-headless $(REPO)/requirements.lock
	$(VENV)/bin/uv pip install --python $(PY) --no-deps -C editable_mode=compat -e $(REPO)
	echo "$(REPO)/plugins" > "$$($(PY) -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/odp-plugins.pth"
	touch $@

venv: $(VENV_STAMP)  ## create/update .venv from requirements.lock (skipped when up to date)

# ---- local Airflow ----------------------------------------------------------------------------
# Rendered every time (cheap); the file is only rewritten when its content changes.
$(AIRFLOW_CFG): FORCE | venv
	$(PY) -m odp_airflow.local render-config

# `airflow db migrate` only when the venv or the config changed, or the DB is missing.
$(AIRFLOW_DB_STAMP): $(AIRFLOW_CFG) $(VENV_STAMP) $(if $(wildcard $(AIRFLOW_HOME)/airflow.db),,FORCE)
	airflow db migrate
	touch $@

airflow-init: $(AIRFLOW_DB_STAMP)  ## render airflow.cfg into AIRFLOW_HOME and migrate its DB

# ---- demo -------------------------------------------------------------------------------------
$(DEMO_DATA)/.odp-synth-$(DEMO_CUE)-$(DEMO_IMAGES)-done: | venv
	rm -rf $(DEMO_DATA)
	odp synth $(DEMO_DATA) --images $(DEMO_IMAGES) --classes $(DEMO_CLASSES) --seed $(DEMO_SEED) \
	  --cue $(DEMO_CUE)
	touch $@

demo: airflow-init $(DEMO_DATA)/.odp-synth-$(DEMO_CUE)-$(DEMO_IMAGES)-done  ## run the whole DAG on a synthetic dataset
	started=$$(date +%s); \
	airflow dags test object_detection_training -c '$(strip $(DEMO_CONF))'; \
	$(PY) -m odp_airflow.local demo-summary --model-name $(DEMO_MODEL) --since "$$started"

# ---- tests ------------------------------------------------------------------------------------
# pytest exit code 5 ("no tests collected") counts as a failure here. Tests make their own
# temporary Airflow home, MLflow store and artifact root (tests/conftest.py): never .local/.
test: venv  ## run the whole test suite, integration tests included
	cd $(REPO) && $(PYTEST) $(PYTEST_ARGS) tests

test-unit: venv  ## the suite without the slow `integration` tests
	cd $(REPO) && $(PYTEST) -m "not integration" $(PYTEST_ARGS) tests

# ---- UIs --------------------------------------------------------------------------------------
ui: airflow-init  ## Airflow + MLflow UIs on localhost (Ctrl-C stops both)
	$(PY) -m odp_airflow.local ui

urls: venv  ## print the local URLs and the login
	@$(PY) -m odp_airflow.local urls

# ---- code quality -----------------------------------------------------------------------------
lint: venv  ## ruff check (with bandit's S security rules) + ruff format --check + import-linter contracts + hadolint
	cd $(REPO) && ruff check . && ruff format --check . && lint-imports \
	  && hadolint docker/Dockerfile.train docker/Dockerfile.airflow docker/Dockerfile.serve

format: venv  ## apply ruff fixes and formatting
	cd $(REPO) && ruff check --fix . && ruff format .

clean-local:  ## delete all local state (.local: Airflow DB, MLflow store, demo data)
	rm -rf $(ODP_HOME)

FORCE:
