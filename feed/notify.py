"""Notification targeting: which users to tell about which new items, when, and why.

For each item (new since a time, or listed in a file) the targets are the users

* whose preference for the item's topics reaches ``notify.threshold``: the user's merged preference
  score (0..1, 0.5 = the domain's average rate) for each of the item's topics, averaged over the
  item's topics at each level by the item's own topic scores and over levels by ``feed.level_weights``;
* or whose recent search matches the item: a search of the last ``notify.intent_days`` (its refined
  query Q* where the refiner has run, else the query with a click) sharing ``intent_min_overlap``
  words with the item's title (all of them for shorter searches). Intent matches go first.

Then, best first, each user gets at most ``max_per_user_per_day`` notifications per local day (counting
what earlier runs already sent), never the same item twice (across runs), and nothing during quiet
hours in the user's time zone: a target that falls inside them is held until they end (``send_at``).
A run's list is written atomically to ``notifications/targets/<name>.parquet``; a rerun of the same
name replaces its own list and reads only the other runs' lists as history, so it writes the same.

``random_targets`` and ``popularity_targets`` are the baselines ``benchmarks/eval_notify.py`` compares
against on the simulator's ground truth.
"""

from __future__ import annotations

import csv
import json
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from scipy import sparse

from feed.catalog import Catalog, words
from intent.mining import lake_clicks
from intent.text import STOPWORDS, normalize
from topicfeed.lake import Lake, write_parquet_atomic
from topicfeed.settings import NotifySettings, Settings

