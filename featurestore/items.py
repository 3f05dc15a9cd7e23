"""Item features: topics (+ a topic embedding) and popularity stats, as offline Parquet tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from featurestore.preferences import DECAY_SQL, connect, item_topics_from_documents
from topicfeed.lake import Lake, write_parquet_atomic
from topicfeed.settings import Settings
from topicfeed.taxonomy import Taxonomy


def embedding_basis(taxonomy: Taxonomy) -> list[str]:
    """The topic embedding's dimensions: tier-1 then tier-2 nodes, in taxonomy order."""
    return [n.path for n in taxonomy if n.level == 1] + [n.path for n in taxonomy if n.level == 2]


def item_topics_table(long: pa.Table, taxonomy: Taxonomy, created_at: pa.Table) -> pa.Table:
    """Wide item topics from long ``item_id, topic, level, score`` rows (strongest first, then by level)."""
    basis = {p: i for i, p in enumerate(embedding_basis(taxonomy))}
    rows = long.sort_by([("item_id", "ascending"), ("score", "descending"), ("level", "ascending"), ("topic", "ascending")])
    grouped = rows.group_by("item_id", use_threads=False).aggregate([("topic", "list"), ("level", "list"), ("score", "list")])
    items = grouped.column("item_id")
    topics = grouped.column("topic_list").to_pylist()
    scores = grouped.column("score_list").to_pylist()
    emb = np.zeros((len(topics), len(basis)), dtype=np.float32)
    for i, (ts, ss) in enumerate(zip(topics, scores)):
        for t, s in zip(ts, ss):
            j = basis.get(t)
            if j is not None:
                emb[i, j] = max(emb[i, j], s)
    norm = np.linalg.norm(emb, axis=1, keepdims=True)
    emb = np.divide(emb, norm, out=np.zeros_like(emb), where=norm > 0)
    created = dict(zip(created_at.column("doc_id").to_pylist(), created_at.column("created_at").to_pylist()))
    now = datetime.now(UTC)
    return pa.table(
        {
            "item_id": items,
            "topics": grouped.column("topic_list"),
            "topic_levels": grouped.column("level_list").cast(pa.list_(pa.int32())),
            "topic_scores": grouped.column("score_list").cast(pa.list_(pa.float32())),
            "topic_embedding": pa.array(list(emb), type=pa.list_(pa.float32())),
            "event_timestamp": pa.array([created.get(i, now) for i in items.to_pylist()], pa.timestamp("us", tz="UTC")),
            # the document's own time, like event_timestamp: the same documents give the same bytes
            "created_timestamp": pa.array([created.get(i, now) for i in items.to_pylist()], pa.timestamp("us", tz="UTC")),
        }
    )


def write_item_topics(settings: Settings, long: pa.Table | None = None, taxonomy: Taxonomy | None = None) -> Path:
    """The offline ``item_topics`` table, from long ``item_id, topic, level, score`` rows: the classifier's
    (``classifier/items.py``) or, by default, the documents' gold topics. Replaces the previous table.
    ``taxonomy``: the configured one, if the caller has it loaded already."""
    if long is None:
        long = item_topics_from_documents(settings, connect())
    docs = Lake(settings.lake_dir).read("documents", columns=["doc_id", "created_at"])
    table = item_topics_table(long, taxonomy or Taxonomy.load(settings.taxonomy_path), docs)
    out = settings.features_dir / "item_topics"
    out.mkdir(parents=True, exist_ok=True)
    path = out / "item_topics.parquet"
    write_parquet_atomic(table, path)
    for old in out.glob("*.parquet"):
        if old != path:
            old.unlink()
    return path


def write_item_stats(settings: Settings, asof: datetime) -> Path:
    """Popularity, CTR and trend of every known document over the preference window up to ``asof``."""
    lake = Lake(settings.lake_dir)
    asof = asof.astimezone(UTC)
    window = settings.preferences.window_days
    con = connect()
    events, docs = lake.scan("events"), lake.scan("documents")
    table = con.sql(
        f"""
        with ev as (
            select item_id, type, ts, {DECAY_SQL} as w
            from {events} where ts >= $start and ts < $asof and item_id is not null
        ), s as (
            select item_id,
                   sum(w) filter (where type = 'click') as popularity,
                   sum(w) filter (where type = 'impression') as impressions,
                   count(*) filter (where type = 'click') as clicks_n,
                   count(*) filter (where type = 'impression') as impressions_n,
                   count(*) filter (where type = 'click' and ts >= $asof - interval 1 day) as last_day
            from ev group by item_id
        )
        select d.doc_id as item_id,
               coalesce(s.popularity, 0)::float as popularity,
               coalesce(s.impressions, 0)::float as impressions,
               (case when s.impressions_n > 0 then s.clicks_n / s.impressions_n else 0 end)::float as ctr,
               (case when s.clicks_n > 0 then s.last_day / (s.clicks_n / {window}.0) else 0 end)::float as trend,
               d.created_at, coalesce(d.partner, '') as partner,
               $asof::timestamptz as event_timestamp, $asof::timestamptz as created_timestamp
        from {docs} d left join s on s.item_id = d.doc_id
        order by item_id
        """,
        params={"asof": asof, "start": asof - timedelta(days=window), "half_life": settings.half_life_days},
    ).to_arrow_table()
    table = table.set_column(table.schema.get_field_index("created_at"), "created_at", pc.cast(table.column("created_at"), pa.timestamp("us", tz="UTC")))
    out = settings.features_dir / "item_stats"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"asof={asof:%Y-%m-%dT%H%M%S}.parquet"
    return write_parquet_atomic(table, path)
