"""MIND adapters on the real shared sample."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow.compute as pc

from topicfeed.ingest import ingest
from topicfeed.lake import Lake
from topicfeed.settings import Settings


def _expected(behaviors: Path) -> tuple[int, int, int]:
    impressions = clicks = 0
    history: set[tuple[str, str]] = set()
    with behaviors.open() as fh:
        for row in csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE):
            cells = row[4].split()
            impressions += len(cells)
            clicks += sum(c.endswith("-1") for c in cells)
            history.update((row[1], n) for n in row[3].split())
    return impressions, clicks, len(history)


def test_mind_news_become_documents_with_gold_topics(settings: Settings, shared_data: Path) -> None:
    report = ingest("documents", shared_data / "mind" / "news_train.tsv", settings)
    assert (report.read, report.accepted, report.quarantined) == (1401, 1401, 0)
    docs = {r["doc_id"]: r for r in Lake(settings.lake_dir).read("documents").to_pylist()}
    assert docs["N15245"]["topics"] == ["sports > baseball_mlb"]
    assert docs["N15245"]["title"] == "2019 in Review: Greg Allen"
    assert docs["N4877"]["body"].startswith("Are you on the market to purchase a waterpark?")


def test_mind_behaviors_become_homefeed_events(settings: Settings, shared_data: Path) -> None:
    behaviors = shared_data / "mind" / "behaviors_sample.tsv"
    ingest("documents", shared_data / "mind" / "news_train.tsv", settings)
    report = ingest("events", behaviors, settings)
    impressions, clicks, history = _expected(behaviors)
    assert report.quarantined == 0
    assert report.accepted == impressions + clicks + history
    events = Lake(settings.lake_dir).read("events")
    counts = events.column("type").to_pandas().value_counts().to_dict()
    assert counts == {"impression": impressions, "click": clicks + history}
    assert set(events.column("domain").to_pylist()) == {"homefeed"}
    # most impressions point at news that is not in the sample: counted, not dropped
    assert report.notes["unknown_items"] > 0.9 * (impressions + clicks + history)
    assert report.notes["unknown_item_share"] > 0.9
    # history clicks come before the user's first impression
    rows = events.filter(pc.equal(events.column("user_id"), "U81994")).to_pylist()
    first_impression = min(r["ts"] for r in rows if r["event_id"].endswith("-i"))
    assert all(r["ts"] < first_impression for r in rows if r["event_id"].startswith("mind-h-"))
    again = ingest("events", behaviors, settings)
    assert again.accepted == 0 and again.duplicates == again.read


def test_malformed_mind_lines_are_quarantined(settings: Settings, tmp_path: Path) -> None:
    f = tmp_path / "behaviors.tsv"
    f.write_text(
        "1\tU1\t11/12/2019 2:14:46 PM\tN1 N2\tN3-1 N4-0\n"
        "2\tU2\tnot a time\tN1\tN3-0\n"
        "3\tU3\t11/12/2019 2:14:46 PM\t\tN5-1 N6-x\n"
        "4\tU4\t11/12/2019\n"
    )
    report = ingest("events", f, settings)
    assert report.accepted == (2 + 2 + 1) + (1 + 1)  # U1: 2 history, 2 impressions, 1 click; U3: N5 impression + click
    assert report.quarantined == 3
    entries = list(json.loads(line) for line in report.quarantine_path.read_text().splitlines())
    assert [(e["record"], e["field"]) for e in sorted(entries, key=lambda e: e["record"])] == [(2, "time"), (3, "impressions"), (4, "<record>")]
    assert "N6-x" in next(e["message"] for e in entries if e["record"] == 3)
