"""Materialization: the latest offline values of a feature view, written to the online store.

Same result as Feast's ``FeatureStore.materialize`` (same keys, same ``ValueProto`` bytes, same
per-view timestamps, a row never overwrites a newer one), but vectorised: DuckDB picks the latest
row per entity in ``[start, end]``, string and float lists are encoded straight to protobuf wire
format (other types use Feast's own converter), Redis gets pipelined ``HSET``s and SQLite one
``executemany``. ``benchmarks/bench_materialize.py`` measures it against Feast's materialize.
Feast's registry records the materialized interval as its own materialize does.
"""

from __future__ import annotations

import queue
import re
import socket
import sqlite3
import ssl
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import redis
from feast import FeatureStore, FeatureView
from feast.infra.online_stores.helpers import extract_text_and_num
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.type_map import python_values_to_proto_values

from featurestore import layout
from featurestore.online import RedisAddress, redis_client, unavailable
from featurestore.preferences import connect
from featurestore.wire import FLOAT_LIST_TAG, STRING_LIST_TAG, varint
from topicfeed.settings import Settings

BATCH = 5_000


@dataclass
class MaterializeReport:
    view: str
    rows: int
    written: int
    skipped_not_newer: int


# protobuf wire format (featurestore.wire) -----------------------------------------------------
def _with_heads(tag: bytes, payload: pa.Array) -> pa.Array:
    """``tag + varint(len(payload)) + payload`` per row, in Arrow (null rows stay null)."""
    return _prefixed(lambda n: tag + varint(n), payload)


def encode_string_lists(column: pa.Array) -> pa.Array:
    """``list<string>`` -> serialized ``Value(string_list_val=...)``; null rows -> empty ``Value``.

    Vectorised in Arrow: each distinct string is encoded once (``0x0A varint(len) bytes``), the
    rows' items are joined in C++ and the ``Value`` header put in front."""
    column = column.cast(pa.list_(pa.string()))
    encoded = pc.dictionary_encode(column.flatten())
    items = pa.array([b"\n" + varint(len(raw)) + raw for raw in (v.encode() for v in encoded.dictionary.to_pylist())], pa.binary())
    offsets = pc.subtract(column.offsets, column.offsets[0])
    rows = pa.ListArray.from_arrays(offsets, items.take(encoded.indices), mask=column.is_null())
    return pc.fill_null(_with_heads(STRING_LIST_TAG, pc.binary_join(rows, b"")), b"")


def encode_float_lists(column: pa.Array) -> pa.Array:
    """``list<float>`` -> serialized ``Value(float_list_val=...)`` (packed float32)."""
    column = column.cast(pa.list_(pa.float32()))
    flat = np.ascontiguousarray(column.flatten().to_numpy(zero_copy_only=False), dtype="<f4")
    offsets = pc.cast(pc.multiply(pc.subtract(column.offsets, column.offsets[0]), 4), pa.int32())
    floats = pa.Array.from_buffers(pa.binary(), len(column), [None, offsets.buffers()[1], pa.py_buffer(flat)], offset=offsets.offset)
    values = _with_heads(FLOAT_LIST_TAG, _with_heads(b"\n", floats))
    # an empty list is an empty FloatList message; a null row an empty Value
    values = pc.if_else(pc.equal(pc.list_value_length(column), 0), pa.scalar(FLOAT_LIST_TAG + b"\x00"), values)
    return pc.fill_null(values, b"")


def entity_keys(join_key: str, values: pa.Array) -> pa.Array:
    """Feast's serialized entity keys (``featurestore.layout``) of single string keys, built in Arrow;
    Feast's own function is used if its layout differs from the one checked."""
    prefix = layout.key_prefix(join_key)
    if prefix is None:
        return pa.array([layout.serialize_key(join_key, v) for v in values.to_pylist()], pa.binary())
    as_bytes = values.cast(pa.binary())
    return _prefixed(lambda n: prefix + struct.pack("<I", n), as_bytes)


