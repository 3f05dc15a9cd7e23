"""notification_targeting (daily at 06:00 UTC): the day's new items -> the users to notify (their
preferences or a matching recent search), capped per user and day, held past quiet hours in each
user's time zone, never an item twice -> notifications/targets/<interval end>.parquet."""

from __future__ import annotations

from airflow.sdk import dag, get_current_context, task
from airflow.timetables.interval import CronDataIntervalTimetable

from dags.common import DEFAULT_ARGS, NOTIFICATION_TARGETS, START, settings, window


@dag(schedule=CronDataIntervalTimetable("0 6 * * *", timezone="UTC"), start_date=START, catchup=False, default_args=DEFAULT_ARGS, max_active_runs=1, tags=["topicfeed"])
def notification_targeting() -> None:
    @task(outlets=[NOTIFICATION_TARGETS])
    def pick_targets() -> dict:
        from feed.notify import new_items, run_targeting

        s = settings()
        start, end = window(get_current_context())
        run = run_targeting(s, end, new_items(s, start, end), name=f"{end:%Y-%m-%dT%H%M}")
        return {"targets": len(run.targets), "by_kind": run.by_kind, "items": run.items, "held": run.held, "capped": run.capped, "path": str(run.path)}

    pick_targets()


notification_targeting()
