"""Feast's online storage layout, in one place: what the materializer writes and the profile reader reads.

Feast 0.67 (pinned to that minor version in ``pyproject.toml``; ``tests/test_featurestore.py`` proves
our writer byte for byte against ``FeatureStore.materialize`` and our reader against
``get_online_features``) stores an entity's features

* in Redis, in one hash per entity key: the key is the serialized entity key (version 3) followed by
  the project name; each feature is the field ``mmh3("<view>:<feature>")`` holding a serialized
  ``ValueProto``, and ``_ts:<view>`` holds the view's event time as a protobuf ``Timestamp``; the
  whole hash expires after ``key_ttl_seconds``;
* in SQLite, in the table ``<project>_<view>`` with one row per (entity key, feature).

This module is the only one that imports Feast internals for that layout.
"""

from __future__ import annotations

import struct

from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.helpers import _mmh3
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto

from topicfeed.settings import Settings

ENTITY_KEY_SERIALIZATION_VERSION = 3


def entity_key(join_key: str, value: str) -> EntityKeyProto:
    return EntityKeyProto(join_keys=[join_key], entity_values=[ValueProto(string_val=value)])


def serialize_key(join_key: str, value: str) -> bytes:
    """Feast's own serialization of a single string entity key."""
    return serialize_entity_key(entity_key(join_key, value), entity_key_serialization_version=ENTITY_KEY_SERIALIZATION_VERSION)


def key_prefix(join_key: str) -> bytes | None:
    """The bytes before ``<len:u32 little-endian><utf-8 value>`` in every serialized key of ``join_key``,
    checked against Feast's own function on a probe value; ``None`` if Feast's layout differs."""
    probe = "x\u00e9".encode()
    expected = serialize_key(join_key, probe.decode())
    prefix = expected[: -(4 + len(probe))]
    return prefix if prefix + struct.pack("<I", len(probe)) + probe == expected else None


def redis_field(view: str, feature: str) -> bytes:
    return _mmh3(f"{view}:{feature}")


def redis_ts_field(view: str) -> bytes:
    return f"_ts:{view}".encode()


def redis_key_ttl_seconds(settings: Settings) -> int:
    """One TTL for every hash (Feast's ``key_ttl_seconds``): the longest of the views' TTLs, so that
    no view is dropped before its own TTL. A user's hash therefore lives ``item_ttl_days`` (90 by
    default) in Redis; reads still treat a profile older than ``profile_ttl_days`` as absent."""
    return int(max(settings.feast.profile_ttl_days, settings.feast.intent_ttl_days, settings.feast.item_ttl_days) * 86400)


def sqlite_table(project: str, view: str) -> str:
    return f"{project}_{view}"
