"""Every Feast object of topicfeed, in one place: entities, sources, feature views, services.

Paths come from the settings (each deployment has its own data directory), so the objects are
built by ``feature_definitions(settings)``; read it top to bottom like a Feast ``feature_repo``.
Offline sources are folders of Parquet files under ``<data_dir>/features/`` (one file per
computation), fresh refined intents enter through a ``PushSource``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pyarrow as pa
from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource, ValueType
from feast.types import Array, Float32, Int32, Int64, String, UnixTimestamp

from featurestore.preferences import profile_columns
from topicfeed.settings import Settings

TAGS = {"team": "topicfeed"}


@dataclass(frozen=True)
class FeatureDefinitions:
    user: Entity
    item: Entity
    user_topic_preferences: FeatureView
    user_recent_intents: FeatureView
    item_topics: FeatureView
    item_stats: FeatureView
    user_profile: FeatureService
    item_features: FeatureService
    sources: tuple[FileSource | PushSource, ...]

    def all(self) -> list[object]:
        return [
            self.user,
            self.item,
            *self.sources,
            self.user_topic_preferences,
            self.user_recent_intents,
            self.item_topics,
            self.item_stats,
            self.user_profile,
            self.item_features,
        ]


# Arrow schemas of the offline sources (also used to seed empty folders before first data).
INTENT_SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("last_query", pa.string()),
        ("last_refined_query", pa.string()),
        ("recent_refined_queries", pa.list_(pa.string())),
        ("recent_intent_ts", pa.list_(pa.int64())),
        ("recent_suggested_queries", pa.list_(pa.string())),
        ("event_timestamp", pa.timestamp("us", tz="UTC")),
    ]
)


def feature_definitions(settings: Settings) -> FeatureDefinitions:
    features = settings.features_dir
    ttl = settings.feast

    user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING, description="a platform user", tags=TAGS)
    item = Entity(name="item", join_keys=["item_id"], value_type=ValueType.STRING, description="a document (doc_id)", tags=TAGS)

    preferences_source = FileSource(
        name="user_preferences_source",
        path=str((features / "user_preferences").resolve()),
        timestamp_field="event_timestamp",
        created_timestamp_column="created_timestamp",
        description="featurestore.preferences.run_preferences output, one file per as-of time",
    )
    user_topic_preferences = FeatureView(
        name="user_topic_preferences",
        entities=[user],
        ttl=timedelta(days=ttl.profile_ttl_days),
        schema=[
            Field(
                name=name,
                dtype=Array(String) if kind == "topics" else Array(Float32),
                description=f"{domain} preferences at level {level}: " + ("topic paths, strongest first" if kind == "topics" else "scores in 0..1 (0.5 = like the population)"),
            )
            for name, domain, level, kind in profile_columns(settings.preferences.levels)
        ],
        source=preferences_source,
        description="top-k time-decayed topic preferences per taxonomy level, merged across domains and per domain",
        tags=TAGS,
    )

    intents_batch = FileSource(
        name="user_intents_source",
        path=str((features / "user_intents").resolve()),
        timestamp_field="event_timestamp",
        description="history of pushed refined intents",
    )
    intents_push = PushSource(name="user_intents_push", batch_source=intents_batch, description="near-real-time refined intents")
    user_recent_intents = FeatureView(
        name="user_recent_intents",
        entities=[user],
        ttl=timedelta(days=ttl.intent_ttl_days),
        schema=[
            Field(name="last_query", dtype=String, description="the user's last search query Q"),
            Field(name="last_refined_query", dtype=String, description="its refined intent Q*"),
            Field(name="recent_refined_queries", dtype=Array(String), description="recent refined intents, newest first"),
            Field(name="recent_intent_ts", dtype=Array(Int64), description="their times, epoch seconds"),
            Field(
                name="recent_suggested_queries",
                dtype=Array(String),
                description="for each of them, the search's re-search suggestion (Q + the log's most-typed word of the clicked titles; '' where none)",
            ),
        ],
        source=intents_push,
        online=True,
        description="recent refined search intents (push source)",
        tags=TAGS,
    )

    item_topics_source = FileSource(
        name="item_topics_source",
        path=str((features / "item_topics").resolve()),
        timestamp_field="event_timestamp",
        created_timestamp_column="created_timestamp",
    )
    item_topics = FeatureView(
        name="item_topics",
        entities=[item],
        ttl=timedelta(days=ttl.item_ttl_days),
        schema=[
            Field(name="topics", dtype=Array(String), description="topic paths at every level, strongest first"),
            Field(name="topic_levels", dtype=Array(Int32), description="level of each topic"),
            Field(name="topic_scores", dtype=Array(Float32), description="score of each topic, 0..1"),
            Field(name="topic_embedding", dtype=Array(Float32), description="L2-normalised topic scores over the tier-1 and tier-2 nodes, in taxonomy order"),
        ],
        source=item_topics_source,
        description="topics of each document (gold topics until the classifier writes them)",
        tags=TAGS,
    )

    item_stats_source = FileSource(
        name="item_stats_source",
        path=str((features / "item_stats").resolve()),
        timestamp_field="event_timestamp",
        created_timestamp_column="created_timestamp",
    )
    item_stats = FeatureView(
        name="item_stats",
        entities=[item],
        ttl=timedelta(days=ttl.item_ttl_days),
        schema=[
            Field(name="popularity", dtype=Float32, description="time-decayed clicks over the window"),
            Field(name="impressions", dtype=Float32, description="time-decayed impressions over the window"),
            Field(name="ctr", dtype=Float32, description="clicks / impressions over the window"),
            Field(name="trend", dtype=Float32, description="clicks in the last day / mean daily clicks of the window"),
            Field(name="created_at", dtype=UnixTimestamp, description="document creation time"),
            Field(name="partner", dtype=String, description="partner or brand, empty for none"),
        ],
        source=item_stats_source,
        description="popularity and freshness of each document",
        tags=TAGS,
    )

    user_profile = FeatureService(name="user_profile", features=[user_topic_preferences, user_recent_intents], description="all user features, read by the feed")
    item_features = FeatureService(name="item_features", features=[item_topics, item_stats], description="all item features")
    sources = (preferences_source, intents_batch, intents_push, item_topics_source, item_stats_source)
    return FeatureDefinitions(user, item, user_topic_preferences, user_recent_intents, item_topics, item_stats, user_profile, item_features, sources)
