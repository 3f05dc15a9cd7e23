from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from topicfeed.settings import Settings, SimulatorSettings
from topicfeed.simulator import simulate
from topicfeed.simulator.text import typo
from topicfeed.taxonomy import Taxonomy


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Path, dict]:
    s = Settings(simulator=SimulatorSettings(users=4000, days=10, docs_per_day=150, seed=11))
    out = tmp_path_factory.mktemp("sim")
    result = simulate(s, out)
    return s, out, result.stats


def test_population_shares_match_configuration(world: tuple[Settings, Path, dict]) -> None:
    s, out, stats = world
    cfg, tol = s.simulator, s.simulator.share_tolerance
    shares = stats["shares"]
    assert abs(shares["light_of_homefeed_users"] - cfg.light_share) <= tol
    assert abs(shares["light_users_who_search"] - cfg.light_search_share) <= tol
    assert abs(shares["light_users_on_main"] - cfg.light_main_share) <= tol
    users = pq.read_table(out / "ground_truth" / "users.parquet").to_pandas()
    assert len(users) == cfg.users
    # light users really are lighter on the home feed
    events = pq.read_table(out / "events.parquet", columns=["user_id", "domain", "type"]).to_pandas()
    feed = events[(events.domain == "homefeed") & (events.type == "impression")].groupby("user_id").size()
    per_user = users.set_index("user_id").join(feed.rename("n")).fillna(0)
    assert per_user[per_user.segment == "heavy"].n.mean() > 5 * per_user[per_user.segment == "light"].n.mean()


def test_click_through_rates_fall_in_configured_ranges(world: tuple[Settings, Path, dict]) -> None:
    s, out, stats = world
    cfg = s.simulator
    assert stats["ctr"]["homefeed"] in cfg.ctr_homefeed
    assert stats["ctr"]["main"] in cfg.ctr_main
    assert stats["ctr"]["search"] in cfg.ctr_search
    # position bias: the first slot is clicked more than the fifth
    ev = pq.read_table(out / "events.parquet", columns=["domain", "type", "position"]).to_pandas()
    feed = ev[ev.domain == "homefeed"]
    rate = feed[feed.type == "click"].position.value_counts() / feed[feed.type == "impression"].position.value_counts()
    assert rate[0] > 1.5 * rate[4]


def test_documents_are_realistic(world: tuple[Settings, Path, dict]) -> None:
    s, out, stats = world
    tax = Taxonomy.load(s.taxonomy_path)
    docs = pq.read_table(out / "documents.parquet").to_pylist()
    n_topics = np.array([len(d["topics"]) for d in docs])
    assert n_topics.min() == 1 and n_topics.max() == 3
    assert 0.25 < (n_topics > 1).mean() < 0.55
    assert all(t in tax for d in docs for t in d["topics"])
    assert all(len(set(d["topics"])) == len(d["topics"]) for d in docs)
    levels = [tax.node(d["topics"][0]).level for d in docs]
    assert 0.05 < np.mean(np.array(levels) == 2) < 0.2  # some documents are labelled at tier 2 only
    partners = sum(d["partner"] is not None for d in docs) / len(docs)
    assert abs(partners - s.simulator.partner_share) < 0.02
    assert all(d["title"] and d["body"] for d in docs)
    # the text carries the topic: the leaf's own words appear in the title or body of most documents
    def words(path: str) -> set[str]:
        return {w.lower() for w in path.split(" > ")[-1].split()}
    hits = np.mean([bool(words(d["topics"][0]) & set((d["title"] + " " + d["body"]).lower().replace(".", " ").split())) for d in docs])
    assert hits > 0.8