def _length_heads(head: Callable[[int], bytes], payload: pa.Array) -> pa.Array:
    """``head(len(value))`` for every value, computed once per distinct length."""
    lengths = pc.binary_length(payload)
    distinct = pc.unique(lengths.drop_null()).to_pylist()
    heads = pa.array([head(n) for n in distinct], pa.binary())
    return heads.take(pc.index_in(lengths, value_set=pa.array(distinct, lengths.type)))


def _prefixed(head: Callable[[int], bytes], payload: pa.Array) -> pa.Array:
    """``head(len(payload)) + payload`` per row."""
    return pc.binary_join_element_wise(_length_heads(head, payload), payload, b"")


def encode_values(column: pa.Array, view: FeatureView, name: str) -> pa.Array:
    """Serialized ``ValueProto`` of every row, as an Arrow binary array."""
    t = column.type
    if pa.types.is_list(t) and pa.types.is_string(t.value_type):
        return encode_string_lists(column)
    if pa.types.is_list(t) and pa.types.is_floating(t.value_type):
        return encode_float_lists(column)
    feature = next(f for f in view.features if f.name == name)
    protos = python_values_to_proto_values(column.to_pylist(), feature.dtype.to_value_type())
    return pa.array([p.SerializeToString() for p in protos], pa.binary())


def encode_timestamp(seconds: int, nanos: int = 0) -> bytes:
    """``google.protobuf.Timestamp`` bytes."""
    out = b"\x08" + varint(seconds) if seconds else b""
    return out + (b"\x10" + varint(nanos) if nanos else b"")


