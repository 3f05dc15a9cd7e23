"""Feast's online values in protobuf wire format: the few pieces we encode and decode by hand.

Feast stores every online feature as a serialized ``feast.types.Value``. The materializer
(``featurestore.materialize``) writes string and float lists straight as wire bytes, and the
profile reader (``featurestore.profile``) reads them back here without building protobuf
objects: a float list is one ``array.frombytes``, a string list one pass over its items. That
is what brings a whole profile read near the raw store read (``benchmarks/bench_online.py``).

The decoders accept exactly the canonical encoding (the one protobuf and our materializer
write); anything else (a null, another type, an unpacked list, unknown fields) is handed to the
protobuf library, so they return what ``ValueProto.FromString`` would, only sooner.
"""

from __future__ import annotations

import sys
from array import array
from datetime import UTC, datetime
from typing import Any

from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from google.protobuf.timestamp_pb2 import Timestamp

STRING_TAG = 0x12  # Value.string_val = 2, length-delimited
STRING_LIST_TAG = b"b"  # Value.string_list_val = 12, length-delimited
INT64_LIST_TAG = 0x72  # Value.int64_list_val = 14, length-delimited
FLOAT_LIST_TAG = b"\x82\x01"  # Value.float_list_val = 16, length-delimited
_ITEM = 0x0A  # field 1 of StringList / FloatList, length-delimited
_BIG_ENDIAN = sys.byteorder == "big"


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


def _read_varint(raw: bytes, i: int) -> tuple[int, int]:
    """(value, index after it); IndexError when ``raw`` ends inside it."""
    value = shift = 0
    while True:
        byte = raw[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, i
        shift += 7


def value_of(raw: bytes | None) -> Any:
    """Any serialized ``Value`` -> a Python value (lists as lists); ``None`` for null/absent."""
    if not raw:
        return None
    v = ValueProto.FromString(raw)
    kind = v.WhichOneof("val")
    if kind is None or kind == "null_val":
        return None
    got = getattr(v, kind)
    return list(got.val) if kind.endswith("_list_val") else got


def decode_string_list(raw: bytes | None) -> list[str] | None:
    """``Value(string_list_val=...)`` bytes -> ``list[str]``; ``None`` for null/absent."""
    if not raw:
        return None
    end = len(raw)
    # fast path: items shorter than 128 bytes (one-byte lengths), a list shorter than 16 KiB
    if raw[0] == 0x62 and (raw[1] == end - 2 or (end > 3 and raw[1] & 0x80 and raw[2] < 0x80 and (raw[1] & 0x7F | raw[2] << 7) == end - 3)):
        out = []
        append = out.append
        i = 2 if raw[1] < 0x80 else 3
        while i < end:
            n = raw[i + 1]
            if raw[i] != 0x0A or n > 127:
                return _string_list(raw)
            i += 2
            append(raw[i : i + n].decode())
            i += n
        if i == end:
            return out
    return _string_list(raw)


def _string_list(raw: bytes) -> list[str] | None:
    if raw[0] != STRING_LIST_TAG[0]:
        return value_of(raw)
    try:
        size, i = _read_varint(raw, 1)
        end = len(raw)
        if i + size != end:
            return value_of(raw)
        out = []
        while i < end:
            if raw[i] != _ITEM:
                return value_of(raw)
            n, i = _read_varint(raw, i + 1)
            out.append(raw[i : i + n].decode())
            i += n
        return out if i == end else value_of(raw)
    except (IndexError, UnicodeDecodeError):
        return value_of(raw)


def _packed(raw: bytes, head: int) -> int | None:
    """Where the items of a canonical packed list start: ``raw`` is a ``head``-byte tag, the
    varint size, then (unless empty) ``0x0A varint(n)`` and ``n`` bytes of items that run to its end.
    ``len(raw)`` for an empty list, ``None`` for any other layout; IndexError when truncated."""
    size, i = _read_varint(raw, head)
    end = len(raw)
    if i + size != end:
        return None
    if size == 0:
        return end
    if raw[i] != _ITEM:
        return None
    n, j = _read_varint(raw, i + 1)
    return j if j + n == end else None


def _floats(payload: bytes) -> list[float]:
    floats = array("f", payload)
    if _BIG_ENDIAN:
        floats.byteswap()
    return floats.tolist()


def decode_float_list(raw: bytes | None) -> list[float] | None:
    """``Value(float_list_val=...)`` bytes (packed float32) -> ``list[float]``; ``None`` for null/absent."""
    if not raw:
        return None
    end = len(raw)
    # fast path: fewer than 32 floats (one-byte lengths)
    if end > 5 and raw[2] == end - 3 and raw[4] == end - 5 and raw[3] == 0x0A and raw[:2] == FLOAT_LIST_TAG and not (end - 5) & 3:
        return _floats(raw[5:])
    if raw[:2] != FLOAT_LIST_TAG:
        return value_of(raw)
    try:
        start = _packed(raw, 2)
    except IndexError:
        return value_of(raw)
    if start is None or (end - start) % 4:
        return value_of(raw)
    return _floats(raw[start:])


def decode_string(raw: bytes | None) -> str | None:
    """``Value(string_val=...)`` bytes -> ``str``; ``None`` for null/absent."""
    if not raw:
        return None
    if raw[0] != STRING_TAG:
        return value_of(raw)
    try:
        n, i = _read_varint(raw, 1)
        return raw[i:].decode() if i + n == len(raw) else value_of(raw)
    except (IndexError, UnicodeDecodeError):
        return value_of(raw)


def decode_int64_list(raw: bytes | None) -> list[int] | None:
    """``Value(int64_list_val=...)`` bytes (packed varints) -> ``list[int]``; ``None`` for null/absent."""
    if not raw:
        return None
    if raw[0] != INT64_LIST_TAG:
        return value_of(raw)
    try:
        i = _packed(raw, 1)
        if i is None:
            return value_of(raw)
        out = []
        while i < len(raw):  # a varint running past the end raises IndexError
            v, i = _read_varint(raw, i)
            out.append(v - (1 << 64) if v >= 1 << 63 else v)
        return out
    except IndexError:
        return value_of(raw)


def decode_timestamp(raw: bytes | None) -> datetime | None:
    """``google.protobuf.Timestamp`` bytes (Feast's per-view ``_ts`` field) -> aware UTC datetime."""
    if not raw:
        return None
    seconds = nanos = 0
    try:
        i = 0
        if raw[0] == 0x08:
            seconds, i = _read_varint(raw, 1)
        if i < len(raw) and raw[i] == 0x10:
            nanos, i = _read_varint(raw, i + 1)
        if i != len(raw) or seconds >= 1 << 63:
            raise IndexError
    except IndexError:
        ts = Timestamp.FromString(raw)
        seconds, nanos = ts.seconds, ts.nanos
    return datetime.fromtimestamp(seconds + nanos / 1e9, tz=UTC)