def test_popularity_is_heavy_tailed(world: tuple[Settings, Path, dict]) -> None:
    _, out, _ = world
    ev = pq.read_table(out / "events.parquet", columns=["type", "item_id"]).filter(pc.equal(pc.field("type"), "impression"))
    counts = np.sort(pc.value_counts(ev.column("item_id")).field("counts").to_numpy())[::-1]
    top = counts[: max(1, len(counts) // 10)].sum() / counts.sum()
    assert top > 0.4  # the top 10% of documents take a large share of impressions


def test_search_queries_have_entities_aspects_and_typos(world: tuple[Settings, Path, dict]) -> None:
    s, out, _ = world
    ev = pq.read_table(out / "events.parquet").to_pandas()
    searches = ev[ev.type == "search"]
    assert (searches.domain == "search").all() and searches["query"].notna().all()
    lengths = searches["query"].str.split().str.len()
    assert (lengths == lengths.min()).mean() < 0.8 and lengths.max() >= 3  # entity alone and entity + aspects
    clicks = ev[(ev.domain == "search") & (ev.type == "click")]
    assert clicks["query"].notna().all()
    # typos: a share of queries contain a word that no document uses
    vocab = {w.lower() for d in pq.read_table(out / "documents.parquet", columns=["title", "body"]).to_pylist() for w in (d["title"] + " " + d["body"]).replace(".", " ").replace(":", " ").split()}
    odd = searches["query"].map(lambda q: any(w.strip("'s") not in vocab and w not in vocab for w in q.lower().split())).mean()
    assert 0.3 * s.simulator.typo_rate < odd < 3 * s.simulator.typo_rate + 0.05


def test_ground_truth_is_apart_and_normalised(world: tuple[Settings, Path, dict]) -> None:
    s, out, _ = world
    truth = pq.read_table(out / "ground_truth" / "interests.parquet").to_pandas()
    sums = truth.groupby(["user_id", "valid_from", "valid_to", "level"]).weight.sum()
    assert np.allclose(sums, 1.0, atol=1e-4)
    assert set(truth.level) == {1, 2, 3}
    assert (truth.valid_from < truth.valid_to).all()
    # interests drift: some users have more than one interval
    intervals = truth.groupby("user_id").valid_from.nunique()
    assert 0 < (intervals > 1).mean() < 0.5
    # and they shape behaviour: users click documents of their true tier-1 interests far above chance
    ev = pq.read_table(out / "events.parquet", columns=["user_id", "domain", "type", "item_id"]).to_pandas()
    clicks = ev[(ev.type == "click") & (ev.domain == "homefeed")]
    docs = pq.read_table(out / "documents.parquet", columns=["doc_id", "topics"]).to_pandas()
    l1 = docs.set_index("doc_id").topics.map(lambda ts: {t.split(" > ")[0] for t in ts})
    top = truth[truth.level == 1].groupby("user_id").apply(lambda g: set(g.topic), include_groups=False)
    hit = np.mean([bool(l1[d] & top[u]) for u, d in zip(clicks.user_id, clicks.item_id)])
    assert hit > 0.5
    assert not (out / "events.parquet").read_bytes().count(b"valid_from")


def test_same_seed_same_world(tmp_path: Path) -> None:
    s = Settings(simulator=SimulatorSettings(users=200, days=3, docs_per_day=40, seed=3))
    a = simulate(s, tmp_path / "a")
    b = simulate(s, tmp_path / "b")
    assert pq.read_table(a.files["events"]).equals(pq.read_table(b.files["events"]))
    c = simulate(s.model_copy(update={"simulator": s.simulator.model_copy(update={"seed": 4})}), tmp_path / "c")
    assert not pq.read_table(a.files["events"]).equals(pq.read_table(c.files["events"]))


def test_runs_on_the_iab_taxonomy(tmp_path: Path, shared_data: Path) -> None:
    s = Settings(simulator=SimulatorSettings(users=300, days=3, docs_per_day=60))
    tax = Taxonomy.load(shared_data / "iab" / "content_taxonomy_3.1.tsv")
    result = simulate(s, tmp_path, taxonomy=tax)
    docs = pq.read_table(result.files["documents"]).to_pylist()
    assert all(t in tax for d in docs for t in d["topics"])
    assert max(tax.node(t).level for d in docs for t in d["topics"]) == 4
    truth = pq.read_table(result.files["interests"]).to_pandas()
    assert set(truth.level) == {1, 2, 3, 4}


def test_typo_changes_exactly_one_slip() -> None:
    rng = np.random.default_rng(0)
    word = "aespa japan album"
    outs = [typo(rng, word) for _ in range(400)]
    # each output is one slip away: one swap of neighbours, one letter dropped, doubled or replaced
    assert all(_one_slip(word, o) for o in outs if o != word)
    # a slip only leaves the text as it was when it swaps or doubles into the same letters
    assert sum(o == word for o in outs) < 0.1 * len(outs)
    kinds = {len(o) - len(word) for o in outs}
    assert kinds == {-1, 0, 1}  # drops, swaps/replacements and doubled keys all occur
    assert typo(rng, "ab") == "ab"  # too short to slip


def _one_slip(a: str, b: str) -> bool:
    """True when b is a with exactly one adjacent swap, deletion, insertion or substitution."""
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]])
    short, long = sorted((a, b), key=len)
    if len(long) - len(short) != 1:
        return False
    return any(long[:i] + long[i + 1 :] == short for i in range(len(long)))