def encode_timestamps(ts_us: pa.Array) -> pa.Array:
    """Timestamp protos of int64 microseconds, one encoding per distinct value."""
    distinct = pc.unique(ts_us)
    encoded = pa.array([encode_timestamp(us // 1_000_000, (us % 1_000_000) * 1000) for us in distinct.to_pylist()], pa.binary())
    return encoded.take(pc.index_in(ts_us, value_set=distinct))


# reading the offline source -------------------------------------------------------------------
def latest_rows(source_dir: Path, join_key: str, start: datetime, end: datetime, columns: list[str], batch_rows: int = 50_000) -> Iterator[pa.RecordBatch]:
    """Per entity, the row with the latest ``event_timestamp`` in ``[start, end]`` (then latest
    ``created_timestamp``, then the later file), streamed in record batches.

    DuckDB picks the winning (file, row) of each entity on narrow columns; the wide rows are then
    read batch by batch with pyarrow and the winners taken, so nothing wide is sorted or held whole."""
    files = [str(f) for f in sorted(source_dir.glob("*.parquet"))]
    if not files:
        return
    con = connect()
    has_created = "created_timestamp" in con.sql(f"select * from read_parquet({files}, union_by_name = true) limit 0").columns
    order = "event_timestamp, created_timestamp, filename, file_row_number" if has_created else "event_timestamp, filename, file_row_number"
    winners = con.sql(
        f"""select w.filename, w.file_row_number from (
                select arg_max({{'filename': filename, 'file_row_number': file_row_number}}, row({order})) as w
                from read_parquet({files}, filename = true, file_row_number = true, union_by_name = true)
                where event_timestamp >= $start and event_timestamp <= $end
                group by {join_key})
            order by 1, 2""",
        params={"start": start.astimezone(UTC), "end": end.astimezone(UTC)},
    ).fetchnumpy()
    wanted = [join_key, *columns, "event_timestamp"]
    for name in files:
        rows = winners["file_row_number"][winners["filename"] == name].astype(np.int64)
        if len(rows) == 0:
            continue
        seen = 0
        for batch in pq.ParquetFile(name).iter_batches(batch_size=batch_rows, columns=wanted):
            lo, hi = np.searchsorted(rows, [seen, seen + batch.num_rows])
            if hi > lo:
                yield batch if hi - lo == batch.num_rows else batch.take(pa.array(rows[lo:hi] - seen))
            seen += batch.num_rows


# writing --------------------------------------------------------------------------------------
def write_online(settings: Settings, view: FeatureView, table: pa.Table, join_key: str, pipe: RespPipe | None = None) -> MaterializeReport:
    """Write rows (``join_key``, the view's features, ``event_timestamp``) to the online store.
    For Redis, pass an open ``RespPipe`` to keep loading across calls (one is opened otherwise)."""
    names = [f.name for f in view.features]
    n = table.num_rows
    if n == 0:
        return MaterializeReport(view.name, 0, 0, 0)
    table = table.combine_chunks()
    encoded = {name: encode_values(table.column(name).chunk(0), view, name) for name in names}
    keys = entity_keys(join_key, table.column(join_key).chunk(0))
    ts_us = pc.cast(table.column("event_timestamp"), pa.timestamp("us", tz="UTC")).cast(pa.int64()).chunk(0)
    if settings.online_store == "redis":
        own = pipe is None
        pipe = pipe or open_pipe(settings)
        try:
            written = _write_redis(settings, view, names, encoded, keys, ts_us, pipe)
        finally:
            if own:
                pipe.close()
    else:
        written = _write_sqlite(settings, view, names, encoded, keys, ts_us)
    return MaterializeReport(view.name, n, written, n - written)


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


def _bulk_parts(values: pa.Array) -> list[pa.Array | pa.Scalar]:
    """RESP bulk strings ``$<len>\\r\\n<value>\\r\\n`` as parts of one later join (one copy)."""
    return [_length_heads(lambda n: b"$%d\r\n" % n, values), values, pa.scalar(b"\r\n")]


def _pack(parts: list[bytes]) -> bytes:
    return b"*%d\r\n" % len(parts) + b"".join(_bulk(p) for p in parts)


def _buffer(commands: pa.Array) -> memoryview:
    """The bytes of a binary array's rows, back to back (no copy)."""
    offsets = np.frombuffer(commands.buffers()[1], dtype=np.int32)[commands.offset : commands.offset + len(commands) + 1]
    return memoryview(commands.buffers()[2])[int(offsets[0]) : int(offsets[-1])]


def _send(conn: redis.connection.Connection, commands: pa.Array, replies_per_command: int) -> list[object]:
    """Send packed RESP commands on a redis-py connection and read their replies."""
    conn.send_packed_command([_buffer(commands)], check_health=False)
    return [conn.read_response() for _ in range(len(commands) * replies_per_command)]


_INTEGER_REPLIES = re.compile(rb"(?::-?\d+\r\n)*")  # what HSET and EXPIRE answer: the common case, matched in C
_SIMPLE, _BULK, _AGGREGATE = frozenset(b"+-:_,#("), frozenset(b"$!="), frozenset(b"*~>%|")


def _reply_end(data: bytes, i: int) -> int | None:
    """Where the RESP (2 or 3) reply starting at ``data[i]`` ends, or ``None`` if it is not complete yet."""
    nl = data.find(b"\r\n", i)
    if nl < 0:
        return None
    kind = data[i]
    if kind in _SIMPLE:
        return nl + 2
    n = int(data[i + 1 : nl])
    if kind in _BULK:
        end = nl + 4 + n if n >= 0 else nl + 2
        return end if end <= len(data) else None
    if kind in _AGGREGATE:
        j: int | None = nl + 2
        for _ in range(max(n, 0) * (2 if kind in b"%|" else 1)):
            j = _reply_end(data, j)
            if j is None:
                return None
        return j
    raise redis.ResponseError(f"not a RESP reply: {data[i : i + 20]!r}")


def complete_replies(data: bytes) -> tuple[int, int, str | None]:
    """``(replies, end, first error)`` of the complete top-level replies at the start of ``data``:
    every RESP type is walked (bulk strings by their length, arrays by their items), runs of integer
    replies in one regular-expression match."""
    count, i, error = 0, 0, None
    while True:
        run = _INTEGER_REPLIES.match(data, i)
        count += data.count(b"\r\n", i, run.end())
        i = run.end()
        if i >= len(data):
            return count, i, error
        end = _reply_end(data, i)
        if end is None:
            return count, i, error
        if data[i] == 0x2D and error is None:  # "-ERR ..."
            error = data[i + 1 : data.find(b"\r\n", i)].decode(errors="replace")
        count += 1
        i = end


class RespPipe:
    """Mass insertion over a plain socket, as Redis documents for bulk loading: commands are
    written back to back and their replies are counted as they arrive (``complete_replies``: any
    RESP type, integer runs in one regular-expression match), not parsed into objects one by one.
    A sender thread writes and drains while the caller prepares the next batch, so server and
    client work at the same time; replies of at most ``in_flight`` commands are left unread. An
    error reply or a broken connection is raised by the next ``send`` or by ``close``."""

    def __init__(self, url: str, timeout: float, in_flight: int = 2 * BATCH) -> None:
        address = RedisAddress.parse(url)
        raw = socket.create_connection((address.host, address.port), timeout=timeout)
        self.sock = ssl.create_default_context().wrap_socket(raw, server_hostname=address.host) if address.ssl else raw
        self.sock.settimeout(max(timeout, 30.0))  # a bulk batch may keep the server busy a while
        self.in_flight = in_flight
        self.pending = 0
        self.tail = b""
        self.error: BaseException | None = None
        if address.password:
            user = [address.username.encode()] if address.username else []
            self._now(_pack([b"AUTH", *user, address.password.encode()]))
        if address.db:
            self._now(_pack([b"SELECT", str(address.db).encode()]))
        self.queue: queue.Queue[tuple[pa.Array, int] | None] = queue.Queue(maxsize=2)
        self.thread = threading.Thread(target=self._run, name="redis-bulk-load", daemon=True)
        self.thread.start()

    def _now(self, command: bytes) -> None:
        """Send one command and wait for its single-line reply (+OK or an error)."""
        self.sock.sendall(command)
        self.pending += 1
        self._drain(0)

    def send(self, commands: pa.Array, replies: int) -> None:
        """Queue packed commands (a binary array, whole commands per row); keeps a reference."""
        if self.error is not None:
            raise self.error
        self.queue.put((commands, replies))

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            if self.error is not None:
                continue
            try:
                commands, replies = item
                self.sock.sendall(_buffer(commands))
                self.pending += replies
                self._drain(self.in_flight)
            except BaseException as exc:  # handed to the caller by send/close
                self.error = exc

    def _drain(self, keep: int) -> None:
        while self.pending > keep:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise redis.ConnectionError("Redis closed the connection during a bulk load")
            data = self.tail + chunk
            count, end, error = complete_replies(data)
            self.tail = data[end:]
            if error is not None:
                raise redis.ResponseError(error)
            self.pending -= count

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()
        try:
            if self.error is None:
                self._drain(0)
        finally:
            self.sock.close()
        if self.error is not None:
            raise self.error


def open_pipe(settings: Settings) -> RespPipe:
    try:
        return RespPipe(settings.redis_url, settings.redis_timeout_s)
    except OSError as exc:
        raise unavailable(settings, exc) from exc


def _write_redis(settings: Settings, view: FeatureView, names: list[str], encoded: dict[str, pa.Array], entity_keys: pa.Array, ts_us: pa.Array, pipe: RespPipe) -> int:
    """HSET every row's fields in the entity's hash and EXPIRE it, skipping rows that are not newer
    than what the hash holds (Feast's rule). Commands are packed in Arrow and bulk-loaded."""
    project = settings.feast.project.encode()
    ts_field = layout.redis_ts_field(view.name)
    fields = [layout.redis_field(view.name, name) for name in names]
    ttl = str(layout.redis_key_ttl_seconds(settings)).encode()
    keys = pc.binary_join_element_wise(entity_keys, pa.scalar(project), b"")
    stamps = encode_timestamps(ts_us)
    hset_head = b"*%d\r\n$4\r\nHSET\r\n" % (2 + 2 * (len(names) + 1))
    client = redis_client(settings)
    written = 0
    try:
        conn = client.connection_pool.get_connection()
        try:
            for lo in range(0, len(keys), BATCH):
                k = _bulk_parts(keys.slice(lo, BATCH))
                previous = _send(conn, pc.binary_join_element_wise(pa.scalar(b"*3\r\n$4\r\nHGET\r\n"), *k, pa.scalar(_bulk(ts_field)), b""), 1)
                stamp = stamps.slice(lo, BATCH).to_pylist() if any(previous) else None
                keep = [not prev or _timestamp_ns(prev) < _timestamp_ns(stamp[j]) for j, prev in enumerate(previous)] if stamp else None
                parts: list[pa.Array | pa.Scalar] = [pa.scalar(hset_head), *k]
                for f, name in zip(fields, names):
                    parts += [pa.scalar(_bulk(f)), *_bulk_parts(encoded[name].slice(lo, BATCH))]
                parts += [pa.scalar(_bulk(ts_field)), *_bulk_parts(stamps.slice(lo, BATCH))]
                parts += [pa.scalar(b"*3\r\n$6\r\nEXPIRE\r\n"), *k, pa.scalar(_bulk(ttl))]
                commands = pc.binary_join_element_wise(*parts, b"")
                if keep is not None:
                    commands = commands.filter(pa.array(keep))
                if len(commands):
                    pipe.send(commands, 2 * len(commands))
                written += len(commands)
        finally:
            client.connection_pool.release(conn)
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        raise unavailable(settings, exc) from exc
    finally:
        client.close()
    return written


def _timestamp_ns(raw: bytes) -> int:
    from google.protobuf.timestamp_pb2 import Timestamp

    ts = Timestamp()
    ts.ParseFromString(raw)
    return ts.seconds * 1_000_000_000 + ts.nanos


def _write_sqlite(settings: Settings, view: FeatureView, names: list[str], encoded: dict[str, pa.Array], entity_keys: pa.Array, ts_us: pa.Array) -> int:
    table = layout.sqlite_table(settings.feast.project, view.name)
    created = int(datetime.now(UTC).timestamp())
    seconds = (ts_us.to_numpy(zero_copy_only=False) // 1_000_000).tolist()
    keys = entity_keys.to_pylist()
    values = {name: encoded[name].to_pylist() for name in names}
    con = sqlite3.connect(settings.sqlite_path)
    try:
        before = con.total_changes
        with con:
            con.executemany(
                f'insert into "{table}" (entity_key, feature_name, value, value_text, event_ts, created_ts) values (?, ?, ?, ?, ?, ?) '
                f"on conflict(entity_key, feature_name) do update set value = excluded.value, value_text = excluded.value_text, "
                f'event_ts = excluded.event_ts, created_ts = excluded.created_ts where excluded.event_ts > "{table}".event_ts',
                (
                    (key, name, values[name][i], _text(values[name][i]), seconds[i], created)
                    for i, key in enumerate(keys)
                    for name in names
                ),
            )
        return (con.total_changes - before) // max(len(names), 1)
    finally:
        con.close()


def _text(value: bytes) -> str | None:
    """``value_text`` as Feast's SQLite store writes it (scalars only; lists have none)."""
    if not value or value[:1] == STRING_LIST_TAG or value[:2] == FLOAT_LIST_TAG:
        return None
    return extract_text_and_num(ValueProto.FromString(value), False)[0]


def materialize_view(settings: Settings, store: FeatureStore, view: FeatureView, source_dir: Path, join_key: str, start: datetime, end: datetime) -> MaterializeReport:
    names = [f.name for f in view.features]
    total = MaterializeReport(view.name, 0, 0, 0)
    pipe = open_pipe(settings) if settings.online_store == "redis" else None
    try:
        for batch in latest_rows(source_dir, join_key, start, end, names):
            report = write_online(settings, view, pa.Table.from_batches([batch]), join_key, pipe)
            total.rows += report.rows
            total.written += report.written
            total.skipped_not_newer += report.skipped_not_newer
    finally:
        if pipe is not None:
            try:
                pipe.close()
            except (redis.ConnectionError, OSError) as exc:
                raise unavailable(settings, exc) from exc
    store.registry.apply_materialization(view, settings.feast.project, start.astimezone(UTC), end.astimezone(UTC))
    return total
