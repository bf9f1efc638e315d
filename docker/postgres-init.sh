#!/bin/bash
# Runs once, when the postgres volume is first created: a separate database and role for
# MLflow's tracking/registry store beside Airflow's metadata database.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v pw="${MLFLOW_DB_PASSWORD:-mlflow}" <<'SQL'
CREATE ROLE mlflow WITH LOGIN PASSWORD :'pw';
CREATE DATABASE mlflow OWNER mlflow;
SQL
