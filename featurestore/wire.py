"""Feast's online values in protobuf wire format: encoding pieces for the materializer, decoding for the reader.

Feast stores every online feature as a serialized ``feast.types.Value``. The materializer
(``featurestore.materialize``) writes string and float lists straight as wire bytes in Arrow (tags and
varints below). The profile reader (``featurestore.profile``) decodes them with protobuf's own
``Value.FromString`` (the upb C parser). The hand-written decoders this module used to hold were
removed: on a whole profile's bytes they were 5-13% faster on a quiet CPU (``benchmarks/bench_wire.py``:
57 against 60 us; 1.24x slower under load), but the whole read meets its bar with the library
(``benchmarks/bench_online.py``: 1.68-1.90x a raw redis-py pipeline, bar 2x; 1.85x with the
hand-written decoders in the same session), so there is no case for keeping them. Each decoder returns what
``Value.FromString`` reads: the expected list or string, any other type as it is, ``None`` for a null.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from google.protobuf.timestamp_pb2 import Timestamp

STRING_LIST_TAG = b"b"  # Value.string_list_val = 12, length-delimited
FLOAT_LIST_TAG = b"\x82\x01"  # Value.float_list_val = 16, length-delimited


def varint(n: int) -> bytes:
    """Protobuf's base-128 varint of a non-negative int."""
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


_parse = ValueProto.FromString


def value_of(raw: bytes | None) -> Any:
    """Any serialized ``Value`` -> a Python value (lists as lists); ``None`` for null/absent."""
    if not raw:
        return None
    v = _parse(raw)
    kind = v.WhichOneof("val")
    if kind is None or kind == "null_val":
        return None
    got = getattr(v, kind)
    return list(got.val) if kind.endswith("_list_val") else got


def _decoder(kind: str, is_list: bool):  # noqa: ANN202
    def decode(raw: bytes | None) -> Any:
        if not raw:
            return None
        v = _parse(raw)
        if v.WhichOneof("val") != kind:
            return value_of(raw)
        got = getattr(v, kind)
        return list(got.val) if is_list else got

    decode.__name__ = f"decode_{kind.removesuffix('_val')}"
    decode.__doc__ = f"``Value({kind}=...)`` bytes -> its Python value; anything else as ``value_of`` reads it."
    return decode


decode_string_list = _decoder("string_list_val", True)
decode_float_list = _decoder("float_list_val", True)
decode_int64_list = _decoder("int64_list_val", True)
decode_string = _decoder("string_val", False)


def decode_timestamp(raw: bytes | None) -> datetime | None:
    """``google.protobuf.Timestamp`` bytes (Feast's per-view ``_ts`` field) -> aware UTC datetime."""
    if not raw:
        return None
    ts = Timestamp.FromString(raw)
    return datetime.fromtimestamp(ts.seconds + ts.nanos / 1e9, tz=UTC)
