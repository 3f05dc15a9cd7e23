"""Our synthetic world with ground truth: ``topicfeed simulate``.

Writes, under the output folder,

* ``documents.parquet`` and ``events.parquet`` (or ``.jsonl``): records of our schemas, ready for
  ``topicfeed ingest``;
* ``ground_truth/users.parquet`` (segment and true activity of every user) and
  ``ground_truth/interests.parquet`` (each user's true interest weight per taxonomy node and level,
  with the days it held), kept apart from what is ingested;
* ``time_zones.parquet``: each user's time zone (``user_id, time_zone``), account data a platform
  holds (``topicfeed notify`` reads it for quiet hours);
* ``manifest.json``: parameters, counts, measured shares and click-through rates, timings.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from topicfeed.schemas import DOCUMENT_SCHEMA, DOMAINS, EVENT_SCHEMA
from topicfeed.settings import Settings
from topicfeed.simulator.environment import ClickEnvironment
from topicfeed.simulator.logs import CLICK, IMPRESSION, SEARCH_EVENT, TYPES, LogSimulator, Snapshot
from topicfeed.simulator.world import World
from topicfeed.taxonomy import Taxonomy

OutputFormat = Literal["parquet", "jsonl"]


@dataclass
class SimulationResult:
    out_dir: Path
    files: dict[str, Path]
    stats: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    environment: ClickEnvironment | None = field(default=None, repr=False)  # the world's click model, for replays


def simulate(settings: Settings, out_dir: str | Path, fmt: OutputFormat = "parquet", taxonomy: Taxonomy | None = None) -> SimulationResult:
    cfg = settings.simulator
    if cfg.start is None:
        cfg = cfg.model_copy(update={"start": datetime.now(UTC).date() - timedelta(days=cfg.days)})
    out = Path(out_dir)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    taxonomy = taxonomy or Taxonomy.load(settings.taxonomy_path)
    world = World(taxonomy, cfg, np.random.default_rng(cfg.seed))
    timings["world_s"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    logs = LogSimulator(world)
    columns, snapshots = logs.run()
    cols = columns.concat()
    order = np.argsort(cols["ts"], kind="stable")
    cols = {k: v[order] for k, v in cols.items()}
    timings["logs_s"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    events = events_table(world, cols, columns.queries)
    documents = documents_table(world)
    users = users_table(world)
    interests = interests_table(world, snapshots)
    stats = measure(world, cols)
    timings["tables_s"] = time.perf_counter() - t2

    t3 = time.perf_counter()
    (out / "ground_truth").mkdir(parents=True, exist_ok=True)
    files = {
        "documents": write_table(documents, out / f"documents.{fmt}", fmt),
        "events": write_table(events, out / f"events.{fmt}", fmt),
        "users": write_table(users, out / "ground_truth" / "users.parquet", "parquet"),
        "interests": write_table(interests, out / "ground_truth" / "interests.parquet", "parquet"),
        "time_zones": write_table(time_zones_table(world), out / "time_zones.parquet", "parquet"),
    }
    timings["write_s"] = time.perf_counter() - t3
    timings["total_s"] = time.perf_counter() - t0
    manifest = {
        "parameters": json.loads(cfg.model_dump_json()),
        "taxonomy": {"name": taxonomy.name, "nodes": len(taxonomy), "depth": taxonomy.depth},
        "files": {k: str(v.relative_to(out)) for k, v in files.items()},
        "stats": stats,
        "timings": {k: round(v, 3) for k, v in timings.items()},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return SimulationResult(out, files, stats, timings, environment=ClickEnvironment(logs))


# tables ------------------------------------------------------------------------------------
def _take(values: list[str] | np.ndarray, index: np.ndarray) -> pa.Array:
    """Strings by index, null where the index is -1 (done in Arrow, not in Python)."""
    dictionary = pa.array(list(values), type=pa.string())
    return dictionary.take(pa.array(index.astype(np.int64), mask=index < 0))


def events_table(world: World, cols: dict[str, np.ndarray], queries: list[str]) -> pa.Table:
    n = len(cols["ts"])
    serial = pc.utf8_lpad(pa.array(np.arange(n)).cast(pa.string()), width=10, padding="0")
    event_id = pc.binary_join_element_wise(f"{world.prefix}-e", serial, "")
    position = pa.array(cols["position"].astype(np.int32), mask=cols["position"] < 0)
    return pa.table(
        [
            event_id,
            _take(world.users.user_id, cols["user"]),
            _take(list(DOMAINS), cols["domain"]),
            _take(list(TYPES), cols["type"]),
            _take(world.docs.doc_id, cols["doc"]),
            _take(queries, cols["query"]),
            position,
            pa.array(cols["ts"], type=pa.timestamp("us", tz="UTC")),
            pa.nulls(n, pa.string()),
            pa.nulls(n, pa.string()),
        ],
        schema=EVENT_SCHEMA,
    )


def documents_table(world: World) -> pa.Table:
    docs, tax = world.docs, world.geo.taxonomy
    paths = np.array(tax.paths(), dtype=object)
    topics = [[paths[t] for t in row if t >= 0] for row in docs.topics]
    partner = [f"partner-{p}" if p >= 0 else None for p in docs.partner]
    return pa.table(
        {
            "doc_id": pa.array(docs.doc_id, pa.string()),
            "title": pa.array(docs.title, pa.string()),
            "body": pa.array(docs.body, pa.string()),
            "source": pa.array(docs.source, pa.string()),
            "created_at": pa.array(docs.created_us, pa.timestamp("us", tz="UTC")),
            "partner": pa.array(partner, pa.string()),
            "topics": pa.array(topics, pa.list_(pa.string())),
        },
        schema=DOCUMENT_SCHEMA,
    )


def users_table(world: World) -> pa.Table:
    u = world.users
    return pa.table(
        {
            "user_id": pa.array(u.user_id, pa.string()),
            "segment": np.where(u.light, "light", "heavy"),
            "uses_search": u.uses_search,
            "uses_main": u.uses_main,
            "feed_sessions_per_day": u.feed_rate,
            "search_sessions_per_day": u.search_rate,
            "main_sessions_per_day": u.main_rate,
        }
    )


# where the simulated users live, with rough weights (a platform with users on several continents)
TIME_ZONES = (
    ("America/New_York", 0.25),
    ("America/Los_Angeles", 0.15),
    ("Europe/London", 0.15),
    ("Europe/Berlin", 0.15),
    ("Asia/Seoul", 0.15),
    ("Asia/Tokyo", 0.1),
    ("Australia/Sydney", 0.05),
)


def time_zones_table(world: World) -> pa.Table:
    """Each user's time zone, drawn from ``TIME_ZONES`` by a hash of the user id (apart from the
    world's random stream, so that adding it changed no other output)."""
    ids = [str(u) for u in world.users.user_id]
    names = [z for z, _ in TIME_ZONES]
    edges = np.cumsum([w for _, w in TIME_ZONES])
    digest = np.array([int.from_bytes(hashlib.blake2b(u.encode(), digest_size=8).digest(), "big") for u in ids], dtype=np.uint64)
    unit = (digest >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    pick = np.minimum(np.searchsorted(edges / edges[-1], unit, side="right"), len(names) - 1)
    return pa.table({"user_id": pa.array(ids, pa.string()), "time_zone": pa.array([names[i] for i in pick], pa.string())})


def interests_table(world: World, snapshots: list[Snapshot]) -> pa.Table:
    """True interest weights per user, level and node, over day intervals; each level sums to 1.

    A broad interest (say in a tier-1 topic) counts fully for its own level and its ancestors,
    and is spread evenly over its descendants at deeper levels.
    """
    geo, tax, cfg = world.geo, world.geo.taxonomy, world.cfg
    parts = []
    for snap in snapshots:
        m, k = snap.interests.shape
        keep = (snap.interests >= 0).ravel() & (np.repeat(snap.start, k) < snap.end)
        parts.append(
            pd.DataFrame(
                {
                    "user": np.repeat(snap.users, k)[keep],
                    "start": np.repeat(snap.start, k)[keep],
                    "end": snap.end,
                    "node": snap.interests.ravel()[keep],
                    "weight": snap.weights.ravel()[keep],
                }
            )
        )
    long = pd.concat(parts, ignore_index=True)
    spread = []
    for node in tax:
        for level in range(1, tax.depth + 1):
            if node.level >= level:
                spread.append((node.id, level, int(geo.ancestor[node.id, level - 1]), 1.0))
            else:
                below = [d for d in _descendants(tax, node.id) if tax.nodes[d].level == level]
                spread.extend((node.id, level, d, 1.0 / len(below)) for d in below)
    contrib = pd.DataFrame(spread, columns=["node", "level", "topic", "frac"])
    df = long.merge(contrib, on="node")
    df["weight"] *= df["frac"]
    df = df.groupby(["user", "start", "end", "level", "topic"], as_index=False)["weight"].sum()
    df["weight"] /= df.groupby(["user", "start", "end", "level"])["weight"].transform("sum")
    paths = np.array(tax.paths(), dtype=object)
    return pa.table(
        {
            "user_id": pa.array(world.users.user_id[df["user"].to_numpy()], pa.string()),
            "valid_from": pa.array([cfg.start + timedelta(days=int(d)) for d in range(cfg.days + 1)]).take(pa.array(df["start"].to_numpy())),
            "valid_to": pa.array([cfg.start + timedelta(days=int(d)) for d in range(cfg.days + 1)]).take(pa.array(df["end"].to_numpy())),
            "level": pa.array(df["level"].to_numpy(np.int8)),
            "topic": pa.array(paths[df["topic"].to_numpy()], pa.string()),
            "weight": pa.array(df["weight"].to_numpy(np.float32)),
        }
    )


def _descendants(tax: Taxonomy, node_id: int) -> list[int]:
    out, stack = [], list(tax.children(node_id))
    while stack:
        n = stack.pop()
        out.append(n)
        stack.extend(tax.children(n))
    return out


# measurements ------------------------------------------------------------------------------
def measure(world: World, cols: dict[str, np.ndarray]) -> dict[str, Any]:
    """Counts, click-through rates per surface and the realised population shares."""
    users = world.users
    n_users = len(users.user_id)
    stats: dict[str, Any] = {"users": n_users, "documents": len(world.docs), "events": int(len(cols["ts"]))}
    stats["events_by_type"] = {t: int((cols["type"] == i).sum()) for i, t in enumerate(TYPES)}
    ctr = {}
    for i, d in enumerate(DOMAINS):
        imp = int(((cols["domain"] == i) & (cols["type"] == IMPRESSION)).sum())
        clk = int(((cols["domain"] == i) & (cols["type"] == CLICK)).sum())
        ctr[d] = round(clk / imp, 4) if imp else None
    stats["ctr"] = ctr
    searched = np.zeros(n_users, dtype=bool)
    searched[cols["user"][cols["type"] == SEARCH_EVENT]] = True
    on_main = np.zeros(n_users, dtype=bool)
    on_main[cols["user"][cols["domain"] == 2]] = True
    light = users.light
    stats["shares"] = {
        "light_of_homefeed_users": round(float(light.mean()), 4),
        "light_users_who_search": round(float(searched[light].mean()), 4) if light.any() else None,
        "light_users_on_main": round(float(on_main[light].mean()), 4) if light.any() else None,
    }
    stats["partner_documents"] = int((world.docs.partner >= 0).sum())
    stats["multi_topic_documents"] = int(((world.docs.topics >= 0).sum(axis=1) > 1).sum())
    return stats


def write_table(table: pa.Table, path: Path, fmt: OutputFormat) -> Path:
    if fmt == "parquet":
        pq.write_table(table, path, compression="zstd")
        return path
    with path.open("w", encoding="utf-8") as fh:
        for batch in table.to_batches(max_chunksize=50_000):
            for row in batch.to_pylist():
                fh.write(json.dumps(row, default=_iso) + "\n")
    return path


def _iso(value: object) -> str:
    if hasattr(value, "isoformat"):
        return value.isoformat()  # type: ignore[no-any-return]
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
