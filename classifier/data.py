"""Documents for the classifier: read any document source, keep bad records aside, split train/dev."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from topicfeed.ingest import Quarantine, RawRecord, read_source, validate
from topicfeed.taxonomy import Taxonomy, join_path, split_path


@dataclass(frozen=True)
class Doc:
    """A document as the classifier sees it; ``topics`` are taxonomy paths, the first one the main topic."""

    doc_id: str
    title: str
    body: str = ""
    topics: tuple[str, ...] = ()
    weights: tuple[float, ...] = ()  # per-topic training weights (a teacher's soft targets); empty: 1 each

    def __post_init__(self) -> None:
        if self.weights and (len(self.weights) != len(self.topics) or any(not w >= 0 for w in self.weights)):
            raise ValueError(f"document {self.doc_id!r}: field 'weights' needs one weight >= 0 per topic, got {self.weights!r} for {len(self.topics)} topics")

    @property
    def text(self) -> str:
        title = self.title.strip()
        body = self.body.strip()
        if not body:
            return title
        return f"{title}. {body}" if title and title[-1] not in ".?!:" else f"{title} {body}"

    @property
    def topic(self) -> str:
        return self.topics[0]


@dataclass
class LoadReport:
    docs: list[Doc]
    read: int = 0
    quarantined: int = 0
    quarantine_path: Path | None = None
    problems: list[str] = field(default_factory=list)  # the first few, for the console


def _canonical(path: str, taxonomy: Taxonomy) -> str | None:
    parts = split_path(path)
    if parts in taxonomy:
        return taxonomy.node(parts).path
    # MIND and other sources spell names in their own case; accept a case-insensitive unique match
    lowered = tuple(p.lower() for p in parts)
    matches = [n.path for n in taxonomy if tuple(p.lower() for p in n.parts) == lowered]
    return matches[0] if len(matches) == 1 else None


def load_documents(
    path: str | Path, taxonomy: Taxonomy | None, quarantine_dir: Path, *, require_topics: bool = True, keep_problems: int = 5
) -> LoadReport:
    """Documents from JSONL / CSV / Parquet / MIND ``news.tsv``.

    A record that is not a valid document, or (when ``taxonomy`` is given) whose topics are not taxonomy
    paths, goes to the quarantine with its record number and field; everything valid is returned.
    """
    path = Path(path)
    report = LoadReport(docs=[])
    quarantine = Quarantine(quarantine_dir, "classifier-documents", str(path))

    def reject(record, problems: list[dict[str, str]]) -> None:
        quarantine.add(record, problems)
        if len(report.problems) < keep_problems:
            p = problems[0]
            report.problems.append(f"record {record.number} of {path.name}: field '{p['field']}': {p['message']}")

    def accept(row: dict, record: RawRecord) -> None:
        topics = tuple(row.get("topics") or ())
        if taxonomy is not None and topics:
            canon = []
            for i, t in enumerate(topics):
                c = _canonical(t, taxonomy)
                if c is None:
                    reject(record, [{"field": f"topics.{i}", "message": f"{t!r} is not a path of the taxonomy {taxonomy.name!r}"}])
                    return
                canon.append(c)
            topics = tuple(dict.fromkeys(canon))
        if require_topics and not topics:
            reject(record, [{"field": "topics", "message": "a training document needs at least one topic"}])
            return
        report.docs.append(Doc(str(row["doc_id"]), row["title"], row.get("body") or "", topics))

    try:
        for record in read_source("documents", path):
            report.read += 1
            row, problems = validate("documents", record)
            if row is None:
                reject(record, problems)
            else:
                accept(row, record)
    finally:
        quarantine.close()
    report.quarantined = quarantine.count
    report.quarantine_path = quarantine.path if quarantine.count else None
    return report


def split(docs: Sequence[Doc], dev_fraction: float, seed: int) -> tuple[list[Doc], list[Doc]]:
    """A dev split stratified by main topic (each topic with two or more docs keeps one in train)."""
    if not 0 <= dev_fraction < 1:
        raise ValueError(f"dev_fraction must be in [0, 1), got {dev_fraction}")
    rng = random.Random(seed)
    by_topic: dict[str, list[Doc]] = defaultdict(list)
    for d in docs:
        by_topic[d.topic].append(d)
    train: list[Doc] = []
    dev: list[Doc] = []
    for topic in sorted(by_topic):
        group = by_topic[topic][:]
        rng.shuffle(group)
        n_dev = round(len(group) * dev_fraction)
        n_dev = min(n_dev, len(group) - 1)
        dev.extend(group[:n_dev])
        train.extend(group[n_dev:])
    rng.shuffle(train)
    rng.shuffle(dev)
    return train, dev


def level_path(path: str, level: int) -> str | None:
    """The ancestor of ``path`` at ``level`` (1-based), or None when ``path`` is shallower."""
    parts = split_path(path)
    return join_path(parts[:level]) if len(parts) >= level else None
