"""Adapters for the MIND news-recommendation dataset (Wu et al., ACL 2020).

* ``behaviors.tsv`` (impression id, user, time, click history, impressions ``Nxxx-1/0``) becomes
  home-feed events: one ``impression`` per listed candidate (position = its index), a ``click``
  for each ``-1``, and every history entry as an earlier ``click`` (MIND does not time history
  clicks: they are placed just before the user's first impression in the file, in order, and
  keyed by user and news id so that the history repeated on each impression line is stored once).
* ``news.tsv`` (id, category, subcategory, title, abstract, url, entities...) becomes documents
  with the gold topic ``category > subcategory``. MIND gives no publication time; documents get
  ``created_at`` = 2019-11-09T00:00Z (the start of MIND-small's logs) unless told otherwise.

Malformed lines are not raised: they come out as ``RawRecord`` with an ``error`` naming the
field, so that ingestion quarantines them and carries on.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from topicfeed.records import RawRecord

MIND_TIME = "%m/%d/%Y %I:%M:%S %p"
MIND_START = datetime(2019, 11, 9, tzinfo=UTC)
BEHAVIOR_COLUMNS = ("impression_id", "user_id", "time", "history", "impressions")
NEWS_COLUMNS = ("news_id", "category", "subcategory", "title", "abstract", "url", "title_entities", "abstract_entities")

csv.field_size_limit(2**31 - 1)


def _rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    with path.open(newline="", encoding="utf-8", errors="replace") as fh:
        for number, row in enumerate(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE), start=1):
            if row and any(c.strip() for c in row):
                yield number, row


def _parse_time(value: str) -> datetime:
    return datetime.strptime(value.strip(), MIND_TIME).replace(tzinfo=UTC)


def read_behaviors(path: str | Path) -> Iterator[RawRecord]:
    """Events from a MIND ``behaviors.tsv``; record numbers are the file's line numbers."""
    path = Path(path)
    parsed: list[tuple[int, list[str], datetime]] = []
    first_seen: dict[str, datetime] = {}
    for number, row in _rows(path):
        raw = "\t".join(row)
        if len(row) != len(BEHAVIOR_COLUMNS):
            yield RawRecord(number, {}, raw=raw, error=("<record>", f"expected {len(BEHAVIOR_COLUMNS)} tab-separated columns, got {len(row)}"))
            continue
        try:
            when = _parse_time(row[2])
        except ValueError:
            yield RawRecord(number, {}, raw=raw, error=("time", f"not a MIND time ({MIND_TIME}): {row[2]!r}"))
            continue
        parsed.append((number, row, when))
        user = row[1].strip()
        if user and (user not in first_seen or when < first_seen[user]):
            first_seen[user] = when

    for number, row, when in parsed:
        impression_id, user = row[0].strip(), row[1].strip()
        history = row[3].split()
        start = first_seen.get(user, when)
        for index, news_id in enumerate(history):
            yield RawRecord(
                number,
                {
                    "event_id": f"mind-h-{user}-{news_id}",
                    "user_id": user,
                    "domain": "homefeed",
                    "type": "click",
                    "item_id": news_id,
                    "ts": start - timedelta(seconds=len(history) - index),
                },
                raw={"line": number, "history_index": index, "news_id": news_id},
            )
        for position, cell in enumerate(row[4].split()):
            news_id, sep, label = cell.rpartition("-")
            if not sep or label not in ("0", "1") or not news_id:
                yield RawRecord(number, {}, raw={"line": number, "impression": cell}, error=("impressions", f"expected 'NewsId-0' or 'NewsId-1', got {cell!r}"))
                continue
            base = {"user_id": user, "domain": "homefeed", "item_id": news_id, "position": position, "ts": when}
            yield RawRecord(number, {"event_id": f"mind-{impression_id}-{position}-i", "type": "impression", **base}, raw={"line": number, "impression": cell})
            if label == "1":
                yield RawRecord(number, {"event_id": f"mind-{impression_id}-{position}-c", "type": "click", **base}, raw={"line": number, "impression": cell})


def read_news(path: str | Path, created_at: datetime = MIND_START) -> Iterator[RawRecord]:
    """Documents from a MIND ``news.tsv``; the gold topic is ``category > subcategory``."""
    for number, row in _rows(Path(path)):
        raw = "\t".join(row)
        if len(row) < 5:
            yield RawRecord(number, {}, raw=raw, error=("<record>", f"expected at least 5 tab-separated columns, got {len(row)}"))
            continue
        news_id, category, subcategory, title, abstract = (c.strip() for c in row[:5])
        if not category or not subcategory:
            field = "category" if not category else "subcategory"
            yield RawRecord(number, {}, raw=raw, error=(field, "MIND news needs a category and a subcategory"))
            continue
        yield RawRecord(
            number,
            {
                "doc_id": news_id,
                "title": title,
                "body": abstract,
                "source": "news",
                "created_at": created_at,
                "topics": [f"{category} > {subcategory}"],
            },
            raw=raw,
        )
