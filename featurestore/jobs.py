"""Batch jobs of the feature store, each one library call (what the CLI and the DAGs run)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from featurestore import repo
from featurestore.items import write_item_stats, write_item_topics
from featurestore.preferences import PreferenceRun, run_preferences
from topicfeed.lake import Lake
from topicfeed.settings import Settings


def default_asof(settings: Settings) -> datetime:
    """Just after the newest event in the lake (the wall clock when the lake is empty)."""
    lake = Lake(settings.lake_dir)
    if not lake.exists("events"):
        return datetime.now(UTC)
    newest = duckdb.connect().execute(f"select max(ts) from {lake.scan('events')}").fetchone()[0]
    return newest.astimezone(UTC) + timedelta(microseconds=1)


def write_features(settings: Settings, asof: datetime) -> tuple[PreferenceRun, Path, Path]:
    """User preferences, item topics and item stats as of ``asof``, written as offline Parquet."""
    return run_preferences(settings, asof), write_item_topics(settings), write_item_stats(settings, asof)


def compute_features(settings: Settings, asof: datetime | None = None) -> dict[str, Any]:
    """``write_features`` with a small JSON-able summary (for the CLI and XCom)."""
    asof = asof or default_asof(settings)
    prefs, topics, stats = write_features(settings, asof)
    return {
        "asof": asof.isoformat(),
        "users": prefs.users,
        "preference_rows": prefs.rows,
        "preferences": str(prefs.path),
        "item_topics": str(topics),
        "item_stats": str(stats),
        "timings": {k: round(v, 3) for k, v in prefs.timings.items()},
    }


def refresh_online(settings: Settings, asof: datetime | None = None, engine: str = "topicfeed") -> list[dict[str, Any]]:
    """Apply the definitions and materialize the window ``[asof - profile TTL, asof]``."""
    asof = asof or default_asof(settings)
    store = repo.get_store(settings)
    repo.apply(settings, store)
    start = asof - timedelta(days=settings.feast.profile_ttl_days)
    return [r.__dict__ for r in repo.materialize(settings, start, asof, store, engine=engine)]


def simulated_world(settings: Settings, sim_dir: Path, *, online: bool = True) -> datetime:
    """A simulated world made ready to serve, as the main job does: simulate into ``sim_dir``, ingest
    documents and events, compute the features and (with ``online``) load the online store; returns
    the as-of time (just after the newest event)."""
    from topicfeed.ingest import ingest
    from topicfeed.simulator import simulate

    sim = simulate(settings, sim_dir)
    for kind in ("documents", "events"):
        ingest(kind, sim.files[kind], settings)
    asof = default_asof(settings)
    compute_features(settings, asof)
    if online:
        refresh_online(settings, asof)
    return asof
