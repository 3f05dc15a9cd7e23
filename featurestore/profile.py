"""One call, one typed user profile: every user feature the feed needs.

``ProfileReader.get`` reads what Feast wrote, in Feast's own layout, with one round trip: one
``HMGET`` of the user's hash in Redis (all views of an entity share it), sent on the calling
thread's own connection, or one indexed query in SQLite. Values are Feast ``ValueProto`` bytes,
decoded with protobuf's own parser (``featurestore.wire``); keys and fields are Feast's layout
(``featurestore.layout``). It exists because the Feast SDK's ``get_online_features`` costs
about 100x the raw store read here (``benchmarks/bench_online.py``); ``get_via_sdk`` returns the
same profile through the SDK. Views older than their TTL are treated as absent. An unknown user
gets an empty profile (``found=False``), never an error; an unreachable Redis raises
``OnlineStoreUnavailable`` within the configured timeout, and a connection broken mid-read is
closed, never reused. A serving process should call ``gc.freeze()`` after start-up: full garbage
collections over the libraries' objects otherwise land inside reads (a 100-profile p99 of 7-11
times the median).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import redis
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto

from featurestore import layout
from featurestore.online import redis_client, unavailable
from featurestore.preferences import profile_columns
from featurestore.wire import decode_float_list, decode_int64_list, decode_string, decode_string_list, decode_timestamp
from topicfeed.settings import Settings

PREFS_VIEW = "user_topic_preferences"
INTENTS_VIEW = "user_recent_intents"
INTENT_FIELDS = ("last_query", "last_refined_query", "recent_refined_queries", "recent_intent_ts", "recent_suggested_queries")


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
    recent_suggested_queries: list[str] = field(default_factory=list)  # aligned with recent_refined_queries; '' where none
    intents_at: datetime | None = None

    def top(self, level: int = 1, domain: str = "merged", k: int | None = None) -> list[TopicScore]:
        ranked = self.preferences.get(domain, {}).get(level, [])
        return [TopicScore(t, s) for t, s in (ranked if k is None else ranked[:k])]


# how each stored feature is decoded (featurestore.wire: by hand, protobuf for anything unexpected)
_LIST_DECODER = {"topics": decode_string_list, "scores": decode_float_list}
_INTENT_DECODERS = (decode_string, decode_string, decode_string_list, decode_int64_list, decode_string_list)  # INTENT_FIELDS order


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
        self._local = threading.local()
        self._view_times: dict[bytes, datetime | None] = {}
        self._sqlite: sqlite3.Connection | None = None
        names = [c[0] for c in self.pref_columns]
        self._redis_fields = [layout.redis_field(PREFS_VIEW, n) for n in names] + [layout.redis_field(INTENTS_VIEW, n) for n in INTENT_FIELDS]
        self._redis_fields += [layout.redis_ts_field(PREFS_VIEW), layout.redis_ts_field(INTENTS_VIEW)]
        self._sqlite_query = (
            f"select 0, feature_name, value, event_ts from {layout.sqlite_table(self.project, PREFS_VIEW)} where entity_key = ? "
            f"union all select 1, feature_name, value, event_ts from {layout.sqlite_table(self.project, INTENTS_VIEW)} where entity_key = ?"
        )
        self._store = None
        # profile_columns come as (topics, scores) pairs per (domain, level)
        self._pref_index = {name: i for i, name in enumerate(names)}
        self._pref_slots = [(d, lv) for _, d, lv, kind in self.pref_columns if kind == "topics"]
        self._pref_decoders = [_LIST_DECODER[kind] for *_, kind in self.pref_columns]
        self._domains = list(dict.fromkeys(d for d, _ in self._pref_slots))
        self._key_prefix = layout.serialize_key("user_id", "")[:-4]

    # keys ---------------------------------------------------------------------------------
    def entity_key(self, user_id: str) -> EntityKeyProto:
        return layout.entity_key("user_id", user_id)

    def serialized_key(self, user_id: str) -> bytes:
        """Feast's serialized entity key (``featurestore.layout``), built directly (checked in the tests)."""
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
        prefs = [data.get(name) for name, *_ in self.pref_columns]
        intents = [data.get(name) for name in INTENT_FIELDS]
        return self._build(user_id, prefs, None, intents, None)

    # Redis ------------------------------------------------------------------------------------
    def _client(self) -> redis.Redis:
        if self._redis is None:
            self._redis = redis_client(self.settings)
        return self._redis

    def _redis_many(self, user_ids: Sequence[str]) -> list[UserProfile]:
        project = self.project.encode()
        replies = self._hmget_all([self.serialized_key(u) + project for u in user_ids])
        n = len(self.pref_columns)
        decoders = self._pref_decoders
        out = []
        for user_id, reply in zip(user_ids, replies):
            prefs = [decode(raw) for decode, raw in zip(decoders, reply[:n])]
            intents = [decode(raw) for decode, raw in zip(_INTENT_DECODERS, reply[n:-2])]
            out.append(self._build(user_id, prefs, self._view_time(reply[-2]), intents, decode_timestamp(reply[-1])))
        return out

    def _view_time(self, raw: bytes | None) -> datetime | None:
        """The preference view's ``_ts``: every user of one materialization shares it, so the last
        few are remembered."""
        if raw is None:
            return None
        got = self._view_times.get(raw)
        if got is None:
            if len(self._view_times) >= 64:
                self._view_times.clear()
            got = self._view_times[raw] = decode_timestamp(raw)
        return got

    def _connection(self) -> redis.Connection:
        """This thread's own Redis connection (made with the client's settings and timeouts on first
        use, and again in a forked child). Reads skip the pool's per-call checkout and socket poll."""
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            local.conn = self._client().connection_pool.make_connection()
            local.pid = os.getpid()
        return local.conn

    def _hmget_all(self, keys: list[bytes]) -> list[list[bytes | None]]:
        """``HMGET key *fields`` for every key, in one write and one read on this thread's connection
        (the wire traffic of a redis-py pipeline). A connection left in an unknown state by an error
        is closed; the next read opens it again."""
        conn = self._connection()
        try:
            if len(keys) == 1:
                conn.send_packed_command(conn.pack_command(b"HMGET", keys[0], *self._redis_fields))
            else:
                conn.send_packed_command(conn.pack_commands([(b"HMGET", k, *self._redis_fields) for k in keys]))
            return [conn.read_response() for _ in keys]
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            conn.disconnect()
            raise unavailable(self.settings, exc) from exc
        except BaseException:
            conn.disconnect()
            raise

    def close(self) -> None:
        """Close this thread's Redis connection, the client's pool and the SQLite handle (a later read reopens them)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.disconnect()
            self._local = threading.local()
        if self._redis is not None:
            self._redis.close()
            self._redis = None
        if self._sqlite is not None:
            self._sqlite.close()
            self._sqlite = None

    # SQLite -------------------------------------------------------------------------------------
    def _sqlite_one(self, user_id: str) -> UserProfile:
        if self._sqlite is None:
            path = self.settings.sqlite_path
            if not path.is_file():
                return UserProfile(user_id)
            self._sqlite = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        key = self.serialized_key(user_id)
        try:
            rows = self._sqlite.execute(self._sqlite_query, (key, key)).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return UserProfile(user_id)
            raise
        raw_prefs: list[bytes | None] = [None] * len(self.pref_columns)
        raw_intents: dict[str, bytes] = {}
        stamps: list[Any] = [None, None]
        index = self._pref_index
        for view, name, value, ts in rows:
            if view == 0:
                if name in index:
                    raw_prefs[index[name]] = value
            else:
                raw_intents[name] = value
            stamps[view] = ts
        prefs = [decode(raw) for decode, raw in zip(self._pref_decoders, raw_prefs)]
        intents = [decode(raw_intents.get(name)) for decode, name in zip(_INTENT_DECODERS, INTENT_FIELDS)]
        return self._build(user_id, prefs, _sqlite_ts(stamps[0]), intents, _sqlite_ts(stamps[1]))

    # assembly -----------------------------------------------------------------------------------
    def _build(self, user_id: str, prefs: list[Any], prefs_ts: datetime | None, intents: list[Any], intents_ts: datetime | None) -> UserProfile:
        """``prefs``: decoded values in ``pref_columns`` order; ``intents``: in ``INTENT_FIELDS`` order
        (``None`` = absent). A view older than its TTL counts as absent."""
        now = self.now()
        profile = UserProfile(user_id)
        if prefs.count(None) != len(prefs) and not (prefs_ts is not None and prefs_ts + self.prefs_ttl < now):
            profile.preferences_at = prefs_ts
            out: dict[str, dict[int, list[tuple[str, float]]]] = {d: {} for d in self._domains}
            it = iter(prefs)
            for (d, lv), topics, scores in zip(self._pref_slots, it, it):
                out[d][lv] = list(zip(topics or (), scores or ()))
            profile.preferences = out
            profile.found = True
        if intents.count(None) != len(intents) and not (intents_ts is not None and intents_ts + self.intents_ttl < now):
            last_query, last_refined, recent, recent_ts, suggested = intents
            profile.intents_at = intents_ts
            profile.last_query = last_query
            profile.last_refined_query = last_refined
            profile.recent_refined_queries = list(recent or ())
            profile.recent_intent_ts = [int(x) for x in recent_ts or ()]
            suggested = list(suggested or ())  # rows pushed before the field: none
            profile.recent_suggested_queries = (suggested + [""] * len(profile.recent_refined_queries))[: len(profile.recent_refined_queries)]
            profile.found = True
        return profile


def _sqlite_ts(raw: Any) -> datetime | None:
    if raw is None:
        return None
    if isinstance(raw, int | float):
        return datetime.fromtimestamp(raw, tz=UTC)
    parsed = datetime.fromisoformat(str(raw))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
