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
from typing import Any, NamedTuple

import redis
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.helpers import _mmh3
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from google.protobuf.timestamp_pb2 import Timestamp

from featurestore.online import OnlineStoreUnavailable, redis_client
from featurestore.preferences import profile_columns
from topicfeed.settings import Settings

PREFS_VIEW = "user_topic_preferences"
INTENTS_VIEW = "user_recent_intents"
INTENT_FIELDS = ("last_query", "last_refined_query", "recent_refined_queries", "recent_intent_ts")


class TopicScore(NamedTuple):
    """A ranked topic; a plain ``(topic, score)`` tuple compares equal to it."""

    topic: str
    score: float


@dataclass(slots=True)
class UserProfile:
    """All online features of one user. ``preferences[domain][level]`` is a ranked list of
    ``(topic, score)``, strongest first; domains are ``merged``, ``homefeed``, ``search``, ``main``."""

    user_id: str
    found: bool = False
    preferences: dict[str, dict[int, list[tuple[str, float]]]] = field(default_factory=dict)
    preferences_at: datetime | None = None
    last_query: str | None = None
    last_refined_query: str | None = None
    recent_refined_queries: list[str] = field(default_factory=list)
    recent_intent_ts: list[int] = field(default_factory=list)
    intents_at: datetime | None = None

    def top(self, level: int = 1, domain: str = "merged", k: int | None = None) -> list[TopicScore]:
        ranked = self.preferences.get(domain, {}).get(level, [])
        return [TopicScore(t, s) for t, s in (ranked if k is None else ranked[:k])]


# how each stored feature is decoded (protobuf field of Feast's Value): known fields skip WhichOneof
_LIST_FIELD = {"topics": "string_list_val", "scores": "float_list_val"}
_INTENT_FIELD = {"last_query": "string_val", "last_refined_query": "string_val", "recent_refined_queries": "string_list_val", "recent_intent_ts": "int64_list_val"}


def _decode(raw: bytes, field_name: str) -> Any:
    """A stored value; list fields come back as protobuf's read-only sequence (no copy)."""
    v = ValueProto.FromString(raw)
    if not v.HasField(field_name):  # null or another type: fall back to the generic path
        return _value(v)
    got = getattr(v, field_name)
    return got.val if field_name.endswith("_list_val") else got


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
        self._pref_decoders = [(name, _LIST_FIELD[kind]) for name, _, _, kind in self.pref_columns]
        self._pref_kind = dict(self._pref_decoders)
        self._pref_pairs = [(d, lv, f"{d}_l{lv}_topics", f"{d}_l{lv}_scores") for name, d, lv, kind in self.pref_columns if kind == "topics"]
        self._key_prefix = serialize_entity_key(self.entity_key(""), entity_key_serialization_version=3)[:-4]

    # keys ---------------------------------------------------------------------------------
    def entity_key(self, user_id: str) -> EntityKeyProto:
        return EntityKeyProto(join_keys=["user_id"], entity_values=[ValueProto(string_val=user_id)])

    def serialized_key(self, user_id: str) -> bytes:
        """Feast's serialized entity key (version 3), built directly (checked in the tests)."""
        raw = user_id.encode()
        return self._key_prefix + len(raw).to_bytes(4, "little") + raw

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
        project = self.project.encode()
        keys = [self.serialized_key(u) + project for u in user_ids]
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
            prefs = {name: _decode(b, f) if b else None for (name, f), b in zip(self._pref_decoders, reply[:n])}
            intents = {name: _decode(b, _INTENT_FIELD[name]) if b else None for name, b in zip(INTENT_FIELDS, reply[n:-2])}
            out.append(self._build(user_id, prefs, prefs_ts, intents, intents_ts))
        return out

    # SQLite -------------------------------------------------------------------------------------
    def _sqlite_one(self, user_id: str) -> UserProfile:
        if self._sqlite is None:
            path = self.settings.sqlite_path
            if not path.is_file():
                return UserProfile(user_id)
            self._sqlite = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        key = self.serialized_key(user_id)
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
        stamps: list[Any] = [None, None]
        kinds = self._pref_kind
        for view, name, value, ts in rows:
            if view == 0:
                prefs[name] = _decode(value, kinds[name])
            else:
                intents[name] = _decode(value, _INTENT_FIELD.get(name, "string_val"))
            stamps[view] = ts
        return self._build(user_id, prefs, _sqlite_ts(stamps[0]), intents, _sqlite_ts(stamps[1]))

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
            out = profile.preferences
            for d, lv, topics, scores in self._pref_pairs:
                out.setdefault(d, {})[lv] = list(zip(prefs.get(topics) or (), prefs.get(scores) or ()))
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
