"""topic_preferences (hourly, and whenever item topics change): cross-domain topic preferences as of
the data interval's end -> user profiles online."""

from __future__ import annotations

from airflow.sdk import dag, get_current_context, task
from airflow.timetables.assets import AssetOrTimeSchedule
from airflow.timetables.interval import CronDataIntervalTimetable

from dags.common import DEFAULT_ARGS, ITEM_TOPICS, START, USER_PREFERENCES, settings, window


@dag(
    schedule=AssetOrTimeSchedule(timetable=CronDataIntervalTimetable("0 * * * *", timezone="UTC"), assets=[ITEM_TOPICS]),
    start_date=START,
    catchup=False,
    default_args=DEFAULT_ARGS,
    max_active_runs=1,
    tags=["topicfeed"],
)
def topic_preferences() -> None:
    @task(outlets=[USER_PREFERENCES])
    def compute_preferences() -> dict:
        from featurestore.preferences import run_preferences

        _, end = window(get_current_context())
        run = run_preferences(settings(), end)
        return {"asof": end.isoformat(), "users": run.users, "rows": run.rows, "path": str(run.path)}

    @task
    def materialize_users(prefs: dict) -> dict:
        from featurestore.jobs import refresh_online

        _, end = window(get_current_context())
        return {"online": refresh_online(settings(), end), **prefs}

    materialize_users(compute_preferences())


topic_preferences()