TARGET_SCHEMA = pa.schema(
    [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("score", pa.float32(), nullable=False),
        pa.field("reason_kind", pa.string(), nullable=False),  # intent | topic
        pa.field("reason", pa.string(), nullable=False),
        pa.field("send_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("time_zone", pa.string(), nullable=False),
    ]
)


@dataclass(frozen=True)
class Target:
    user_id: str
    item_id: str
    score: float
    reason_kind: str
    reason: str
    send_at: datetime
    time_zone: str


@dataclass
class TargetRun:
    name: str
    targets: list[Target]
    path: Path | None
    items: int  # items considered
    unknown_items: list[str]  # asked for but not in the catalog
    candidates: int  # (user, item) pairs that matched, before caps and history
    held: int  # targets held past quiet hours
    capped: int  # matches dropped by the frequency cap
    repeats: int  # matches dropped because the user already had the item
    invalid_time_zones: int  # records of the time-zone file that were not used
    seconds: float = 0.0
    by_kind: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        kinds = ", ".join(f"{k}={v}" for k, v in sorted(self.by_kind.items()))
        users = len({t.user_id for t in self.targets})
        return (
            f"{len(self.targets)} targets ({kinds}) for {users} users over {self.items} items; {self.candidates} matches, "
            f"{self.capped} over the frequency cap, {self.repeats} repeats, {self.held} held past quiet hours"
            + (f", {len(self.unknown_items)} unknown items" if self.unknown_items else "")
            + (f", {self.invalid_time_zones} invalid time-zone records" if self.invalid_time_zones else "")
            + f" ({self.seconds:.1f}s)"
        )


# inputs ----------------------------------------------------------------------------------------


def new_items(settings: Settings, since: datetime, until: datetime) -> list[str]:
    """Documents of the lake created in [since, until)."""
    lake = Lake(settings.lake_dir)
    if not lake.exists("documents"):
        raise FileNotFoundError(f"no documents in the lake at {settings.lake_dir}: run `topicfeed ingest` first")
    rows = duckdb.connect().execute(
        f"select doc_id from {lake.scan('documents')} where created_at >= $since and created_at < $until order by created_at, doc_id",
        {"since": since, "until": until},
    ).fetchall()
    return list(dict.fromkeys(r[0] for r in rows))


def read_items(path: Path) -> list[str]:
    """Item ids from a file: one per line (text), JSON lines with ``item_id``/``doc_id``, or CSV/Parquet
    with an ``item_id`` column. A JSON line without an id is an error naming the line."""
    if path.suffix == ".parquet":
        table = pq.read_table(path)
        col = "item_id" if "item_id" in table.column_names else "doc_id"
        if col not in table.column_names:
            raise ValueError(f"{path}: no item_id column")
        return list(dict.fromkeys(str(x) for x in table.column(col).to_pylist() if x))
    out: list[str] = []
    with path.open() as f:
        if path.suffix == ".csv":
            for i, row in enumerate(csv.DictReader(f), start=2):
                item = (row.get("item_id") or row.get("doc_id") or "").strip()
                if not item:
                    raise ValueError(f"{path}: line {i}: field 'item_id' is empty")
                out.append(item)
        else:
            for i, line in enumerate(f, start=1):
                line = line.strip()
                if not line:
                    continue
                if line.startswith("{"):
                    rec = json.loads(line)
                    item = rec.get("item_id") or rec.get("doc_id")
                    if not isinstance(item, str) or not item:
                        raise ValueError(f"{path}: line {i}: field 'item_id' is missing or not a string")
                    out.append(item)
                else:
                    out.append(line)
    return list(dict.fromkeys(out))


def time_zones(settings: Settings) -> tuple[dict[str, ZoneInfo], int]:
    """user -> time zone from the time-zone file (when there is one), and the number of its records
    that were not used (no user id or an unknown zone name): those users get the default zone."""
    path = settings.time_zones_path
    if not path.is_file():
        return {}, 0
    if path.suffix == ".csv":
        with path.open() as f:
            rows = [(r.get("user_id"), r.get("time_zone")) for r in csv.DictReader(f)]
    else:
        t = pq.read_table(path, columns=["user_id", "time_zone"])
        rows = list(zip(t.column("user_id").to_pylist(), t.column("time_zone").to_pylist()))
    zones: dict[str, ZoneInfo] = {}
    cache: dict[str, ZoneInfo | None] = {}
    bad = 0
    for user, name in rows:
        if not user or not name:
            bad += 1
            continue
        if name not in cache:
            try:
                cache[name] = ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                cache[name] = None
        zone = cache[name]
        if zone is None:
            bad += 1
        else:
            zones[str(user)] = zone
    return zones, bad


def import_time_zones(settings: Settings, source: Path) -> Path:
    """Copy a time-zone table (``user_id, time_zone``) to where targeting reads it."""
    out = settings.time_zones_path
    out.parent.mkdir(parents=True, exist_ok=True)
    table = pq.read_table(source, columns=["user_id", "time_zone"])
    return write_parquet_atomic(table, out)


@dataclass
class Preferences:
    """Users' merged preferences as a sparse (users x catalog topics) matrix."""

    users: list[str]
    matrix: sparse.csr_matrix
    asof: datetime | None


def load_preferences(settings: Settings, catalog: Catalog, asof: datetime) -> Preferences:
    """The newest ``user_preferences`` table as of ``asof``, over the catalog's topic columns."""
    files = sorted((settings.features_dir / "user_preferences").glob("asof=*.parquet"))
    stamp = f"asof={asof.astimezone(UTC):%Y-%m-%dT%H%M%S}.parquet"
    files = [f for f in files if f.name <= stamp]
    n_topics = len(catalog.topic_paths)
    if not files:
        return Preferences([], sparse.csr_matrix((0, n_topics)), None)
    path = files[-1]
    levels = settings.preferences.levels
    cols = ["user_id"] + [f"merged_l{lv}_{part}" for lv in range(1, levels + 1) for part in ("topics", "scores")]
    table = pq.read_table(path, columns=cols)
    users = [str(u) for u in table.column("user_id").to_pylist()]
    rows: list[int] = []
    tcols: list[int] = []
    vals: list[float] = []
    column = catalog.topic_column
    for lv in range(1, levels + 1):
        topics = table.column(f"merged_l{lv}_topics").to_pylist()
        scores = table.column(f"merged_l{lv}_scores").to_pylist()
        for r, (ts, ss) in enumerate(zip(topics, scores)):
            for t, s in zip(ts or (), ss or ()):
                j = column.get(t)
                if j is not None:
                    rows.append(r)
                    tcols.append(j)
                    vals.append(float(s))
    m = sparse.csr_matrix((np.array(vals), (np.array(rows, np.int64), np.array(tcols, np.int64))), shape=(len(users), n_topics))
    return Preferences(users, m, datetime.strptime(path.stem[len("asof=") :], "%Y-%m-%dT%H%M%S").replace(tzinfo=UTC))


def item_topic_weights(catalog: Catalog, items: np.ndarray, level_weights: Sequence[float]) -> sparse.csr_matrix:
    """(items x topics): per item, its topic scores normalised to sum 1 within each level, times the
    level's weight over the summed weights of the levels the item has: ``prefs @ this.T`` is the
    level-weighted average preference for the item's topics (0..1)."""
    m = catalog.topic_matrix[items].tocoo()
    level = catalog.topic_levels[m.col]
    keep = level <= len(level_weights)
    row, col, val, level = m.row[keep], m.col[keep], m.data[keep], level[keep]
    key = row * 16 + level
    level_sum = np.bincount(key, weights=val, minlength=(len(items) + 1) * 16)
    share = val / np.where(level_sum[key] > 0, level_sum[key], 1.0)
    lw = np.asarray(level_weights, dtype=np.float64)[level - 1]
    present = np.zeros((len(items), len(level_weights)))
    present[row, level - 1] = 1.0
    norm = (present * np.asarray(level_weights)[None, :]).sum(axis=1)
    w = share * lw / np.where(norm[row] > 0, norm[row], 1.0)
    return sparse.csr_matrix((w, (row, col)), shape=(len(items), catalog.topic_matrix.shape[1]))


@dataclass(frozen=True)
class Search:
    text: str  # Q* where refined, else Q
    ts: datetime
    refined: bool


def recent_searches(settings: Settings, since: datetime, until: datetime) -> dict[str, list[Search]]:
    """user -> recent searches with a click in [since, until): the refined query where a
    ``refined_searches`` window file has it, else the raw query. Newest first."""
    out: dict[str, dict[str, Search]] = defaultdict(dict)
    refined_of: dict[tuple[str, str], str] = {}
    folder = settings.features_dir / "refined_searches"
    files = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
    if files:
        got = duckdb.connect().execute(
            f"select user_id, query, refined_query, t from (select *, cast(ts as timestamptz) as t from read_parquet({[str(f) for f in files]!r})) where t >= $since and t < $until",
            {"since": since, "until": until},
        ).fetchall()
        for user, query, refined, ts in got:
            refined_of[(user, normalize(query))] = refined
            search = Search(refined, ts.astimezone(UTC) if ts.tzinfo else ts.replace(tzinfo=UTC), True)
            prev = out[user].get(refined)
            if prev is None or prev.ts < search.ts:
                out[user][refined] = search
    try:
        clicks = lake_clicks(settings, since, until)
    except FileNotFoundError:
        clicks = []
    for c in clicks:
        key = (c.user_id, normalize(c.query))
        if key in refined_of or c.ts is None:
            continue
        ts = c.ts.astimezone(UTC) if c.ts.tzinfo else c.ts.replace(tzinfo=UTC)
        prev = out[c.user_id].get(c.query)
        if prev is None or prev.ts < ts:
            out[c.user_id][c.query] = Search(c.query, ts, False)
    return {u: sorted(s.values(), key=lambda x: x.ts, reverse=True) for u, s in out.items()}


# when ------------------------------------------------------------------------------------------


def is_quiet(hour: int, cfg: NotifySettings) -> bool:
    start, end = cfg.quiet_start_hour, cfg.quiet_end_hour
    if start == end:
        return False
    return (hour >= start or hour < end) if start > end else (start <= hour < end)


def send_time(now: datetime, zone: ZoneInfo, cfg: NotifySettings) -> datetime:
    """``now``, or the end of the quiet hours it falls in (the user's local time), in UTC."""
    local = now.astimezone(zone)
    if not is_quiet(local.hour, cfg):
        return now.astimezone(UTC)
    day = local.date()
    if cfg.quiet_start_hour > cfg.quiet_end_hour and local.hour >= cfg.quiet_start_hour:
        day += timedelta(days=1)
    # fold/gap safe: build the local wall time, then normalise through UTC
    return datetime.combine(day, dtime(cfg.quiet_end_hour), tzinfo=zone).astimezone(UTC)


# history ---------------------------------------------------------------------------------------


def targets_dir(settings: Settings) -> Path:
    return settings.notifications_dir / "targets"


def history(settings: Settings, exclude: str | None = None) -> tuple[set[tuple[str, str]], dict[tuple[str, date], int]]:
    """(user, item) pairs of every earlier run's list, and notifications per (user, local send day);
    the run named ``exclude`` (the one being rerun) is left out."""
    folder = targets_dir(settings)
    files = [f for f in sorted(folder.glob("*.parquet")) if f.stem != exclude] if folder.is_dir() else []
    sent: set[tuple[str, str]] = set()
    per_day: dict[tuple[str, date], int] = defaultdict(int)
    for f in files:
        t = pq.read_table(f, columns=["user_id", "item_id", "send_at", "time_zone"])
        for user, item, at, zone in zip(*(t.column(c).to_pylist() for c in ("user_id", "item_id", "send_at", "time_zone"))):
            sent.add((user, item))
            per_day[(user, at.astimezone(ZoneInfo(zone)).date())] += 1
    return sent, per_day


# targeting -------------------------------------------------------------------------------------


def match(
    catalog: Catalog,
    items: np.ndarray,
    prefs: Preferences,
    searches: dict[str, list[Search]],
    settings: Settings,
) -> list[tuple[float, str, int, str, str]]:
    """Every (score, user, item index, kind, reason) that passes: intent matches (score 1 + the
    shared words' share) and preference matches (score = the preference, 0..1)."""
    cfg = settings.notify
    found: dict[tuple[str, int], tuple[float, str, int, str, str]] = {}
    title_words = {int(i): set(words(catalog.titles[int(i)])) for i in items}
    postings: dict[str, list[int]] = defaultdict(list)
    for i, ws in title_words.items():
        for w in ws:
            postings[w].append(i)
    for user, recent in searches.items():
        for s in recent:
            q = {w for w in words(s.text) if w not in STOPWORDS}
            shared: dict[int, int] = defaultdict(int)
            for w in q:
                for i in postings.get(w, ()):
                    shared[i] += 1
            for i, n in shared.items():
                if n >= min(len(q), cfg.intent_min_overlap) and (user, i) not in found:
                    found[(user, i)] = (1.0 + n / len(q), user, i, "intent", f"because you searched '{s.text}'")
    if prefs.users and len(items):
        for lo in range(0, len(items), 256):
            chunk = items[lo : lo + 256]
            w = item_topic_weights(catalog, chunk, settings.feed.level_weights)
            aff = (prefs.matrix @ w.T).toarray()  # users x chunk
            for c in range(len(chunk)):
                col = aff[:, c]
                hit = np.flatnonzero(col >= cfg.threshold)
                if len(hit) > cfg.max_users_per_item:
                    hit = hit[np.argsort(-col[hit], kind="stable")[: cfg.max_users_per_item]]
                if not len(hit):
                    continue
                i = int(chunk[c])
                best = catalog.best_topics(np.array([i]), np.ones(len(catalog.topic_paths)))[0]
                where = catalog.topic_readable[best] if best is not None else "a topic you follow"
                for u in hit.tolist():
                    key = (prefs.users[u], i)
                    if key not in found:
                        found[key] = (float(col[u]), prefs.users[u], i, "topic", f"new in {where}, one of your interests")
    return list(found.values())


def select(
    matches: Iterable[tuple[float, str, int, str, str]],
    catalog: Catalog,
    now: datetime,
    zones: dict[str, ZoneInfo],
    cfg: NotifySettings,
    sent: set[tuple[str, str]],
    per_day: dict[tuple[str, date], int],
) -> tuple[list[Target], int, int, int]:
    """Best first (intent before topic), apply no-repeat and the per-day cap: (targets, capped,
    repeats, held)."""
    default = ZoneInfo(cfg.default_time_zone)
    counts = defaultdict(int, per_day)
    out: list[Target] = []
    capped = repeats = held = 0
    for score, user, i, kind, reason in sorted(matches, key=lambda m: (-m[0], m[1], catalog.ids[m[2]])):
        item = catalog.ids[i]
        if (user, item) in sent:
            repeats += 1
            continue
        zone = zones.get(user, default)
        at = send_time(now, zone, cfg)
        day = at.astimezone(zone).date()
        if counts[(user, day)] >= cfg.max_per_user_per_day:
            capped += 1
            continue
        counts[(user, day)] += 1
        held += at > now
        out.append(Target(user, item, round(score, 4), kind, reason, at, zone.key))
    return out, capped, repeats, held


def write_targets(settings: Settings, name: str, targets: Sequence[Target]) -> Path:
    """The run's list, replaced atomically (a reader never sees half a file)."""
    folder = targets_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.parquet"
    table = pa.table(
        {
            "user_id": [t.user_id for t in targets],
            "item_id": [t.item_id for t in targets],
            "score": pa.array([t.score for t in targets], pa.float32()),
            "reason_kind": [t.reason_kind for t in targets],
            "reason": [t.reason for t in targets],
            "send_at": pa.array([t.send_at for t in targets], pa.timestamp("us", tz="UTC")),
            "time_zone": [t.time_zone for t in targets],
        },
        schema=TARGET_SCHEMA,
    )
    return write_parquet_atomic(table, path)


def run_targeting(
    settings: Settings,
    now: datetime,
    items: Sequence[str],
    name: str | None = None,
    catalog: Catalog | None = None,
    write: bool = True,
    with_history: bool = True,
) -> TargetRun:
    """Targets for ``items`` as of ``now`` (module docstring); ``name`` names the run's list;
    ``with_history=False`` ignores earlier runs' lists (an evaluation from a clean slate)."""
    t0 = time.perf_counter()
    now = now.astimezone(UTC)
    name = name or f"{now:%Y%m%dT%H%M%S}"
    catalog = catalog or Catalog.load(settings, asof=now)
    index = [catalog.index.get(i) for i in items]
    unknown = [i for i, j in zip(items, index) if j is None]
    known = np.array(sorted({j for j in index if j is not None}), dtype=np.int64)
    prefs = load_preferences(settings, catalog, now)
    searches = recent_searches(settings, now - timedelta(days=settings.notify.intent_days), now)
    zones, bad = time_zones(settings)
    matches = match(catalog, known, prefs, searches, settings)
    sent, per_day = history(settings, exclude=name) if with_history else (set(), {})
    targets, capped, repeats, held = select(matches, catalog, now, zones, settings.notify, sent, per_day)
    path = write_targets(settings, name, targets) if write else None
    kinds: dict[str, int] = defaultdict(int)
    for t in targets:
        kinds[t.reason_kind] += 1
    return TargetRun(name, targets, path, len(known), unknown, len(matches), held, capped, repeats, bad, time.perf_counter() - t0, dict(kinds))


# baselines -------------------------------------------------------------------------------------


def random_targets(users: Sequence[str], items: Sequence[str], n: int, per_user: int, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` distinct (user, item) pairs drawn at random, at most ``per_user`` per user."""
    rng = np.random.default_rng(seed)
    out: set[tuple[str, str]] = set()
    count: dict[str, int] = defaultdict(int)
    limit = min(n, len(users) * min(per_user, len(items)))
    while len(out) < limit:
        u = users[int(rng.integers(len(users)))]
        i = items[int(rng.integers(len(items)))]
        if count[u] < per_user and (u, i) not in out:
            out.add((u, i))
            count[u] += 1
    return sorted(out)


def popularity_targets(users: Sequence[str], items_by_popularity: Sequence[str], n: int, per_user: int, seed: int = 0) -> list[tuple[str, str]]:
    """The most popular items first, each sent to users in a random order (a broadcast of what is
    popular), ``per_user`` at most per user, until ``n`` pairs."""
    rng = np.random.default_rng(seed)
    out: list[tuple[str, str]] = []
    count: dict[str, int] = defaultdict(int)
    for item in items_by_popularity:
        for j in rng.permutation(len(users)).tolist():
            if len(out) >= n:
                return out
            u = users[j]
            if count[u] < per_user:
                out.append((u, item))
                count[u] += 1
    return out
