"""odp: a self-hosted replacement for the SageMaker built-in Object Detection algorithm.

This package is the domain library. It imports no Airflow; DAGs and plugins wrap it.
"""

__version__ = "0.1.0"
