"""Events that arrive through the feed service: validated, deduplicated, durably in the lake before the reply.

``EventSink.append(records)`` validates each record with the ``Event`` schema; an invalid one is
quarantined (as ``topicfeed ingest`` does, with its index, field and message) and reported back. Valid
events are deduplicated by ``event_id`` against an index of every id the lake holds (a SQLite table
beside the lake, seeded from the lake once, shared by all worker processes) and inside the batch, then
written to the lake as a new Parquet file; the index commits only after the file is written. A retried
batch therefore adds nothing, and an acknowledged event is always in the lake: a crash between the
write and the commit can at worst store an event twice, never lose it.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from topicfeed.ingest import Quarantine, RawRecord, validate
from topicfeed.lake import Lake
from topicfeed.schemas import EVENT_SCHEMA
from topicfeed.settings import Settings


@dataclass
class AppendResult:
    accepted: list[dict[str, Any]] = field(default_factory=list)  # validated rows, as stored
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)  # {"index", "field", "message"}


class EventSink:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.lake = Lake(settings.lake_dir)
        self.path = settings.data_dir / "event_index.db"
        self._lock = threading.Lock()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        con = self._connect()
        try:
            con.execute("begin immediate")  # worker processes start together: one seeds, the others wait
            con.execute("create table if not exists seen (event_id text primary key) without rowid")
            con.execute("create table if not exists meta (key text primary key, value text)")
            if con.execute("select value from meta where key = 'seeded'").fetchone() is None:
                con.executemany("insert or ignore into seen values (?)", ((k,) for k in self.lake.keys("events")))
                con.execute("insert into meta values ('seeded', datetime('now'))")
            con.execute("commit")
        finally:
            con.close()

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        con.execute("pragma journal_mode = wal")
        return con

    def append(self, records: list[Any]) -> AppendResult:
        result = AppendResult()
        valid: list[dict[str, Any]] = []
        quarantine = Quarantine(self.settings.quarantine_dir, "events", "api")
        try:
            for index, record in enumerate(records):
                raw = RawRecord(index + 1, record, raw=record) if isinstance(record, dict) else RawRecord(index + 1, {}, raw=record, error=("<record>", "an event must be a JSON object"))
                row, problems = validate("events", raw)
                if row is None:
                    quarantine.add(raw, problems)
                    result.rejected.append({"index": index, "field": problems[0]["field"], "message": problems[0]["message"]})
                else:
                    valid.append(row)
        finally:
            quarantine.close()
        if not valid:
            return result
        with self._lock:
            con = self._connect()
            try:
                con.execute("begin immediate")  # one writer at a time, across worker processes
                fresh: list[dict[str, Any]] = []
                batch_ids: set[str] = set()
                for row in valid:
                    if row["event_id"] in batch_ids:
                        result.duplicates += 1
                        continue
                    batch_ids.add(row["event_id"])
                    if con.execute("insert or ignore into seen values (?)", (row["event_id"],)).rowcount == 1:
                        fresh.append(row)
                    else:
                        result.duplicates += 1
                if fresh:
                    self.lake.append("events", pa.Table.from_pylist(fresh, schema=EVENT_SCHEMA))
                con.execute("commit")
                result.accepted = fresh
            except BaseException:
                con.execute("rollback")
                raise
            finally:
                con.close()
        return result
