"""One call, one typed user profile: every user feature the feed needs.

``ProfileReader.get`` reads what Feast wrote, in Feast's own layout, with one round trip: one
``HMGET`` of the user's hash in Redis (all views of an entity share it), or one indexed query in
SQLite; values are Feast ``ValueProto``s, keys are built with Feast's own helpers. It exists
because the Feast SDK's ``get_online_features`` costs several times the raw store read
(``benchmarks/bench_online.py``); ``ProfileReader.get_via_sdk`` returns the same profile through
the SDK. Views older than their TTL are treated as absent. An unknown user gets an empty profile
(``found=False``), never an error; an unreachable Redis raises ``OnlineStoreUnavailable`` within
the configured timeout.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from feast.infra.online_stores.helpers import _mmh3, _redis_key
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from google.protobuf.timestamp_pb2 import Timestamp

from featurestore.online import OnlineStoreUnavailable, redis_client
from featurestore.preferences import profile_columns
from topicfeed.settings import Settings

PREFS_VIEW = "user_topic_preferences"
INTENTS_VIEW = "user_recent_intents"
INTENT_FIELDS = ("last_query", "last_refined_query", "recent_refined_queries", "recent_intent_ts")


@dataclass(frozen=True, slots=True)
class TopicScore:
    topic: str
    score: float


@dataclass(slots=True)
class UserProfile:
    """All online features of one user. ``preferences[domain][level]`` is ranked, strongest first;
    domains are ``merged``, ``homefeed``, ``search``, ``main``."""

    user_id: str
    found: bool = False
    preferences: dict[str, dict[int, list[TopicScore]]] = field(default_factory=dict)
    preferences_at: datetime | None = None
    last_query: str | None = None
    last_refined_query: str | None = None
    recent_refined_queries: list[str] = field(default_factory=list)
    recent_intent_ts: list[int] = field(default_factory=list)
    intents_at: datetime | None = None

    def top(self, level: int = 1, domain: str = "merged", k: int | None = None) -> list[TopicScore]:
        ranked = self.preferences.get(domain, {}).get(level, [])
        return ranked if k is None else ranked[:k]


def _value(v: ValueProto) -> Any:
    kind = v.WhichOneof("val")
    if kind is None or kind == "null_val":
        return None
    raw = getattr(v, kind)
    return list(raw.val) if kind.endswith("_list_val") else raw


class ProfileReader:
    """Reads user profiles from the configured online store (see the module docstring)."""

    def __init__(self, settings: Settings, now: Callable[[], datetime] | None = None) -> None:
        self.settings = settings
        self.now = now or (lambda: datetime.now(UTC))
        self.project = settings.feast.project
        self.pref_columns = [(name, domain, level, kind) for name, domain, level, kind in profile_columns(settings.preferences.levels)]
        self.prefs_ttl = timedelta(days=settings.feast.profile_ttl_days)
        self.intents_ttl = timedelta(days=settings.feast.intent_ttl_days)
        self._redis: redis.Redis | None = None
        self._sqlite: sqlite3.Connection | None = None
        names = [c[0] for c in self.pref_columns]
        self._redis_fields: list[bytes | str] = [_mmh3(f"{PREFS_VIEW}:{n}") for n in names] + [_mmh3(f"{INTENTS_VIEW}:{n}") for n in INTENT_FIELDS]
        self._redis_fields += [f"_ts:{PREFS_VIEW}", f"_ts:{INTENTS_VIEW}"]
        self._store = None

    # keys ---------------------------------------------------------------------------------
    def entity_key(self, user_id: str) -> EntityKeyProto:
        return EntityKeyProto(join_keys=["user_id"], entity_values=[ValueProto(string_val=user_id)])

    # public API -----------------------------------------------------------------------------
    def get(self, user_id: str) -> UserProfile:
        return self.get_many([user_id])[0]

    def get_many(self, user_ids: Sequence[str]) -> list[UserProfile]:
        if self.settings.online_store == "redis":
            return self._redis_many(user_ids)
        return [self._sqlite_one(u) for u in user_ids]

    def get_via_sdk(self, user_id: str) -> UserProfile:
        """The same profile through Feast's ``get_online_features`` (slower; for checks)."""
        from featurestore.repo import get_store

        if self._store is None:
            self._store = get_store(self.settings)
        store = self._store
        result = store.get_online_features(features=store.get_feature_service("user_profile"), entity_rows=[{"user_id": user_id}])
        data = {k: v[0] for k, v in result.to_dict().items()}
        prefs = {name: data.get(name) for name, *_ in self.pref_columns}
        intents = {name: data.get(name) for name in INTENT_FIELDS}
        return self._build(user_id, prefs, None, intents, None)

    # Redis ------------------------------------------------------------------------------------
    def _client(self) -> redis.Redis:
        if self._redis is None:
            self._redis = redis_client(self.settings)
        return self._redis

    def _redis_many(self, user_ids: Sequence[str]) -> list[UserProfile]:
        keys = [_redis_key(self.project, self.entity_key(u), entity_key_serialization_version=3) for u in user_ids]
        try:
            if len(keys) == 1:
                replies = [self._client().hmget(keys[0], self._redis_fields)]
            else:
                pipe = self._client().pipeline(transaction=False)
                for k in keys:
                    pipe.hmget(k, self._redis_fields)
                replies = pipe.execute()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise OnlineStoreUnavailable(f"Redis online store at {self.settings.redis_url} is unavailable: {exc} (timeout {self.settings.redis_timeout_s}s)") from exc
        n = len(self.pref_columns)
        out = []
        for user_id, reply in zip(user_ids, replies):
            prefs_ts, intents_ts = _timestamp(reply[-2]), _timestamp(reply[-1])
            prefs = {c[0]: _value(ValueProto.FromString(b)) if b else None for c, b in zip(self.pref_columns, reply[:n])}
            intents = {name: _value(ValueProto.FromString(b)) if b else None for name, b in zip(INTENT_FIELDS, reply[n:-2])}
            out.append(self._build(user_id, prefs, prefs_ts, intents, intents_ts))
        return out

    # SQLite -------------------------------------------------------------------------------------
    def _sqlite_one(self, user_id: str) -> UserProfile:
        from feast.infra.key_encoding_utils import serialize_entity_key

        if self._sqlite is None:
            path = self.settings.sqlite_path
            if not path.is_file():
                return UserProfile(user_id)
            self._sqlite = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        key = serialize_entity_key(self.entity_key(user_id), entity_key_serialization_version=3)
        try:
            rows = self._sqlite.execute(
                f"select 0, feature_name, value, event_ts from {self.project}_{PREFS_VIEW} where entity_key = ? "
                f"union all select 1, feature_name, value, event_ts from {self.project}_{INTENTS_VIEW} where entity_key = ?",
                (key, key),
            ).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return UserProfile(user_id)
            raise
        prefs: dict[str, Any] = {}
        intents: dict[str, Any] = {}
        stamps: list[datetime | None] = [None, None]
        for view, name, value, ts in rows:
            (prefs if view == 0 else intents)[name] = _value(ValueProto.FromString(value))
            stamps[view] = _sqlite_ts(ts)
        return self._build(user_id, prefs, stamps[0], intents, stamps[1])

    # assembly -----------------------------------------------------------------------------------
    def _build(self, user_id: str, prefs: dict[str, Any], prefs_ts: datetime | None, intents: dict[str, Any], intents_ts: datetime | None) -> UserProfile:
        now = self.now()
        if prefs_ts is not None and prefs_ts + self.prefs_ttl < now:
            prefs = {}
        if intents_ts is not None and intents_ts + self.intents_ttl < now:
            intents = {}
        profile = UserProfile(user_id)
        has_prefs = any(v is not None for v in prefs.values())
        if has_prefs:
            profile.preferences_at = prefs_ts
            by_key = {(d, lv, kind): prefs.get(name) or [] for name, d, lv, kind in self.pref_columns}
            for (d, lv, kind), values in by_key.items():
                if kind == "topics":
                    scores = by_key[(d, lv, "scores")]
                    profile.preferences.setdefault(d, {})[lv] = [TopicScore(t, float(s)) for t, s in zip(values, scores)]
        has_intents = any(v is not None for v in intents.values())
        if has_intents:
            profile.intents_at = intents_ts
            profile.last_query = intents.get("last_query")
            profile.last_refined_query = intents.get("last_refined_query")
            profile.recent_refined_queries = list(intents.get("recent_refined_queries") or [])
            profile.recent_intent_ts = [int(x) for x in intents.get("recent_intent_ts") or []]
        profile.found = has_prefs or has_intents
        return profile


def _timestamp(raw: bytes | None) -> datetime | None:
    if not raw:
        return None
    ts = Timestamp()
    ts.ParseFromString(raw)
    return datetime.fromtimestamp(ts.seconds + ts.nanos / 1e9, tz=UTC)


def _sqlite_ts(raw: Any) -> datetime | None:
    if raw is None:
        return None
    if isinstance(raw, int | float):
        return datetime.fromtimestamp(raw, tz=UTC)
    parsed = datetime.fromisoformat(str(raw))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
