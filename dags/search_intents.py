"""search_intents (every 10 minutes): refine the window's searches with clicks (grouped by user and
query) with the trained refiner, and suggest each again with the suggester saved beside it -> the
window's file of refined searches offline + a push online."""

from __future__ import annotations

from airflow.sdk import dag, get_current_context, task
from airflow.timetables.interval import CronDataIntervalTimetable

from dags.common import DEFAULT_ARGS, REFINED_SEARCHES, START, settings, window


@dag(schedule=CronDataIntervalTimetable("*/10 * * * *", timezone="UTC"), start_date=START, catchup=False, default_args=DEFAULT_ARGS, max_active_runs=1, tags=["topicfeed"])
def search_intents() -> None:
    @task(outlets=[REFINED_SEARCHES])
    def refine_window() -> dict:
        from intent.jobs import refine_window as refine
        from intent.students import load_refiner
        from intent.suggest import suggester_for

        s = settings()
        start, end = window(get_current_context())
        refiner = load_refiner(s.intent_dir, **s.intent.serving())
        records = refine(s, refiner, start, end, suggester=suggester_for(s, s.intent_dir))
        return {"start": start.isoformat(), "end": end.isoformat(), "refined": len(records)}

    refine_window()


search_intents()
