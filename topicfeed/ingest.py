"""Ingestion into the lake: read, validate every record, keep the bad ones aside, drop duplicates.

Nothing is lost: a record that fails validation is written to a quarantine JSONL file with its
record number, the failing field and the message; every valid record is stored, exactly once
(re-ingesting a file adds nothing: records are deduplicated by ``event_id`` / ``doc_id``).
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import ValidationError

from topicfeed.lake import Lake
from topicfeed.records import RawRecord
from topicfeed.schemas import KEYS, MODELS, SCHEMAS, to_row
from topicfeed.settings import Settings

Kind = Literal["events", "documents"]
Format = Literal["auto", "jsonl", "csv", "parquet", "mind", "movielens"]

CHUNK = 100_000


@dataclass(frozen=True)
class ValidBatch:
    """Rows that vectorised checks proved valid and already normalised (``fastpath.py``)."""

    table: pa.Table


@dataclass
class IngestReport:
    kind: str
    source: str
    read: int = 0
    accepted: int = 0
    quarantined: int = 0
    duplicates: int = 0
    quarantine_path: Path | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    def summary_line(self) -> str:
        line = (
            f"{self.kind} from {self.source}: read={self.read} accepted={self.accepted} "
            f"quarantined={self.quarantined} duplicates={self.duplicates}"
        )
        extras = " ".join(f"{k}={v}" for k, v in self.notes.items())
        return f"{line} {extras}".rstrip()


# readers ----------------------------------------------------------------------------------
def _blank_to_none(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, str) and v.strip() == "" else v) for k, v in row.items()}


def read_jsonl(path: Path) -> Iterator[RawRecord]:
    with path.open(encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                yield RawRecord(number, {}, raw=line.rstrip("\n"), error=("<record>", f"invalid JSON: {exc.msg}"))
                continue
            if not isinstance(data, dict):
                yield RawRecord(number, {}, raw=data, error=("<record>", "a record must be a JSON object"))
                continue
            yield RawRecord(number, data, raw=data)


def read_csv(path: Path) -> Iterator[RawRecord]:
    with path.open(newline="", encoding="utf-8", errors="replace") as fh:
        for number, row in enumerate(csv.DictReader(fh), start=1):
            if None in row:  # more cells than header columns
                yield RawRecord(number, {}, raw=row.pop(None), error=("<record>", "more cells than header columns"))
                continue
            data = _blank_to_none(row)
            topics = data.get("topics")
            if isinstance(topics, str):
                try:
                    data["topics"] = json.loads(topics) if topics.lstrip().startswith("[") else topics.split("|")
                except json.JSONDecodeError as exc:
                    yield RawRecord(number, {}, raw=row, error=("topics", f"invalid JSON list: {exc.msg}"))
                    continue
            yield RawRecord(number, data, raw=row)


def read_parquet(path: Path, kind: Kind | None = None) -> Iterator[RawRecord | ValidBatch]:
    """Rows of a Parquet file. For events, rows that pass the vectorised checks come as whole
    ``ValidBatch`` tables; every other row comes as a ``RawRecord`` for per-record validation."""
    from topicfeed.fastpath import certainly_valid_events

    number = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=CHUNK):
        fast = certainly_valid_events(batch) if kind == "events" else None
        if fast is not None:
            valid, ok = fast
            yield ValidBatch(valid)
            slow = np.nonzero(~ok)[0]
            rows = batch.take(pa.array(slow)).to_pylist() if len(slow) else []
            for index, row in zip(slow, rows):
                yield RawRecord(number + int(index) + 1, row, raw=row)
        else:
            for index, row in enumerate(batch.to_pylist()):
                yield RawRecord(number + index + 1, row, raw=row)
        number += batch.num_rows


def detect_format(path: Path) -> Format:
    suffixes = "".join(path.suffixes).lower()
    for fmt, endings in (("jsonl", (".jsonl", ".json", ".ndjson")), ("csv", (".csv",)), ("parquet", (".parquet",)), ("mind", (".tsv",)), ("movielens", (".data", ".dat", ".inter", ".item"))):
        if suffixes.endswith(endings):
            return fmt  # type: ignore[return-value]
    raise ValueError(f"{path}: cannot tell the format from its name; pass --format")


def read_source(kind: Kind, path: Path, fmt: Format = "auto") -> Iterator[RawRecord | ValidBatch]:
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt == "jsonl":
        return read_jsonl(path)
    if fmt == "csv":
        return read_csv(path)
    if fmt == "parquet":
        return read_parquet(path, kind)
    if fmt == "mind":
        from topicfeed.adapters import mind

        return mind.read_behaviors(path) if kind == "events" else mind.read_news(path)
    if fmt == "movielens":
        from topicfeed.adapters import movielens

        return movielens.read_ratings(path) if kind == "events" else movielens.read_movies(path)
    raise ValueError(f"unknown format {fmt!r}")


# validation -------------------------------------------------------------------------------
def _errors(exc: ValidationError) -> list[dict[str, str]]:
    out = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "<record>"
        out.append({"field": loc, "message": err["msg"]})
    return out


def validate(kind: Kind, record: RawRecord) -> tuple[dict[str, Any] | None, list[dict[str, str]]]:
    """A valid row, or the list of ``{field, message}`` problems of this record."""
    if record.error is not None:
        return None, [{"field": record.error[0], "message": record.error[1]}]
    try:
        return to_row(MODELS[kind].model_validate(record.data)), []
    except ValidationError as exc:
        return None, _errors(exc)


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except TypeError:
        return json.loads(json.dumps(value, default=str))


class Quarantine:
    """Writes rejected records to ``<data_dir>/quarantine/<kind>-<time>-<source>.jsonl``."""

    def __init__(self, directory: Path, kind: str, source: str) -> None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        self.path = directory / f"{kind}-{stamp}-{Path(source).name}.jsonl"
        self.count = 0
        self._fh = None

    def add(self, record: RawRecord, problems: list[dict[str, str]]) -> None:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.path.open("w", encoding="utf-8")
        first = problems[0]
        entry = {"record": record.number, "field": first["field"], "message": first["message"], "errors": problems, "raw": _jsonable(record.raw)}
        self._fh.write(json.dumps(entry) + "\n")
        self.count += 1

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()


def ingest_records(kind: Kind, records: Iterable[RawRecord | ValidBatch], settings: Settings, source: str, *, echo_errors: int = 0) -> IngestReport:
    """Validate, deduplicate and store records; the core of every ``topicfeed ingest``."""
    lake = Lake(settings.lake_dir)
    key = KEYS[kind]
    seen = lake.keys(kind)
    report = IngestReport(kind=kind, source=source)
    quarantine = Quarantine(settings.quarantine_dir, kind, source)
    rows: list[dict[str, Any]] = []

    def flush() -> None:
        if rows:
            report.accepted += lake.append(kind, pa.Table.from_pylist(rows, schema=SCHEMAS[kind]))
            rows.clear()

    try:
        for record in records:
            if isinstance(record, ValidBatch):
                flush()
                report.read += record.table.num_rows
                fresh = _first_seen(record.table.column(key).to_pylist(), seen)
                report.duplicates += record.table.num_rows - int(fresh.sum())
                report.accepted += lake.append(kind, record.table.filter(fresh))
                report.notes["fast_path_rows"] = report.notes.get("fast_path_rows", 0) + record.table.num_rows
                continue
            report.read += 1
            row, problems = validate(kind, record)
            if row is None:
                quarantine.add(record, problems)
                if quarantine.count <= echo_errors:
                    p = problems[0]
                    print(f"quarantined {kind} record {record.number} of {source}: field '{p['field']}': {p['message']}", file=sys.stderr)
                continue
            if row[key] in seen:
                report.duplicates += 1
                continue
            seen.add(row[key])
            rows.append(row)
            if len(rows) >= CHUNK:
                flush()
        flush()
    finally:
        quarantine.close()
    report.quarantined = quarantine.count
    report.quarantine_path = quarantine.path if quarantine.count else None
    if kind == "events":
        report.notes.update(unknown_item_share(lake))
    return report


def _first_seen(keys: list[str], seen: set[str]) -> np.ndarray:
    """True for each key met for the first time (and remember it)."""
    fresh = np.zeros(len(keys), dtype=bool)
    for i, k in enumerate(keys):
        if k not in seen:
            seen.add(k)
            fresh[i] = True
    return fresh


def unknown_item_share(lake: Lake) -> dict[str, Any]:
    """How many stored impression/click events point at documents the lake does not have."""
    events = lake.read("events", columns=["item_id"], filter=pc.field("item_id").is_valid())
    if events.num_rows == 0:
        return {}
    docs = lake.read("documents", columns=["doc_id"]).column(0).combine_chunks()
    known = pc.sum(pc.is_in(events.column(0), value_set=docs)).as_py() or 0
    unknown = events.num_rows - known
    return {"item_events_in_lake": events.num_rows, "unknown_items": unknown, "unknown_item_share": round(unknown / events.num_rows, 4)}


def ingest(kind: Kind, path: str | Path, settings: Settings, fmt: Format = "auto", *, echo_errors: int = 0) -> IngestReport:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    return ingest_records(kind, read_source(kind, path, fmt), settings, source=str(path), echo_errors=echo_errors)
