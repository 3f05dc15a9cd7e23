"""experiment_update (hourly): the window's logged impressions and clicks per experiment and arm ->
one batch update of each experiment's state (batched Thompson sampling for a dynamic one: α, β and
the traffic allocation from the window's end on). The batch id is the window, so a rerun changes
nothing; runs are serial (``max_active_runs=1``) because each reads and writes the state file."""

from __future__ import annotations

from airflow.sdk import dag, get_current_context, task
from airflow.timetables.interval import CronDataIntervalTimetable

from dags.common import DEFAULT_ARGS, EXPERIMENT_STATES, START, settings, window


@dag(schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"), start_date=START, catchup=False, default_args=DEFAULT_ARGS, max_active_runs=1, tags=["topicfeed"])
def experiment_update() -> None:
    @task(outlets=[EXPERIMENT_STATES])
    def apply_batches() -> dict:
        from feed.experiments import update_all

        start, end = window(get_current_context())
        results = update_all(settings(), start, end)
        return {
            "start": start.isoformat(),
            "end": end.isoformat(),
            "experiments": {r.experiment: {"applied": r.applied, "counts": {a: list(c) for a, c in r.counts.items()}, "unmatched_clicks": r.unmatched_clicks} for r in results},
        }

    apply_batches()


experiment_update()
