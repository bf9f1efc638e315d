"""Airflow glue for the odp pipeline: thin task functions over ``pipeline_lib``.

Importing this package is cheap: every heavy module (MXNet, GluonCV, MLflow, GX) is
imported inside the function that needs it, at task run time.
"""
