"""What every topicfeed DAG shares: the settings object, retries, the Assets between DAGs, and windows
from the data interval. DAG files are thin wiring over library functions; each task is idempotent
for its data interval (a rerun writes the same files and the same online rows)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import Asset

from topicfeed.settings import Settings, get_settings

ITEM_TOPICS = Asset("topicfeed://features/item_topics")
USER_PREFERENCES = Asset("topicfeed://features/user_preferences")
REFINED_SEARCHES = Asset("topicfeed://features/refined_searches")
NOTIFICATION_TARGETS = Asset("topicfeed://notifications/targets")
EXPERIMENT_STATES = Asset("topicfeed://experiments/states")

DEFAULT_ARGS: dict[str, Any] = {"owner": "topicfeed", "retries": 2, "retry_delay": timedelta(minutes=1)}
START = datetime(2026, 1, 1, tzinfo=UTC)


def settings() -> Settings:
    """The settings object, read at task run time (``TOPICFEED_*`` in the worker's environment)."""
    return get_settings()


def window(context: dict[str, Any]) -> tuple[datetime, datetime]:
    """(start, end) of the run's data interval, in UTC."""
    return context["data_interval_start"].astimezone(UTC), context["data_interval_end"].astimezone(UTC)
