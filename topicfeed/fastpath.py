"""Vectorised validation of event batches (Arrow compute), used before per-record pydantic.

It is conservative: a row it accepts is one the ``Event`` model accepts *unchanged* (no
whitespace to strip, no coercion), so storing the row as it is equals storing what pydantic
would return. Every row it does not accept goes through pydantic as usual and is stored or
quarantined with its exact error. ``tests/test_fastpath.py`` checks that agreement on generated
batches.
"""

from __future__ import annotations

import sys
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from topicfeed.schemas import EVENT_SCHEMA, Domain, EventType

REQUIRED = ("event_id", "user_id", "domain", "type", "ts")
OPTIONAL = ("item_id", "query", "position", "experiment", "arm")


@lru_cache(maxsize=1)
def _trimmed_pattern() -> str:
    """RE2 pattern of a string with no leading/trailing character that Python's ``str.strip`` removes."""
    ws = "".join(f"\\x{{{ord(c):x}}}" for c in map(chr, range(sys.maxunicode + 1)) if c.isspace())
    return f"(?s)^[^{ws}](.*[^{ws}])?$"


def _clean_text(column: pa.Array, max_length: int) -> pa.Array:
    length = pc.utf8_length(column)
    ok = pc.and_(pc.less_equal(length, max_length), pc.match_substring_regex(column, _trimmed_pattern()))
    return pc.fill_null(ok, False)


def _as_string(column: pa.Array) -> pa.Array | None:
    if pa.types.is_dictionary(column.type) and pa.types.is_string(column.type.value_type):
        column = column.cast(pa.string())
    if pa.types.is_large_string(column.type):
        column = column.cast(pa.string())
    return column if pa.types.is_string(column.type) else None


def certainly_valid_events(batch: pa.RecordBatch) -> tuple[pa.Table, np.ndarray] | None:
    """``(the rows that certainly pass, as an EVENT_SCHEMA table; mask of those rows in the batch)``,
    or None when the batch's columns or types are not ones this fast path knows (then every row
    takes the slow path)."""
    names = set(batch.schema.names)
    if not set(REQUIRED) <= names or not names <= set(REQUIRED + OPTIONAL):
        return None
    n = batch.num_rows
    cols: dict[str, pa.Array] = {}
    for name in ("event_id", "user_id", "domain", "type", "item_id", "query", "experiment", "arm"):
        if name not in names:
            cols[name] = pa.nulls(n, pa.string())
            continue
        col = _as_string(batch.column(name))
        if col is None:
            return None
        cols[name] = col
    position = batch.column("position") if "position" in names else pa.nulls(n, pa.int32())
    if not (pa.types.is_integer(position.type) or pa.types.is_null(position.type)):
        return None
    ts = batch.column("ts")
    if not (pa.types.is_timestamp(ts.type) and ts.type.unit in ("s", "ms", "us")):
        return None

    ok = pc.and_(_clean_text(cols["event_id"], 512), _clean_text(cols["user_id"], 512))
    ok = pc.and_(ok, pc.fill_null(pc.is_in(cols["domain"], pa.array([d.value for d in Domain])), False))
    ok = pc.and_(ok, pc.fill_null(pc.is_in(cols["type"], pa.array([t.value for t in EventType])), False))
    item_ok = pc.or_(pc.is_null(cols["item_id"]), _clean_text(cols["item_id"], 512))
    query_ok = pc.or_(pc.is_null(cols["query"]), _clean_text(cols["query"], 1024))
    pos_ok = pc.or_(pc.is_null(position), pc.fill_null(pc.and_(pc.greater_equal(position, 0), pc.less_equal(position, 100_000)), False))
    ok = pc.and_(ok, pc.and_(item_ok, pc.and_(query_ok, pos_ok)))
    ok = pc.and_(ok, pc.is_valid(ts))
    exp_ok = pc.and_(pc.or_(pc.is_null(cols["experiment"]), _clean_text(cols["experiment"], 64)), pc.or_(pc.is_null(cols["arm"]), _clean_text(cols["arm"], 64)))
    ok = pc.and_(ok, pc.fill_null(pc.and_(exp_ok, pc.equal(pc.is_null(cols["experiment"]), pc.is_null(cols["arm"]))), False))
    is_search = pc.equal(cols["type"], "search")
    search_ok = pc.and_(pc.equal(cols["domain"], "search"), pc.is_valid(cols["query"]))
    other_ok = pc.is_valid(cols["item_id"])
    ok = pc.and_(ok, pc.fill_null(pc.if_else(is_search, search_ok, other_ok), False))

    table = pa.table(
        {
            **{k: cols[k] for k in ("event_id", "user_id", "domain", "type", "item_id", "query")},
            "position": position.cast(pa.int32(), safe=False) if not pa.types.is_null(position.type) else pa.nulls(n, pa.int32()),
            "ts": ts.cast(pa.timestamp("us", tz="UTC")),
            "experiment": cols["experiment"],
            "arm": cols["arm"],
        },
    ).select(EVENT_SCHEMA.names)
    # a position out of int32 range fails the range check above, so the unsafe cast only affects rejected rows
    return table.filter(ok).cast(EVENT_SCHEMA), ok.to_numpy(zero_copy_only=False)
