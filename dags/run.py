"""Run topicfeed DAGs under a real Airflow: ``dag.test()`` with a SQLite metadata DB, one process for
many runs (Airflow starts once).

    python -m dags.run content_topics=2026-12-02T00:00:00+00:00 search_intents=T1,T2,T3

Each argument is a DAG id and its logical dates (Airflow 3: a data-interval timetable's logical date
ends the interval it runs for). For each run one line ``RESULT {json}`` goes to stdout: the run's state,
its data interval, each task's state and return value. ``airflow_env`` is the environment it needs
(``AIRFLOW_HOME`` under the data directory, examples off, this folder as the DAG folder).
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

DAG_FOLDER = Path(__file__).resolve().parent


def airflow_env(data_dir: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of an Airflow process for topicfeed's DAGs on ``data_dir``."""
    env = dict(os.environ if base is None else base)
    home = Path(data_dir).resolve() / "airflow"
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAG_FOLDER),
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "TOPICFEED_DATA_DIR": str(Path(data_dir).resolve()),
        }
    )
    return env


def parse(args: list[str]) -> list[tuple[str, datetime]]:
    runs = []
    for arg in args:
        dag_id, _, dates = arg.partition("=")
        if not dag_id or not dates:
            raise SystemExit(f"expected DAG_ID=ISO[,ISO...], got {arg!r}")
        runs.extend((dag_id, datetime.fromisoformat(d)) for d in dates.split(","))
    return runs


def run_all(runs: list[tuple[str, datetime]]) -> list[dict[str, Any]]:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.utils import db

    db.initdb()
    bag = DagBag(dag_folder=str(DAG_FOLDER))
    if bag.import_errors:
        raise SystemExit(f"DAG import errors: {bag.import_errors}")
    results = []
    for dag_id, logical in runs:
        dag = bag.get_dag(dag_id)
        if dag is None:
            raise SystemExit(f"no DAG {dag_id!r} in {DAG_FOLDER} (have: {', '.join(sorted(bag.dag_ids))})")
        run = dag.test(logical_date=logical)
        tasks = {ti.task_id: {"state": str(ti.state), "return": ti.xcom_pull(task_ids=ti.task_id)} for ti in run.get_task_instances()}
        result = {"dag_id": dag_id, "state": str(run.state), "start": run.data_interval_start.isoformat(), "end": run.data_interval_end.isoformat(), "tasks": tasks}
        print("RESULT " + json.dumps(result, default=str), flush=True)
        results.append(result)
    return results


def main() -> None:
    results = run_all(parse(sys.argv[1:]))
    if any(r["state"] != "success" for r in results):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
