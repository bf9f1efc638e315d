"""The embedded, one-machine stack around the pipeline (used by the Makefile, not by tasks).

``python -m odp_airflow.local <command>``::

    render-config   render airflow.cfg.template into $AIRFLOW_HOME/airflow.cfg  (config.py)
    urls            print the local UI URLs and the Airflow login                  (summary.py)
    ui              run Airflow (standalone) and an MLflow server, via honcho      (ui.py)
    demo-summary    print mAP, registered version and aliases of the demo model   (summary.py)

Nothing here imports Airflow: Airflow's processes are started as subprocesses, and MLflow is
imported only by ``demo-summary``. Ports and login come from the environment (``env.py``).
"""
