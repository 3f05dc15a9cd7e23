from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from topicfeed.ingest import RawRecord, ingest, ingest_records
from topicfeed.lake import Lake
from topicfeed.schemas import EVENT_SCHEMA, Event
from topicfeed.settings import Settings

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def event(i: int, **over: Any) -> dict[str, Any]:
    rec = {"event_id": f"e{i}", "user_id": f"u{i % 7}", "domain": "homefeed", "type": "impression", "item_id": f"d{i % 11}", "position": i % 10, "ts": (T0 + timedelta(hours=i)).isoformat()}
    rec.update(over)
    return rec


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def quarantine_entries(report: Any) -> list[dict[str, Any]]:
    assert report.quarantine_path is not None
    return [json.loads(line) for line in report.quarantine_path.read_text().splitlines()]


def test_jsonl_valid_invalid_and_duplicates(settings: Settings, tmp_path: Path) -> None:
    rows: list[Any] = [event(i) for i in range(20)]
    rows[3] = event(3, domain="tv")  # bad enum
    rows[7] = event(7, type="search", domain="search", item_id=None)  # search without query
    rows[9] = "{not json"
    rows[12] = event(12, ts="yesterday")
    rows.append(event(5))  # duplicate of record 6 (event_id e5)
    report = ingest("events", write_jsonl(tmp_path / "ev.jsonl", rows), settings)
    assert (report.read, report.accepted, report.quarantined, report.duplicates) == (21, 16, 4, 1)
    entries = quarantine_entries(report)
    assert [(e["record"], e["field"]) for e in entries] == [(4, "domain"), (8, "<record>"), (10, "<record>"), (13, "ts")]
    assert "query" in entries[1]["message"]
    assert "invalid JSON" in entries[2]["message"]
    assert entries[0]["raw"]["event_id"] == "e3"  # the record is kept whole
    stored = Lake(settings.lake_dir).read("events")
    assert stored.num_rows == 16
    assert sorted(stored.column("event_id").to_pylist()) == sorted(f"e{i}" for i in range(20) if i not in (3, 7, 9, 12))
    # partitioned by UTC date
    assert {p.name for p in settings.lake_dir.joinpath("events").iterdir()} == {f"date={(T0 + timedelta(hours=h)).date()}" for h in range(20)}


def test_reingest_same_file_adds_nothing(settings: Settings, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "ev.jsonl", [event(i) for i in range(50)])
    first = ingest("events", path, settings)
    second = ingest("events", path, settings)
    assert first.accepted == 50 and second.accepted == 0 and second.duplicates == 50
    assert Lake(settings.lake_dir).count("events") == 50


def test_timestamps_are_utc(settings: Settings, tmp_path: Path) -> None:
    rows = [event(0, ts="2026-01-05T09:00:00+09:00"), event(1, ts="2026-01-05T00:00:00")]
    ingest("events", write_jsonl(tmp_path / "ev.jsonl", rows), settings)
    ts = Lake(settings.lake_dir).read("events").sort_by("event_id").column("ts").to_pylist()
    assert ts == [datetime(2026, 1, 5, 0, 0, tzinfo=UTC)] * 2


def test_csv_and_parquet_inputs(settings: Settings, tmp_path: Path) -> None:
    docs = tmp_path / "docs.csv"
    with docs.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["doc_id", "title", "body", "source", "created_at", "partner", "topics"])
        w.writeheader()
        w.writerow({"doc_id": "d1", "title": "Scuba in Jeju", "body": "...", "source": "blog", "created_at": "2026-01-01T00:00:00Z", "partner": "", "topics": '["Sports > Water Sports>Scuba Diving"]'})
        w.writerow({"doc_id": "d2", "title": "Racing", "body": "", "source": "news", "created_at": "2026-01-02T00:00:00Z", "partner": "acme", "topics": "Sports > Racing|Automotive"})
        w.writerow({"doc_id": "d3", "title": "", "body": "no title", "source": "news", "created_at": "2026-01-02T00:00:00Z", "partner": "", "topics": ""})
        w.writerow({"doc_id": "d4", "title": "t", "body": "", "source": "news", "created_at": "2026-01-02T00:00:00Z", "partner": "", "topics": "[broken"})
    report = ingest("documents", docs, settings)
    assert (report.accepted, report.quarantined) == (2, 2)
    assert [(e["record"], e["field"]) for e in quarantine_entries(report)] == [(3, "title"), (4, "topics")]
    stored = {r["doc_id"]: r for r in Lake(settings.lake_dir).read("documents").to_pylist()}
    assert stored["d1"]["topics"] == ["Sports > Water Sports > Scuba Diving"]  # spacing normalised
    assert stored["d2"]["topics"] == ["Sports > Racing", "Automotive"] and stored["d2"]["partner"] == "acme"
    assert stored["d1"]["partner"] is None

    table = pa.Table.from_pylist([Event.model_validate(event(i)).model_dump() for i in range(10)], schema=EVENT_SCHEMA)
    pq.write_table(table, tmp_path / "ev.parquet")
    assert ingest("events", tmp_path / "ev.parquet", settings).accepted == 10


def test_unknown_format_and_missing_file(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot tell the format"):
        ingest("events", write_jsonl(tmp_path / "ev.txt", [event(0)]), settings)
    with pytest.raises(FileNotFoundError):
        ingest("events", tmp_path / "missing.jsonl", settings)


def test_unknown_items_are_counted(settings: Settings, tmp_path: Path) -> None:
    ingest("documents", write_jsonl(tmp_path / "d.jsonl", [{"doc_id": "d0", "title": "t", "source": "news", "created_at": "2026-01-01T00:00:00Z"}]), settings)
    report = ingest("events", write_jsonl(tmp_path / "ev.jsonl", [event(i, item_id="d0" if i < 3 else f"x{i}") for i in range(10)]), settings)
    assert report.notes["unknown_items"] == 7
    assert report.notes["unknown_item_share"] == 0.7


# property: garbage mixed with valid records never crashes and never loses a valid record ------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
field_names = st.sampled_from(["event_id", "user_id", "domain", "type", "item_id", "query", "position", "ts", "extra"])
garbage_record = st.dictionaries(field_names, json_values, max_size=9) | json_values


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(garbage=st.lists(garbage_record, max_size=15), n_valid=st.integers(0, 15), seed=st.randoms())
def test_garbage_never_crashes_or_loses_valid_records(garbage: list[Any], n_valid: int, seed: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    settings = Settings(data_dir=tmp_path_factory.mktemp("lake"))
    valid = [event(i, event_id=f"valid-{i}") for i in range(n_valid)]
    records = valid + garbage
    seed.shuffle(records)
    raws = [RawRecord(i + 1, r if isinstance(r, dict) else {}, raw=r, error=None if isinstance(r, dict) else ("<record>", "not an object")) for i, r in enumerate(records)]
    report = ingest_records("events", raws, settings, source="garbage")
    stored = set(Lake(settings.lake_dir).read("events", columns=["event_id"]).column(0).to_pylist())
    assert {v["event_id"] for v in valid} <= stored
    assert report.read == len(records)
    assert report.accepted + report.quarantined + report.duplicates == report.read
    assert report.accepted == len(stored)
    if report.quarantined:
        lines = report.quarantine_path.read_text().splitlines()
        assert len(lines) == report.quarantined
        assert all({"record", "field", "message"} <= json.loads(line).keys() for line in lines)
