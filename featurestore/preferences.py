"""Time-decayed, smoothed, cross-domain topic preferences per user and taxonomy level.

All of it is SQL run by DuckDB over the Parquet lake, so the same statements can move to a
distributed SQL engine. The formulas, with a worked example, are in ``docs/preferences.md``:

* every event gets the weight ``w = 0.5 ** (age_days / half_life_days)``;
* an item's topics (path, level, score) expand to every level: a click on a
  ``Travel > Abroad > Asia`` item counts for ``Travel``, ``Travel > Abroad`` and the leaf;
* per user, domain, level and topic: ``C`` = decayed clicks x topic score; ``E`` (exposure) =
  decayed impressions x topic score on the home feed and the main page, and the user's decayed
  number of searches in search (there the user, not the platform, picks the topic);
* smoothing toward the topic's population rate ``p = sum C / sum E`` with the topic's mean
  exposure per user ``a`` as prior strength (in search over all searchers, since each of them
  could have searched the topic): ``r = (C + a p) / (E + a)``;
* the score ``r / (r + R)`` with ``R`` the domain's average rate at that level lies in 0..1,
  0.5 meaning "at the domain's average rate"; it ranks a user's topics by ``r`` and makes
  domains comparable (clicks per search and clicks per impression differ in scale);
* merge: ``f = F / (F + feed_pivot)`` from the user's decayed home-feed impressions ``F``; weights
  ``f`` (home feed), ``(1 - f) * search_weight``, ``(1 - f) * main_weight`` for the domains the user
  is active in; ``merged = sum_d w_d score_d / sum_d w_d``, a topic absent from a domain counting
  0 there. ``feed_pivot`` = 500 and ``main_weight`` = 0.1 were chosen by measurement
  (``benchmarks/eval_preferences.py``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa

from topicfeed.lake import Lake, parquet_scan, write_parquet_atomic
from topicfeed.schemas import DOMAINS
from topicfeed.settings import Settings

# an event's time-decay weight as of $asof (``w = 0.5 ** (age_days / half_life_days)``)
DECAY_SQL = "pow(0.5, (epoch($asof) - epoch(ts)) / 86400.0 / $half_life)"
PROFILE_DOMAINS = ("merged", *DOMAINS)


@dataclass
class PreferenceRun:
    asof: datetime
    users: int
    rows: int
    path: Path | None
    timings: dict[str, float] = field(default_factory=dict)
    long: pa.Table | None = field(default=None, repr=False)  # the ranked rows behind the file


def connect(memory_limit: str = "3GB", threads: int = 2) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(f"set memory_limit = '{memory_limit}'; set threads = {threads}; set preserve_insertion_order = false")
    return con


def item_topics_from_documents(settings: Settings, con: duckdb.DuckDBPyConnection | None = None) -> pa.Table:
    """Item topics from the documents' gold topics (score 1), expanded to every level.

    The default item topics of the main job; ``classifier.items`` writes the classifier's instead, with
    the same columns: ``item_id, topic, level, score``.
    """
    con = con or connect()
    lake = Lake(settings.lake_dir)
    if not lake.exists("documents"):
        return pa.table({"item_id": pa.array([], pa.string()), "topic": pa.array([], pa.string()), "level": pa.array([], pa.int32()), "score": pa.array([], pa.float32())})
    return con.sql(
        f"""
        with t as (
            select doc_id as item_id, string_split(unnest(topics), ' > ') as parts
            from {lake.scan('documents')} where topics is not null
        ), lv as (select * from t, range(1, {settings.preferences.levels} + 1) r(level) where len(parts) >= level)
        select item_id, array_to_string(list_slice(parts, 1, level), ' > ') as topic, level::int as level, max(1.0)::float as score
        from lv group by all
        """
    ).to_arrow_table()


def compute_preferences(
    settings: Settings,
    asof: datetime,
    *,
    item_topics: pa.Table | None = None,
    events_glob: str | None = None,
    con: duckdb.DuckDBPyConnection | None = None,
) -> pa.Table:
    """Ranked preferences, long form: ``user_id, domain, level, topic, score, rank`` (domain
    ``merged`` included), top-k per (user, domain, level), for events in ``[asof - window, asof)``.

    Topics travel as integer ids through the aggregation and are named only for the kept rows.
    """
    cfg = settings.preferences
    con = con or connect()
    asof = asof.astimezone(UTC)
    start = asof - timedelta(days=cfg.window_days)
    glob = events_glob or Lake(settings.lake_dir).glob("events")
    con.register("item_topics_named", item_topics if item_topics is not None else item_topics_from_documents(settings, con))
    con.execute(
        """
        create or replace temp table topic_names as
        select topic, (row_number() over (order by topic))::int as topic_id from (select distinct topic from item_topics_named);
        create or replace temp table item_topics as
        select t.item_id, t.level, n.topic_id, t.score from item_topics_named t join topic_names n using (topic);
        """
    )
    con.execute(
        f"""
        create or replace temp table ev as
        select user_id, domain, type, item_id,
               {DECAY_SQL} as w
        from {parquet_scan(glob)}
        where ts >= $start and ts < $asof
        """,
        {"asof": asof, "start": start, "half_life": settings.half_life_days},
    )
    con.execute(
        """
        create or replace temp table activity as
        select user_id,
               coalesce(sum(w) filter (where domain = 'homefeed' and type = 'impression'), 0) as feed_n,
               coalesce(sum(w) filter (where type = 'search'), 0) as search_n,
               bool_or(domain = 'homefeed') as feed_active,
               bool_or(domain = 'search') as search_active,
               bool_or(domain = 'main') as main_active
        from ev group by user_id
        """
    )
    con.execute(
        """
        create or replace temp table exposed as
        with c as (
            select e.user_id, e.domain, t.level, t.topic_id,
                   sum(e.w * t.score * (e.type = 'click')::int) as clicks,
                   sum(e.w * t.score * (e.type = 'impression')::int) as impressions
            from ev e join item_topics t on e.item_id = t.item_id
            where e.type in ('click', 'impression')
            group by all
        )
        select c.user_id, c.domain, c.level, c.topic_id, c.clicks,
               case when c.domain = 'search' then greatest(a.search_n, c.clicks)
                    else greatest(c.impressions, c.clicks) end as exposure
        from c join activity a using (user_id)
        """
    )
    weights = f"""
        select user_id,
               case when feed_active then f else 0 end as w_homefeed,
               case when search_active then (1 - f) * {cfg.search_weight} else 0 end as w_search,
               case when main_active then (1 - f) * {cfg.main_weight} else 0 end as w_main
        from (select *, case when {cfg.feed_pivot} = 0 then 1.0 else feed_n / (feed_n + {cfg.feed_pivot}) end as f from activity)
    """
    return con.sql(
        f"""
        with searchers as (
            select sum(search_n) as n, avg(search_n) as a from activity where search_n > 0
        ), priors as (
            -- home feed and main page: the platform chose what to show, so the rate is per impression
            select domain, level, topic_id, sum(clicks) as c, sum(exposure) as e, avg(exposure) as a
            from exposed where domain <> 'search' group by all
            union all
            -- search: every searcher could have searched the topic, so the rate is per search of all searchers
            select domain, level, topic_id, sum(clicks) as c, any_value(searchers.n) as e, any_value(searchers.a) as a
            from exposed, searchers where domain = 'search' group by domain, level, topic_id
        ), domain_rate as (
            select domain, level, sum(c) / (case when domain = 'search' then any_value(e) else sum(e) end) as rate
            from priors group by domain, level
        ), scored as (
            select x.user_id, x.domain, x.level, x.topic_id, x.exposure,
                   case when d.rate = 0 then 0.5 else x.r / (x.r + d.rate) end as score
            from (
                select e.*, (e.clicks + p.a * p.c / p.e) / (e.exposure + p.a) as r
                from exposed e join priors p using (domain, level, topic_id)
            ) x join domain_rate d using (domain, level)
        ), per_topic as (
            select user_id, level, topic_id,
                   max(score) filter (where domain = 'homefeed') as s_homefeed,
                   max(score) filter (where domain = 'search') as s_search,
                   max(score) filter (where domain = 'main') as s_main,
                   sum(exposure) as exposure
            from scored group by all
        ), w as ({weights}), merged as (
            select t.user_id, 'merged' as domain, t.level, t.topic_id, t.exposure,
                   case when w.w_homefeed + w.w_search + w.w_main = 0
                        then greatest(coalesce(t.s_homefeed, 0.0), coalesce(t.s_search, 0.0), coalesce(t.s_main, 0.0))
                        else (w.w_homefeed * coalesce(t.s_homefeed, 0.0) + w.w_search * coalesce(t.s_search, 0.0)
                              + w.w_main * coalesce(t.s_main, 0.0)) / (w.w_homefeed + w.w_search + w.w_main)
                   end as score
            from per_topic t join w using (user_id)
        ), everything as (
            -- rounded: parallel sums of doubles differ in the last bits from run to run, and
            -- recomputing a window must give the same profile (float32 keeps ~7 digits anyway)
            select user_id, domain, level, topic_id, round(exposure, 6) as exposure, round(score, 6) as score from scored
            union all
            select user_id, domain, level, topic_id, round(exposure, 6), round(score, 6) from merged
        ), ranked as (
            -- top-k per group with a total order: score, then exposure, then topic name order
            select user_id, domain, level, max_by({{'topic_id': topic_id, 'score': score}}, row(score, exposure, -topic_id), {cfg.top_k}) as top
            from everything group by all
        )
        select r.user_id, r.domain, r.level::int as level, n.topic, (r.item.score)::float as score, r.rank::int as rank
        from (select user_id, domain, level, unnest(top) as item, generate_subscripts(top, 1) as rank from ranked) r
        join topic_names n on n.topic_id = r.item.topic_id
        """
    ).to_arrow_table()


def profile_columns(levels: int) -> list[tuple[str, str, int, str]]:
    """(column, domain, level, 'topics'|'scores') of the wide profile table."""
    return [(f"{d}_l{lv}_{kind}", d, lv, kind) for d in PROFILE_DOMAINS for lv in range(1, levels + 1) for kind in ("topics", "scores")]


def wide_profiles(long: pa.Table, settings: Settings, asof: datetime, con: duckdb.DuckDBPyConnection | None = None) -> pa.Table:
    """One row per user: ``{domain}_l{level}_topics`` / ``_scores`` lists in rank order, plus
    ``event_timestamp`` and ``created_timestamp`` (Feast's columns), both the as-of time: a recomputation
    of the same as-of writes the same bytes (the DAGs' reruns change nothing)."""
    con = con or connect()
    con.register("prefs", long)
    cols = ",\n".join(
        f"coalesce(list({'topic' if kind == 'topics' else 'score'} order by rank) filter (where domain = '{d}' and level = {lv}), []) as {name}"
        for name, d, lv, kind in profile_columns(settings.preferences.levels)
    )
    return con.sql(
        f"""select user_id, {cols}, $asof::timestamptz as event_timestamp, $created::timestamptz as created_timestamp
            from prefs group by user_id order by user_id""",
        params={"asof": asof.astimezone(UTC), "created": asof.astimezone(UTC)},
    ).to_arrow_table()


def run_preferences(settings: Settings, asof: datetime) -> PreferenceRun:
    """Compute preferences for ``asof`` and write ``features/user_preferences/asof=<date>.parquet``.

    Deterministic in the lake's content: recomputing a window rewrites the same file with the
    same values; events that arrive late are counted by the next computation whose window holds them.
    """
    t0 = time.perf_counter()
    con = connect()
    long = compute_preferences(settings, asof, con=con)
    t1 = time.perf_counter()
    wide = wide_profiles(long, settings, asof, con=con)
    out_dir = settings.features_dir / "user_preferences"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"asof={asof.astimezone(UTC):%Y-%m-%dT%H%M%S}.parquet"
    write_parquet_atomic(wide, path)
    t2 = time.perf_counter()
    return PreferenceRun(asof, wide.num_rows, long.num_rows, path, {"compute_s": t1 - t0, "wide_s": t2 - t1}, long)
