"""The decoders of Feast values return exactly what protobuf returns, for any input."""

from __future__ import annotations

import struct
from datetime import UTC, datetime

from feast.protos.feast.types.Value_pb2 import FloatList, Int64List, StringList
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from featurestore.wire import decode_float_list, decode_int64_list, decode_string, decode_string_list, decode_timestamp, value_of, varint

texts = st.text(max_size=200)  # > 127 bytes: two-byte lengths; any unicode
float32s = st.floats(width=32, allow_nan=False)
int64s = st.integers(-(2**63), 2**63 - 1)


def protobuf(raw: bytes) -> object:
    """What the protobuf library reads from ``raw`` (lists as lists, null as None)."""
    return value_of(raw)


@hsettings(max_examples=200, deadline=None, derandomize=True)
@given(items=st.lists(texts, max_size=15))
def test_string_lists_decode_as_protobuf(items: list[str]) -> None:
    raw = ValueProto(string_list_val=StringList(val=items)).SerializeToString()
    assert decode_string_list(raw) == items == protobuf(raw)


@hsettings(max_examples=200, deadline=None, derandomize=True)
@given(items=st.lists(float32s, max_size=40))
def test_float_lists_decode_as_protobuf(items: list[float]) -> None:
    raw = ValueProto(float_list_val=FloatList(val=items)).SerializeToString()
    got = decode_float_list(raw)
    assert got == protobuf(raw)
    assert got == [struct.unpack("<f", struct.pack("<f", x))[0] for x in items]


@hsettings(max_examples=200, deadline=None, derandomize=True)
@given(items=st.lists(int64s, max_size=20), text=texts)
def test_int64_lists_and_strings_decode_as_protobuf(items: list[int], text: str) -> None:
    raw = ValueProto(int64_list_val=Int64List(val=items)).SerializeToString()
    assert decode_int64_list(raw) == items == protobuf(raw)
    raw = ValueProto(string_val=text).SerializeToString()
    assert decode_string(raw) == text == protobuf(raw)


@hsettings(max_examples=100, deadline=None, derandomize=True)
@given(seconds=st.integers(1, 253_402_300_799), nanos=st.integers(0, 999_999_999))
def test_timestamps_decode_as_protobuf(seconds: int, nanos: int) -> None:
    raw = Timestamp(seconds=seconds, nanos=nanos).SerializeToString()
    assert decode_timestamp(raw) == datetime.fromtimestamp(seconds + nanos / 1e9, tz=UTC)


def test_anything_but_the_canonical_encoding_goes_to_protobuf() -> None:
    strings = ValueProto(string_list_val=StringList(val=["a", "b"])).SerializeToString()
    floats = ValueProto(float_list_val=FloatList(val=[0.5, 0.25])).SerializeToString()
    ints = ValueProto(int64_list_val=Int64List(val=[1_700_000_000, -1])).SerializeToString()
    text = ValueProto(string_val="aespa").SerializeToString()
    canonical = ((strings, decode_string_list), (floats, decode_float_list), (ints, decode_int64_list), (text, decode_string))
    # null / absent
    for decode in (decode_string_list, decode_float_list, decode_int64_list, decode_string, decode_timestamp):
        assert decode(None) is None
        assert decode(b"") is None
    assert decode_string_list(ValueProto(null_val=0).SerializeToString()) is None
    # another type where a list was expected: whatever the value is
    assert decode_string_list(floats) == [0.5, 0.25]
    assert decode_float_list(strings) == ["a", "b"]
    assert decode_float_list(ValueProto(double_val=2.0).SerializeToString()) == 2.0
    # an unpacked float list (legal protobuf, never written by Feast or us)
    inner = b"".join(b"\x0d" + struct.pack("<f", x) for x in (0.5, 0.25))
    unpacked = b"\x82\x01" + varint(len(inner)) + inner
    assert decode_float_list(unpacked) == [0.5, 0.25]
    # an unknown field after a canonical list: protobuf skips it, so must we
    for raw, decode in canonical:
        extra = raw + b"\xa8\x06\x01"  # field 101, varint 1
        assert decode(extra) == protobuf(extra)
    # truncated bytes are an error in protobuf too, not a silent short list
    for raw, decode in canonical:
        try:
            expected = protobuf(raw[:-1])
        except Exception as exc:  # noqa: BLE001 - whatever protobuf raises, we raise
            try:
                decode(raw[:-1])
            except type(exc):
                continue
            raise AssertionError("a truncated value decoded without error") from None
        assert decode(raw[:-1]) == expected
