"""The vectorised event checks must never accept a row that pydantic would reject or change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from pydantic import ValidationError

from topicfeed.fastpath import certainly_valid_events
from topicfeed.ingest import ingest
from topicfeed.lake import Lake
from topicfeed.schemas import Event, to_row
from topicfeed.settings import Settings, SimulatorSettings
from topicfeed.simulator import simulate

tricky_text = st.one_of(
    st.none(),
    st.sampled_from(["u1", " u1", "u1 ", "", " ", "\x1cu", "u\x85", "\u2003x", "a\nb", "x" * 512, "x" * 513, "y" * 1025, "Ünïcødé", "aespa japan album"]),
    st.text(max_size=12),
)
domains = st.one_of(st.none(), st.sampled_from(["homefeed", "search", "main", "Main", "tv", ""]))
types = st.one_of(st.none(), st.sampled_from(["impression", "click", "search", "view"]))
positions = st.one_of(st.none(), st.integers(-3, 100_003), st.sampled_from([2**40, -(2**40)]))
times = st.one_of(st.none(), st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1)))
tags = st.one_of(st.none(), st.sampled_from(["exp1", "a", " a", "x" * 64, "x" * 65, ""]))
any_rows = st.fixed_dictionaries(
    {"event_id": tricky_text, "user_id": tricky_text, "domain": domains, "type": types, "item_id": tricky_text, "query": tricky_text, "position": positions, "ts": times, "experiment": tags, "arm": tags}
)
good_text = st.sampled_from(["e1", "u-7", "d0001", "aespa", "x" * 512])
mostly_valid_rows = st.fixed_dictionaries(
    {
        "event_id": good_text,
        "user_id": good_text,
        "domain": st.sampled_from(["homefeed", "search", "main"]),
        "type": st.sampled_from(["impression", "click", "search"]),
        "item_id": good_text | st.none(),
        "query": good_text | st.none() | tricky_text,
        "position": st.none() | st.integers(0, 100_000),
        "ts": st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1)),
        "experiment": st.none() | st.just("exp1"),
        "arm": st.none() | st.sampled_from(["default", "trending"]),
    }
)
rows = any_rows | mostly_valid_rows


def test_accepted_rows_equal_what_pydantic_returns() -> None:
    """Every row the fast path accepts equals what pydantic returns for it; the run must also have
    seen many accepted rows, not only rejections (counted here, so the test stands alone)."""
    seen_accepted: list[int] = []

    @hsettings(max_examples=150, deadline=None, derandomize=True)
    @given(batch_rows=st.lists(rows, min_size=1, max_size=25), tz=st.sampled_from([None, "UTC", "Asia/Seoul", "America/New_York"]), unit=st.sampled_from(["s", "ms", "us"]))
    def check(batch_rows: list[dict], tz: str | None, unit: str) -> None:
        schema = pa.schema(
            [("event_id", pa.string()), ("user_id", pa.string()), ("domain", pa.string()), ("type", pa.string()), ("item_id", pa.string()), ("query", pa.string()), ("position", pa.int64()), ("ts", pa.timestamp(unit, tz=tz))]
            + [("experiment", pa.string()), ("arm", pa.string())]
        )
        for r in batch_rows:
            if r["ts"] is not None:
                r["ts"] = r["ts"].replace(microsecond=0) if unit == "s" else r["ts"].replace(microsecond=r["ts"].microsecond // 1000 * 1000) if unit == "ms" else r["ts"]
                if tz is not None:
                    r["ts"] = r["ts"].replace(tzinfo=UTC)
        batch = pa.RecordBatch.from_pylist(batch_rows, schema=schema)
        result = certainly_valid_events(batch)
        assert result is not None
        table, ok = result
        accepted = [row for row, keep in zip(batch.to_pylist(), ok) if keep]
        assert table.num_rows == len(accepted)
        seen_accepted.append(len(accepted))
        for original, fast_row in zip(accepted, table.to_pylist()):
            try:
                expected = to_row(Event.model_validate(original))
            except ValidationError as exc:  # pragma: no cover - the assertion message is the point
                pytest.fail(f"fast path accepted a row pydantic rejects: {original!r}: {exc}")
            assert fast_row == {k: (v.value if hasattr(v, "value") else v) for k, v in expected.items()}

    check()
    assert sum(1 for n in seen_accepted if n) >= 20 and sum(seen_accepted) >= 50


def test_unknown_columns_or_types_take_the_slow_path() -> None:
    base = {"event_id": ["e"], "user_id": ["u"], "domain": ["main"], "type": ["click"], "item_id": ["d"], "ts": [datetime(2026, 1, 1, tzinfo=UTC)]}
    assert certainly_valid_events(pa.RecordBatch.from_pydict(base)) is not None
    assert certainly_valid_events(pa.RecordBatch.from_pydict({**base, "extra": [1]})) is None
    assert certainly_valid_events(pa.RecordBatch.from_pydict({**base, "ts": ["2026-01-01T00:00:00Z"]})) is None
    assert certainly_valid_events(pa.RecordBatch.from_pydict({k: v for k, v in base.items() if k != "user_id"})) is None


def test_parquet_and_jsonl_ingest_store_the_same(tmp_path: Path) -> None:
    s = Settings(simulator=SimulatorSettings(users=150, days=3, docs_per_day=40))
    pq_run = simulate(s, tmp_path / "pq")
    js_run = simulate(s, tmp_path / "js", fmt="jsonl")
    a = ingest("events", pq_run.files["events"], Settings(data_dir=tmp_path / "a"))
    b = ingest("events", js_run.files["events"], Settings(data_dir=tmp_path / "b"))
    assert a.notes["fast_path_rows"] == a.read  # all of our own rows take the fast path
    assert "fast_path_rows" not in b.notes
    assert a.accepted == b.accepted == pq_run.stats["events"]
    ta = Lake(tmp_path / "a" / "lake").read("events").sort_by("event_id")
    tb = Lake(tmp_path / "b" / "lake").read("events").sort_by("event_id")
    assert ta.equals(tb)


def test_mixed_parquet_quarantines_exactly_the_bad_rows(tmp_path: Path) -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    good = [{"event_id": f"e{i}", "user_id": "u", "domain": "homefeed", "type": "impression", "item_id": "d", "query": None, "position": i, "ts": t0 + timedelta(minutes=i)} for i in range(10)]
    bad = [dict(good[0], event_id="b1", domain="tv"), dict(good[0], event_id="b2", position=-1), dict(good[0], event_id=" b3 ")]
    path = tmp_path / "ev.parquet"
    pq.write_table(pa.Table.from_pylist(good[:5] + bad + good[5:] + [good[0]]), path)
    report = ingest("events", path, Settings(data_dir=tmp_path / "d"))
    # " b3 " is valid once stripped: it takes the slow path and is stored as "b3"
    assert (report.read, report.accepted, report.quarantined, report.duplicates) == (14, 11, 2, 1)
    ids = set(Lake(tmp_path / "d" / "lake").read("events", columns=["event_id"]).column(0).to_pylist())
    assert ids == {f"e{i}" for i in range(10)} | {"b3"}
    lines = report.quarantine_path.read_text().splitlines()
    assert ['"record": 6' in lines[0], '"record": 7' in lines[1]] == [True, True]
