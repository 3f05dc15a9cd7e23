"""Run one DAG for one logical date under a real Airflow (``dag.test()``, SQLite metadata DB) and
print what came back as JSON: the run's state, each task's state and return value. Used by
tests/test_dags.py in a fresh process, with AIRFLOW_HOME and TOPICFEED_* set by the caller."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path


def main() -> None:
    dag_id, logical = sys.argv[1], datetime.fromisoformat(sys.argv[2])
    from airflow.dag_processing.dagbag import DagBag
    from airflow.utils import db

    db.initdb()
    bag = DagBag(dag_folder=str(Path(__file__).resolve().parent.parent / "dags"))
    if bag.import_errors:
        raise SystemExit(f"DAG import errors: {bag.import_errors}")
    run = bag.get_dag(dag_id).test(logical_date=logical)
    tasks = {ti.task_id: {"state": str(ti.state), "return": ti.xcom_pull(task_ids=ti.task_id)} for ti in run.get_task_instances()}
    print("RESULT " + json.dumps({"state": str(run.state), "start": run.data_interval_start.isoformat(), "end": run.data_interval_end.isoformat(), "tasks": tasks}, default=str))


if __name__ == "__main__":
    main()
