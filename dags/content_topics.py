"""content_topics (hourly): classify new or changed documents of the lake (answers are kept per
model version) -> item topics + topic embeddings -> item features online. With no trained classifier (``topicfeed classify train``), the documents'
own gold topics are the item topics. Outlet: the item_topics Asset (topic_preferences listens)."""

from __future__ import annotations

from airflow.sdk import dag, get_current_context, task
from airflow.timetables.interval import CronDataIntervalTimetable

from dags.common import DEFAULT_ARGS, ITEM_TOPICS, START, settings, window


@dag(schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"), start_date=START, catchup=False, default_args=DEFAULT_ARGS, max_active_runs=1, tags=["topicfeed"])
def content_topics() -> None:
    @task(outlets=[ITEM_TOPICS])
    def classify_documents() -> dict:
        from classifier.items import classify_lake_documents, model_fingerprint
        from classifier.jobs import load_classifier
        from classifier.model import CONFIG_NAME
        from featurestore.items import write_item_topics

        s = settings()
        if (s.classifier_dir / CONFIG_NAME).is_file():
            path, n, fresh = classify_lake_documents(s, load_classifier(s, s.classifier_dir), model_id=model_fingerprint(s.classifier_dir))
            return {"item_topics": str(path), "documents": n, "classified": fresh, "source": "classifier"}
        return {"item_topics": str(write_item_topics(s)), "source": "gold topics"}

    @task
    def item_features_online(topics: dict) -> dict:
        from featurestore.items import write_item_stats
        from featurestore.jobs import refresh_online

        s = settings()
        _, end = window(get_current_context())
        stats = write_item_stats(s, end)
        return {"item_stats": str(stats), "online": refresh_online(s, end), **topics}

    item_features_online(classify_documents())


content_topics()
