"""Refined intents into the store: one row per user (the newest first, merged with what the user
already had) pushed online through Feast's push source, and appended to the offline history."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pyarrow as pa
from feast import FeatureStore
from feast.data_source import PushMode

from featurestore.definitions import INTENT_SCHEMA
from featurestore.profile import ProfileReader
from featurestore.repo import get_store
from topicfeed.lake import write_parquet_atomic
from topicfeed.settings import Settings


def intents_frame(records: Iterable[dict[str, Any]], current: dict[str, list[tuple[str, int, str]]], keep: int) -> pd.DataFrame:
    """One row per user: the newest intent first, merged with what the user already had.

    ``records``: ``user_id, query, refined_query, ts`` and optionally ``suggested_query`` (the
    search's re-search suggestion); ``current``: user -> [(refined, epoch_s, suggested), ...].
    """
    by_user: dict[str, list[tuple[int, str, str, str]]] = {}
    for r in records:
        ts = pd.Timestamp(r["ts"])
        ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
        by_user.setdefault(str(r["user_id"]), []).append((int(ts.timestamp()), str(r["query"]), str(r["refined_query"]), str(r.get("suggested_query") or "")))
    rows = []
    for user, items in by_user.items():
        items.sort(reverse=True)
        merged = [(refined, epoch, suggested) for epoch, _, refined, suggested in items] + current.get(user, [])
        seen: set[str] = set()
        recent = []
        for refined, epoch, suggested in sorted(merged, key=lambda x: -x[1]):
            if refined not in seen:
                seen.add(refined)
                recent.append((refined, epoch, suggested))
        recent = recent[:keep]
        newest = items[0]
        rows.append(
            {
                "user_id": user,
                "last_query": newest[1],
                "last_refined_query": newest[2],
                "recent_refined_queries": [r for r, _, _ in recent],
                "recent_intent_ts": [e for _, e, _ in recent],
                "recent_suggested_queries": [x for _, _, x in recent],
                "event_timestamp": pd.Timestamp(newest[0], unit="s", tz="UTC"),
            }
        )
    return pd.DataFrame(rows, columns=INTENT_SCHEMA.names)


def push_intents(settings: Settings, records: Iterable[dict[str, Any]], store: FeatureStore | None = None, history_name: str | None = None) -> int:
    """Push refined intents (with their suggestions, where the records have them) online now (Feast
    push source) and append them to the offline history."""
    records = list(records)
    if not records:
        return 0
    store = store or get_store(settings)
    reader = ProfileReader(settings)
    users = sorted({str(r["user_id"]) for r in records})
    current = {u: list(zip(p.recent_refined_queries, p.recent_intent_ts, p.recent_suggested_queries)) for u, p in zip(users, reader.get_many(users))}
    frame = intents_frame(records, current, settings.feast.recent_intents)
    store.push("user_intents_push", frame, to=PushMode.ONLINE)
    # Feast's file offline store cannot append list columns read back from Parquet, so the
    # offline history is written here, one file per push, in the push source's folder.
    out = settings.features_dir / "user_intents"
    out.mkdir(parents=True, exist_ok=True)
    # ``history_name`` (a batch job's window) names the file, so that a rerun replaces it
    name = f"window-{history_name}.parquet" if history_name else f"push-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}.parquet"
    write_parquet_atomic(pa.Table.from_pandas(frame, schema=INTENT_SCHEMA, preserve_index=False), out / name)
    return len(frame)
