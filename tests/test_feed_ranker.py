"""The feed ranker and the partner rule, on a small simulated world read back from the real online store."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from featurestore.jobs import simulated_world
from featurestore.profile import ProfileReader, UserProfile
from feed.catalog import Catalog, coclick_matrix
from feed.partner import dcg, place, quota, random_placement
from feed.ranker import Ranker, RecentSearch, intent_matches, unit_noise
from intent.text import STOPWORDS
from topicfeed.settings import FeedSettings, Settings, SimulatorSettings, SourcesSettings
from topicfeed.simulator import simulate
from topicfeed.simulator.logs import examination


# the partner rule ---------------------------------------------------------------------------------
def brute_force(rel: list[float], partner: list[bool], n: int, share: float) -> float:
    """The best DCG over every ordered choice of n items that meets the quota."""
    q = min(quota(n, share), sum(partner))
    best = -1.0
    for perm in itertools.permutations(range(len(rel)), n):
        if sum(partner[i] for i in perm) >= q:
            best = max(best, dcg(rel, perm))
    return best


@hsettings(max_examples=60, deadline=None, derandomize=True)
@given(
    rel=st.lists(st.floats(0, 1, allow_nan=False), min_size=2, max_size=7),
    data=st.data(),
    share=st.sampled_from([0.0, 0.2, 0.34, 0.5, 1.0]),
)
def test_partner_placement_is_the_brute_force_optimum(rel: list[float], data: st.DataObject, share: float) -> None:
    partner = data.draw(st.lists(st.booleans(), min_size=len(rel), max_size=len(rel)))
    n = data.draw(st.integers(1, min(5, len(rel))))
    chosen = place(rel, partner, n, share)
    assert len(chosen) == n and len(set(chosen.tolist())) == n
    assert sum(partner[i] for i in chosen) >= min(quota(n, share), sum(partner))  # quota met when the partner has enough
    assert dcg(rel, chosen) == pytest.approx(brute_force(rel, partner, n, share), abs=1e-9)


def test_partner_placement_loses_less_than_random_placement() -> None:
    rng = np.random.default_rng(0)
    ours, random_loss = [], []
    for _ in range(300):
        rel = rng.random(40) ** 2
        partner = rng.random(40) < 0.15
        free = dcg(rel, np.argsort(-rel)[:10])
        ours.append(free - dcg(rel, place(rel, partner, 10, 0.3)))
        random_loss.append(free - dcg(rel, random_placement(rel, partner, 10, 0.3, rng)))
    assert min(ours) >= -1e-9 and np.mean(ours) <= 0.5 * np.mean(random_loss)


def test_quota_rounds_up_and_rejects_bad_shares() -> None:
    assert [quota(10, s) for s in (0, 0.1, 0.15, 1)] == [0, 1, 2, 10]
    with pytest.raises(ValueError, match="share"):
        quota(10, 1.5)


# the ranker -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Catalog]:
    """Settings and catalog of a small world (its simulation under ``<data_dir>/../sim``)."""
    base = tmp_path_factory.mktemp("feed-world")
    s = Settings(data_dir=base / "data", simulator=SimulatorSettings(users=300, days=5, docs_per_day=80, seed=11))
    simulated_world(s, base / "sim")
    return s, Catalog.load(s)


def active_user(s: Settings, catalog: Catalog) -> tuple[str, UserProfile]:
    reader = ProfileReader(s, now=lambda: catalog.asof)
    for user in sorted(catalog.clicked, key=lambda u: -len(catalog.clicked[u])):
        profile = reader.get(user)
        if profile.found:
            return user, profile
    raise AssertionError("no active user")


def test_personal_feed_excludes_clicks_caps_topics_and_explains(world: tuple[Settings, Catalog]) -> None:
    s, catalog = world
    user, profile = active_user(s, catalog)
    ranker = Ranker(s.feed)
    feed = ranker.rank(catalog, profile, user_id=user, limit=20, now=catalog.asof)
    assert not feed.fallback and len(feed.items) == 20
    ids = [i.item_id for i in feed.items]
    assert len(set(ids)) == 20
    assert not {catalog.index[i] for i in ids} & catalog.clicked[user]  # nothing the user clicked
    l2 = [int(catalog.l2_topic[catalog.index[i]]) for i in ids]
    assert max(l2.count(t) for t in set(l2) if t >= 0) <= s.feed.max_per_l2_topic
    assert [i.score for i in feed.items[: s.feed.max_per_l2_topic]] == sorted((i.score for i in feed.items[: s.feed.max_per_l2_topic]), reverse=True)
    assert {i.reason.kind for i in feed.items} <= {"intent", "topic", "trending", "popular", "similar", "fresh"}
    assert {i.source for i in feed.items} <= {"intents", "topics", "similar", "coclick", "trending", "popular", "fresh"}
    assert any(i.reason.kind == "topic" and i.reason.text.startswith("because you follow ") for i in feed.items)
    # the user's strongest topics show up in the feed
    top_l1 = {t for t, _ in profile.top(1, k=2)}
    assert any(any(p in top_l1 for p in catalog.item_topics[catalog.index[i]]) for i in ids)
    # deterministic for the same user and day
    assert ranker.rank(catalog, profile, user_id=user, limit=20, now=catalog.asof).items == feed.items


def test_unknown_user_gets_the_non_personal_fallback(world: tuple[Settings, Catalog]) -> None:
    s, catalog = world
    feed = Ranker(s.feed).rank(catalog, UserProfile("nobody"), user_id="nobody", limit=15, now=catalog.asof)
    assert feed.fallback and len(feed.items) == 15
    assert {i.source for i in feed.items} <= {"trending", "popular", "fresh"}
    assert {i.reason.kind for i in feed.items} <= {"trending", "popular", "fresh"}
    forced = Ranker(s.feed).rank(catalog, active_user(s, catalog)[1], user_id="x", fallback=True, now=catalog.asof)
    assert forced.fallback


def test_intents_and_fresh_searches_give_intent_reasons(world: tuple[Settings, Catalog]) -> None:
    s, catalog = world
    user, profile = active_user(s, catalog)
    target = next(i for i in catalog.by_popularity if int(i) not in catalog.clicked[user])
    query = " ".join(catalog.titles[target].lower().split()[:4])
    profile.last_refined_query, profile.recent_refined_queries = query, [query]
    strong = s.feed.model_copy(update={"intent_weight": 1.0, "intent_half_life_hours": None})  # the default weighs intents lightly (docs/feed.md)
    feed = Ranker(strong).rank(catalog, profile, user_id=user, limit=20, now=catalog.asof)
    hit = [i for i in feed.items if i.item_id == catalog.ids[target]]
    assert hit and hit[0].reason.kind == "intent" and hit[0].reason.text == f"because you recently searched '{query}'"
    # a search with clicks that just arrived: its clicked items' topics count as a fresh interest
    topic = max(catalog.item_topics[target], key=lambda p: p.count(">"))
    search = RecentSearch("pole saw", {topic: 1.0}, catalog.asof)
    fresh = Ranker(s.feed).rank(catalog, UserProfile("newcomer"), user_id="newcomer", searches=[search], now=catalog.asof)
    assert not fresh.fallback
    assert any(i.reason.text == "because you recently searched 'pole saw'" and topic in catalog.item_topics[catalog.index[i.item_id]] for i in fresh.items)


def test_intent_matches_weigh_rare_words_decay_with_age_and_can_be_capped(world: tuple[Settings, Catalog]) -> None:
    s, catalog = world
    user, profile = active_user(s, catalog)
    common = max(catalog.by_word, key=lambda w: len(catalog.by_word[w]) if w not in STOPWORDS else 0)
    rare = next(w for w in sorted(catalog.by_word) if len(catalog.by_word[w]) == 1 and w not in STOPWORDS and w.isalpha() and int(catalog.by_word[w][0]) not in catalog.clicked[user])
    named = int(catalog.by_word[rare][0])
    best, shares = intent_matches(catalog, f"the {common} {rare}", 5)
    assert int(best[0]) == named and shares[0] > 0.5  # the rare word (a name) carries the match; "the" counts nothing
    only_common = [sh for i, sh in zip(best.tolist(), shares.tolist()) if i not in catalog.by_word[rare]]
    assert all(sh < 0.5 for sh in only_common)
    assert intent_matches(catalog, "the of and", 5)[0].size == 0  # stopwords alone match nothing
    # the ranker's intent part: weight x match x 0.5 ** (age / half-life)
    profile.last_refined_query, profile.recent_refined_queries = rare, [rare]
    for half_life in (None, 24.0):
        f = s.feed.model_copy(update={"intent_weight": 2.0, "intent_half_life_hours": half_life})
        sc = Ranker(f).scored(catalog, profile, user_id=user, now=catalog.asof)
        j = int(np.flatnonzero(sc.cands == named)[0])  # offered by the intents source
        age_h = (catalog.asof.timestamp() - catalog.created_s[named]) / 3600
        assert age_h > 1 and sc.parts[0, j] == pytest.approx(2.0 * (1.0 if half_life is None else 0.5 ** (age_h / half_life)))  # the whole query matched
    # at most max_intent_items items led by an intent on a page; the reason names the search
    query = next(w for w in sorted(catalog.by_word, key=lambda w: (len(catalog.by_word[w]), w)) if w not in STOPWORDS and len(catalog.by_word[w]) >= 12)  # a name on a dozen titles
    profile.last_refined_query, profile.recent_refined_queries = query, [query]
    flood = s.feed.model_copy(update={"intent_weight": 50.0, "intent_reason_share": 1.0})
    page = Ranker(flood).rank(catalog, profile, user_id=user, limit=10, now=catalog.asof)
    assert sum(i.reason.kind == "intent" for i in page.items) >= 3
    capped = Ranker(flood.model_copy(update={"max_intent_items": 2})).rank(catalog, profile, user_id=user, limit=10, now=catalog.asof)
    assert sum(i.reason.kind == "intent" for i in capped.items) == 2 and len(capped.items) == 10
    # a weak intent weight still names the search where the title matches it well (intent_reason_share)
    profile.last_refined_query, profile.recent_refined_queries = f"{query} {common}", [f"{query} {common}"]
    light = s.feed.model_copy(update={"intent_weight": 1e-6, "intent_reason_share": 0.5})
    named = Ranker(light).rank(catalog, profile, user_id=user, limit=5000, now=catalog.asof)
    matched = {catalog.ids[i] for i in catalog.by_word[query]}
    by_search = {i.item_id for i in named.items if i.reason.kind == "intent"}
    assert by_search and by_search <= matched | {catalog.ids[i] for i in catalog.by_word[common]}
    assert len(by_search & matched) >= 3  # the name alone is more than half the query's weight
    strict = Ranker(light.model_copy(update={"intent_reason_share": 1.0})).rank(catalog, profile, user_id=user, limit=5000, now=catalog.asof)
    assert {i.item_id for i in strict.items if i.reason.kind == "intent"} < by_search  # only titles with both words


def test_sources_can_be_switched_off_and_partner_share_is_met(world: tuple[Settings, Catalog]) -> None:
    s, catalog = world
    user, profile = active_user(s, catalog)
    only = FeedSettings(sources=SourcesSettings.only(popular=100))
    feed = Ranker(only).rank(catalog, profile, user_id=user, now=catalog.asof)
    assert {i.source for i in feed.items} == {"popular"}
    partner = max(set(catalog.partner) - {""}, key=lambda p: int((catalog.partner == p).sum()))
    ruled = Ranker(s.feed).rank(catalog, profile, user_id=user, limit=10, partner=partner, share=0.3, now=catalog.asof)
    assert sum(catalog.partner[catalog.index[i.item_id]] == partner for i in ruled.items) >= 3
    assert any(i.reason.kind == "partner" or catalog.partner[catalog.index[i.item_id]] == partner for i in ruled.items)


def test_coclick_matrix_is_the_cosine_of_co_clicking_users_with_the_strongest_neighbours() -> None:
    clicks = [{0, 1}, {0, 1, 2}, {0, 3}, {4}]  # item 0: 3 users; 1: 2; 2, 3: 1; 4 has no partner
    c = coclick_matrix(clicks, 6, neighbours=10, user_items=10).toarray()
    assert c[0, 1] == pytest.approx(2 / np.sqrt(3 * 2)) and c[1, 0] == pytest.approx(c[0, 1])
    assert c[0, 2] == pytest.approx(1 / np.sqrt(3)) and c[2, 3] == 0 and not c[4].any() and not np.diag(c).any()
    top1 = coclick_matrix(clicks, 6, neighbours=1, user_items=10).toarray()
    assert (np.count_nonzero(top1, axis=1) <= 1).all() and top1[0, 1] == pytest.approx(c[0, 1])  # item 0 keeps its strongest
    capped = coclick_matrix(clicks, 6, neighbours=10, user_items=2).toarray()  # the second user counts items 0 and 1 only
    assert capped[1, 2] == 0 and capped[0, 1] == pytest.approx(c[0, 1])
    assert coclick_matrix([{1}, set()], 6, neighbours=5, user_items=5) is None


def test_coclick_source_offers_what_others_clicked_with_the_users_clicks(world: tuple[Settings, Catalog]) -> None:
    s, catalog = world
    assert catalog.coclick is not None and catalog.coclick.shape == (len(catalog), len(catalog))
    user, profile = active_user(s, catalog)
    clicked = np.fromiter(catalog.clicked[user], dtype=np.int64)
    score = np.asarray(catalog.coclick[clicked].sum(axis=0)).ravel()
    score[clicked] = 0
    only = FeedSettings(sources=SourcesSettings.only(coclick=30), coclick_weight=1.0, level_weights=(0, 0, 0), popularity_weight=0, trend_weight=0, freshness_weight=0, exploration=0, max_per_l2_topic=100)
    feed = Ranker(only).rank(catalog, profile, user_id=user, limit=10, now=catalog.asof)
    ids = [catalog.index[i.item_id] for i in feed.items]
    assert {i.source for i in feed.items} == {"coclick"} and not set(ids) & catalog.clicked[user]
    assert sorted(score[ids].tolist(), reverse=True) == pytest.approx(np.sort(score)[::-1][:10].tolist())  # the strongest co-clicks, best first
    best = feed.items[0]
    assert best.reason.kind == "similar" and best.reason.text.startswith("people who read '")
    named = best.reason.text.split("'")[1]
    assert any(catalog.titles[i] == named and catalog.coclick[i, ids[0]] > 0 for i in clicked)  # a click that was co-clicked with it
    off = FeedSettings(sources=SourcesSettings.only(popular=30), coclick_weight=1.0)
    assert "coclick" not in {i.source for i in Ranker(off).rank(catalog, profile, user_id=user, now=catalog.asof).items}


def reference_diversify(l2: list[int], ranked: list[int], cap: int, limit_hint: int) -> list[int]:
    """The page rule written plainly: walk the ranking, take an item while its topic is under the cap."""
    page: list[int] = []
    rest: list[int] = []
    seen: dict[int, int] = {}
    for k, (i, t) in enumerate(zip(ranked, l2)):
        if len(page) == limit_hint:
            return page + rest + ranked[k:]
        if t < 0 or seen.get(t, 0) < cap:
            page.append(i)
            seen[t] = seen.get(t, 0) + 1
        else:
            rest.append(i)
    return page + rest


@hsettings(max_examples=80, deadline=None, derandomize=True)
@given(st.lists(st.integers(-1, 4), max_size=60), st.integers(1, 4), st.integers(1, 30))
def test_vectorized_diversity_matches_the_plain_rule(l2: list[int], cap: int, limit_hint: int) -> None:
    ranker = Ranker(FeedSettings(max_per_l2_topic=cap))
    ranked = list(np.random.default_rng(len(l2)).permutation(len(l2)))
    got = ranker._diversify(np.array(l2, dtype=np.int64), np.array(ranked, dtype=np.int64), limit_hint)
    assert got.tolist() == reference_diversify(l2, ranked, cap, limit_hint)


def test_catalog_gathers_topic_scores_and_best_topics_like_the_sparse_matrix(world: tuple[Settings, Catalog]) -> None:
    _, catalog = world
    rng = np.random.default_rng(0)
    items = rng.choice(len(catalog), size=200, replace=True)
    w = rng.random(len(catalog.topic_paths)) * (rng.random(len(catalog.topic_paths)) < 0.3)
    np.testing.assert_allclose(catalog.topic_scores(items, w), catalog.topic_matrix[items] @ w, rtol=1e-12)
    for i, column in zip(items.tolist(), catalog.best_topics(items, w)):
        contrib = {catalog.topic_column[p]: score * w[catalog.topic_column[p]] for p, score in catalog.item_topics[i].items()}
        best = max(contrib.values(), default=0.0)
        assert (column is None) == (best <= 0) and (column is None or contrib[column] == best)


def test_exploration_noise_is_uniform_per_item_and_fixed_per_seed() -> None:
    items = np.arange(100_000)
    u = unit_noise(7, items)
    assert u.min() >= 0 and u.max() < 1 and abs(u.mean() - 0.5) < 0.01
    assert np.histogram(u, bins=10, range=(0, 1))[0].min() > 9_500  # about 10,000 per tenth
    np.testing.assert_array_equal(unit_noise(7, items[::-1])[::-1], u)  # a function of (seed, item) only
    assert np.corrcoef(u, unit_noise(8, items))[0, 1] < 0.02


def test_catalog_holder_swaps_whole_and_keeps_new_clicks(world: tuple[Settings, Catalog]) -> None:
    from feed.catalog import CatalogHolder

    s, _ = world
    holder = CatalogHolder(lambda: Catalog.load(s, asof=datetime.now(UTC) + timedelta(hours=1)))
    first = holder.catalog
    first.clicked.setdefault("late-user", set()).add(0)
    assert holder.version == 0
    second = holder.refresh()
    assert second is not first and holder.catalog is second and holder.version == 1  # memoized feeds of the old one no longer answer
    assert 0 in second.clicked["late-user"]


def test_catalog_needs_computed_features(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="store compute"):
        Catalog.load(Settings(data_dir=tmp_path))


def test_offline_evaluation_beats_popularity_and_trending(world: tuple[Settings, Catalog], tmp_path: Path) -> None:
    from feed.evaluate import evaluate_offline, ranking_metrics

    assert ranking_metrics(["a", "b", "c"], {"b"}, 3) == pytest.approx((1 / np.log2(3), 1 / 3, 1.0, 0.5))
    s, catalog = world
    sim = s.data_dir.parent / "sim"
    split = catalog.asof - timedelta(days=1)
    scores = {x.method: x for x in evaluate_offline(Settings(data_dir=tmp_path / "unused"), sim / "events.parquet", sim / "documents.parquet", split, k=10, workdir=tmp_path)}
    assert set(scores) == {"topicfeed", "popularity", "trending"}
    assert scores["topicfeed"].users == scores["popularity"].users > 50
    assert scores["topicfeed"].ndcg > scores["popularity"].ndcg and scores["topicfeed"].ndcg > scores["trending"].ndcg
    assert scores["topicfeed"].coverage > scores["popularity"].coverage
    with pytest.raises(ValueError, match="split-time"):
        evaluate_offline(Settings(data_dir=tmp_path / "unused"), sim / "events.parquet", sim / "documents.parquet", catalog.asof + timedelta(days=30), workdir=tmp_path)


def test_offline_evaluation_with_refined_intents_scores_the_feed_with_and_without_them(world: tuple[Settings, Catalog], tmp_path: Path) -> None:
    from feed.evaluate import evaluate_offline, offline_world, without_intents
    from intent.model import RawQuery

    s, catalog = world
    sim = s.data_dir.parent / "sim"
    split = catalog.asof - timedelta(days=1)
    fresh = Settings(data_dir=tmp_path / "unused")
    calls: list[tuple[int, int]] = []
    with offline_world(
        fresh, sim / "events.parquet", sim / "documents.parquet", split, workdir=tmp_path, intents=RawQuery(), intent_days=2, domains=["homefeed"], progress=lambda d, t: calls.append((d, t))
    ) as w:
        assert calls and calls[-1][0] == calls[-1][1] > 0 and [d for d, _ in calls] == sorted(d for d, _ in calls)  # every search refined, in parts
        searched = [u for u in w.relevant if w.profile(u).recent_refined_queries]
        assert searched and all(q == " ".join(q.split()) for u in searched for q in w.profile(u).recent_refined_queries)  # Q* = Q, normalised
        with_them, without = w.ranker(fresh.feed, 10), w.ranker(without_intents(fresh.feed), 10)
        assert without_intents(fresh.feed).sources.enabled().get("intents") is None and fresh.feed.sources.enabled()["intents"]
        assert with_them.per_user != without.per_user  # the intents change some users' pages
    plain = {x.method: x for x in evaluate_offline(fresh, sim / "events.parquet", sim / "documents.parquet", split, k=10, workdir=tmp_path, domains=["homefeed"])}
    rows = {x.method: x for x in evaluate_offline(fresh, sim / "events.parquet", sim / "documents.parquet", split, k=10, workdir=tmp_path, intents=RawQuery(), intent_days=2, domains=["homefeed"])}
    assert set(rows) == {"topicfeed", "popularity", "trending", "no intents"} and set(plain) == {"topicfeed", "popularity", "trending"}
    assert rows["no intents"].users == rows["topicfeed"].users == plain["topicfeed"].users < len(w.relevant) + 1
    assert rows["popularity"].ndcg == pytest.approx(plain["popularity"].ndcg)
    everywhere = {x.method: x for x in evaluate_offline(fresh, sim / "events.parquet", sim / "documents.parquet", split, k=10, workdir=tmp_path)}
    assert everywhere["topicfeed"].users > plain["topicfeed"].users  # searches and main-page clicks count there too


def test_cli_feed_evaluate_with_raw_query_intents_prints_the_row_without_them(world: tuple[Settings, Catalog], tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    s, catalog = world
    sim = s.data_dir.parent / "sim"
    split = (catalog.asof - timedelta(days=1)).isoformat()
    env = {**os.environ, "TOPICFEED_DATA_DIR": str(tmp_path / "data")}
    base = [sys.executable, "-c", "from topicfeed.cli import main; main()", "feed", "evaluate", "--events", str(sim / "events.parquet"), "--documents", str(sim / "documents.parquet"), "--split-time", split]
    got = subprocess.run([*base, "--intents", "raw", "--intent-days", "2", "--domain", "homefeed"], env=env, capture_output=True, text=True, timeout=300)
    assert got.returncode == 0, got.stderr
    lines = got.stdout.splitlines()
    assert [line.split()[0] for line in lines[:3]] == ["topicfeed", "popularity", "trending"] and lines[3].startswith("no intents")
    assert lines[-1].startswith("ndcg@10 of topicfeed vs the same without intents: ") and "x [" in lines[-1]
    bad = subprocess.run([*base, "--intents", str(tmp_path / "nowhere")], env=env, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "neither 'raw' nor a directory" in bad.stderr
    (tmp_path / "empty").mkdir()  # a directory that holds no refiner: the error, not a traceback
    empty = subprocess.run([*base, "--intents", str(tmp_path / "empty")], env=env, capture_output=True, text=True, timeout=300)
    assert empty.returncode == 2 and "is not a saved intent refiner" in empty.stderr and "Traceback" not in empty.stderr


def test_rule_preview_meets_the_quota_for_less_than_random(world: tuple[Settings, Catalog]) -> None:
    from feed.preview import preview_rule

    s, catalog = world
    partner = max(set(catalog.partner) - {""}, key=lambda p: int((catalog.partner == p).sum()))
    got = preview_rule(s, partner, 0.2, top_n=10, users=80)
    assert got.users == 80 and got.share_rule >= 0.2 - 1e-9 and got.pages_meeting_quota == 1.0
    assert 0 <= got.loss_rule <= 0.5 * got.loss_random
    assert "random placement" in got.table()
    with pytest.raises(ValueError, match="no item of partner"):
        preview_rule(s, "nobody-inc", 0.2)


def test_click_environment_follows_the_click_model(tmp_path: Path) -> None:
    s = Settings(simulator=SimulatorSettings(users=200, days=2, docs_per_day=40, seed=2))
    env = simulate(s, tmp_path).environment
    assert env is not None
    user = next(iter(env.user_index))
    docs = list(env.doc_index)[:8]
    p = env.click_probabilities(user, docs)
    q = env.click_probabilities(user, docs[::-1])[::-1]
    assert np.all(p > 0) and np.all(p < 1)
    # the same document is less likely clicked further down, by exactly the examination ratio (position bias)
    assert p[-1] < q[-1] and q[0] < p[0]
    assert p[0] / q[0] == pytest.approx(examination(np.array([0]))[0] / examination(np.array([7]))[0])
    assert env.click_probabilities(user, ["unknown-doc"])[0] == 0.0
    assert env.segment(user) in {"light", "heavy"}
