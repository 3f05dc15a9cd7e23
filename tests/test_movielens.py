"""MovieLens adapters: every layout in use reads to the same records; bad lines are quarantined by field;
the feed's offline evaluation runs on MovieLens files and finds the genre taste a user has."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from feed.evaluate import evaluate_offline
from topicfeed.adapters.movielens import ML100K_GENRES, read_movies, read_ratings
from topicfeed.ingest import detect_format, ingest
from topicfeed.lake import Lake
from topicfeed.settings import Settings

T0 = 881250949  # 1997-12-04
CHILDRENS = "Children's"


def _flags(*genres: str) -> str:
    return "|".join("1" if g in genres else "0" for g in ML100K_GENRES)


def _layouts(tmp: Path) -> dict[str, tuple[Path, Path]]:
    """The same three movies and four ratings in each MovieLens layout."""
    out: dict[str, tuple[Path, Path]] = {}
    d = tmp / "ml-100k"
    d.mkdir()
    (d / "u.data").write_text(f"196\t242\t3\t{T0}\n186\t302\t4\t{T0 + 60}\n196\t302\t5\t{T0 + 120}\n22\t377\t1\t{T0 + 180}\n")
    (d / "u.item").write_bytes(
        (
            f"242|Kolya (1996)|24-Jan-1997||http://x|{_flags('Comedy')}\n"
            f"302|L.A. Confidential (1997)|01-Jan-1997||http://x|{_flags('Crime', 'Film-Noir', 'Mystery', 'Thriller')}\n"
            f"377|Heavyweights (1994)|01-Jan-1994||http://x|{_flags(CHILDRENS, 'Comedy')}\n"
        ).encode("latin-1")
    )
    out["100k"] = (d / "u.data", d / "u.item")
    d = tmp / "ml-1m"
    d.mkdir()
    (d / "ratings.dat").write_text(f"196::242::3::{T0}\n186::302::4::{T0 + 60}\n196::302::5::{T0 + 120}\n22::377::1::{T0 + 180}\n")
    (d / "movies.dat").write_text("242::Kolya (1996)::Comedy\n302::L.A. Confidential (1997)::Crime|Film-Noir|Mystery|Thriller\n377::Heavyweights (1994)::Children's|Comedy\n")
    out["1m"] = (d / "ratings.dat", d / "movies.dat")
    d = tmp / "ml-latest"
    d.mkdir()
    (d / "ratings.csv").write_text(f"userId,movieId,rating,timestamp\n196,242,3.0,{T0}\n186,302,4.0,{T0 + 60}\n196,302,5.0,{T0 + 120}\n22,377,1.0,{T0 + 180}\n")
    (d / "movies.csv").write_text(
        'movieId,title,genres\n242,Kolya (1996),Comedy\n302,"L.A. Confidential (1997)",Crime|Film-Noir|Mystery|Thriller\n377,Heavyweights (1994),Children\'s|Comedy\n'
    )
    out["latest"] = (d / "ratings.csv", d / "movies.csv")
    d = tmp / "recbole"
    d.mkdir()
    (d / "ml-100k.inter").write_text(
        f"user_id:token\titem_id:token\trating:float\ttimestamp:float\n196\t242\t3\t{T0}\n186\t302\t4\t{T0 + 60}\n196\t302\t5\t{T0 + 120}\n22\t377\t1\t{T0 + 180}\n"
    )
    (d / "ml-100k.item").write_text(
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
        "242\tKolya\t1996\tComedy\n302\tL.A. Confidential\t1997\tCrime Film-Noir Mystery Thriller\n377\tHeavyweights\t1994\tChildren's Comedy\n"
    )
    out["recbole"] = (d / "ml-100k.inter", d / "ml-100k.item")
    return out


def test_every_movielens_layout_reads_to_the_same_records(tmp_path: Path) -> None:
    layouts = _layouts(tmp_path)
    events = {name: [r.data for r in read_ratings(r)] for name, (r, _) in layouts.items()}
    assert all(e == events["100k"] for e in events.values())
    assert [(e["user_id"], e["item_id"], e["type"]) for e in events["100k"]] == [
        ("ml-u196", "ml-m242", "impression"),  # 3 of 5: shown, not taken
        ("ml-u186", "ml-m302", "click"),
        ("ml-u196", "ml-m302", "click"),
        ("ml-u22", "ml-m377", "impression"),
    ]
    assert events["100k"][0]["ts"] == datetime.fromtimestamp(T0, UTC)
    docs = {name: {d.data["doc_id"]: d.data for d in read_movies(m)} for name, (_, m) in layouts.items()}
    for got in docs.values():
        assert got["ml-m302"]["topics"] == ["Crime > 1990s", "Film-Noir > 1990s", "Mystery > 1990s", "Thriller > 1990s"]
        assert got["ml-m377"]["topics"] == ["Children's > 1990s", "Comedy > 1990s"]
        assert got["ml-m242"]["created_at"].year == 1996 or got["ml-m242"]["created_at"] == datetime(1997, 1, 24, tzinfo=UTC)
    assert docs["100k"]["ml-m242"]["created_at"] == datetime(1997, 1, 24, tzinfo=UTC)  # u.item has the release date
    assert docs["1m"]["ml-m242"]["created_at"] == datetime(1996, 1, 1, tzinfo=UTC)  # elsewhere the year of the title
    assert docs["1m"]["ml-m302"]["title"] == "L.A. Confidential (1997)" and "Genres: Crime, Film-Noir" in docs["1m"]["ml-m302"]["body"]
    assert {detect_format(p) for pair in layouts.values() for p in pair if p.suffix != ".csv"} == {"movielens"}


def test_movielens_ingests_and_quarantines_bad_lines_by_field(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path / "data")
    ratings = tmp_path / "u.data"
    ratings.write_text(f"1\t10\t4\t{T0}\n1\t11\tfive\t{T0}\n2\t10\t2\tyesterday\n3\t10\n2\t12\t5\t{T0 + 5}\n")
    movies = tmp_path / "u.item"
    movies.write_text(f"10|Toy Story (1995)|01-Jan-1995||u|{_flags('Animation', 'Comedy')}\n11|Broken|01-Jan-1995||u|{'2|' * 18}0\n12|No genre|||u|{_flags('unknown')}\n")
    docs = ingest("documents", movies, s)
    assert (docs.accepted, docs.quarantined) == (2, 1)
    stored = {d["doc_id"]: d for d in Lake(s.lake_dir).read("documents").to_pylist()}
    assert stored["ml-m10"]["topics"] == ["Animation > 1990s", "Comedy > 1990s"] and stored["ml-m12"]["topics"] is None
    report = ingest("events", ratings, s)
    assert (report.accepted, report.quarantined) == (2, 3)
    entries = sorted((json.loads(line) for line in report.quarantine_path.read_text().splitlines()), key=lambda e: e["record"])
    assert [(e["record"], e["field"]) for e in entries] == [(2, "rating"), (3, "timestamp"), (4, "<record>")]
    assert "'five'" in entries[0]["message"]
    assert ingest("events", ratings, s).accepted == 0  # a second load adds nothing


def _taste_world(tmp: Path, users: int = 60, per_genre: int = 30, seed: int = 3) -> tuple[Path, Path, datetime]:
    """Users who each like one of three genres and rate mostly that genre, plus a few blockbusters
    everybody rates: popularity ranks the blockbusters, a feed that reads the profile ranks the genre."""
    rng = random.Random(seed)
    genres = ("Comedy", "Horror", "Western")
    movies, lines = [], []
    for g, genre in enumerate(genres):
        movies += [f"{g * 100 + i}|{genre} film {i} (1995)|01-Jan-1995||u|{_flags(genre)}" for i in range(per_genre)]
    movies += [f"{900 + i}|Blockbuster {i} (1996)|01-Jan-1996||u|{_flags('Action')}" for i in range(12)]
    start = T0
    for u in range(users):
        genre = u % len(genres)
        seen = rng.sample(range(per_genre), 16)
        for j, m in enumerate(seen):  # 10 before the split, 6 after
            day = j if j < 10 else 12 + j
            lines.append(f"{u}\t{genre * 100 + m}\t{rng.choice((4, 5))}\t{start + day * 86400 + u}")
        for b in rng.sample(range(12), 4):  # blockbusters: half liked, half not
            lines.append(f"{u}\t{900 + b}\t{rng.choice((2, 4))}\t{start + rng.randrange(20) * 86400 + u}")
    (tmp / "u.item").write_text("\n".join(movies) + "\n")
    (tmp / "u.data").write_text("\n".join(lines) + "\n")
    return tmp / "u.data", tmp / "u.item", datetime.fromtimestamp(start, UTC) + timedelta(days=11)


def test_offline_evaluation_runs_on_movielens_and_finds_genre_taste(tmp_path: Path) -> None:
    ratings, movies, split = _taste_world(tmp_path)
    s = Settings(data_dir=tmp_path / "unused")  # the shipped taxonomy has no movie genres: one is made of the genres used
    scores = {x.method: x for x in evaluate_offline(s, ratings, movies, split, k=10, workdir=tmp_path)}
    ours, pop, trend = scores["topicfeed"], scores["popularity"], scores["trending"]
    assert ours.users == pop.users == 60
    assert ours.ndcg > 1.5 * pop.ndcg and ours.ndcg > 1.5 * trend.ndcg
    assert ours.recall > pop.recall
    with pytest.raises(ValueError, match="split-time"):
        evaluate_offline(s, ratings, movies, split + timedelta(days=400), workdir=tmp_path)


def test_ranking_weights_tuned_before_the_split_never_read_after_it(tmp_path: Path) -> None:
    from feed.evaluate import tune_weights
    from topicfeed.settings import FeedSettings

    ratings, movies, split = _taste_world(tmp_path)
    s = Settings(data_dir=tmp_path / "unused", feed=FeedSettings(tune_grid={"popularity_weight": (0.15, 4.0), "topic_scale": (0.0, 1.0)}))
    calls: list[tuple[int, int]] = []
    tuned = tune_weights(s, ratings, movies, split, days=4, workdir=tmp_path, fmt="movielens", progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert tuned.tried == 4 and tuned.users > 30 and tuned.validation_time == split - timedelta(days=4)
    assert tuned.tuned_ndcg >= tuned.default_ndcg > 0 and tuned.popularity_ndcg > 0
    assert tuned.feed.level_weights == s.feed.level_weights  # genre taste ranks here: the topic weights stay
    ours = evaluate_offline(s, ratings, movies, split, workdir=tmp_path, fmt="movielens", feed=tuned.feed)[0]
    assert ours.ndcg > 0
    # the same files with other ratings after the split (everybody loves the blockbusters): the same choice
    (tmp_path / "later").mkdir()
    after = int(split.timestamp()) + 3600
    extra = [f"{u}\t{900 + b}\t5\t{after + u}" for u in range(60) for b in range(12)]
    (tmp_path / "later" / "u.data").write_text(ratings.read_text() + "\n".join(extra) + "\n")
    again = tune_weights(s, tmp_path / "later" / "u.data", movies, split, days=4, workdir=tmp_path, fmt="movielens")
    assert (again.overrides, again.default_ndcg, again.tuned_ndcg, again.users) == (tuned.overrides, tuned.default_ndcg, tuned.tuned_ndcg, tuned.users)
    with pytest.raises(ValueError, match="tune_grid.bogus"):
        FeedSettings(tune_grid={"bogus": (1.0,)})
    with pytest.raises(ValueError, match="tune_grid.freshness_half_life_hours"):
        FeedSettings(tune_grid={"freshness_half_life_hours": (0.0, 24.0)})
    with pytest.raises(ValueError, match="tune_grid.intent_half_life_hours"):
        FeedSettings(tune_grid={"intent_half_life_hours": (0.0, 72.0)})
    with pytest.raises(ValueError, match="tune_grid.max_intent_items"):  # a count, not a weight
        FeedSettings(tune_grid={"max_intent_items": (1.0, 2.0)})
    assert FeedSettings(tune_grid={"intent_weight": (0.0, 0.1, 1.0), "intent_half_life_hours": (24.0, 72.0)}).tune_grid["intent_weight"] == (0.0, 0.1, 1.0)


def test_cli_feed_evaluate_tunes_then_scores(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    ratings, movies, split = _taste_world(tmp_path)
    env = {**os.environ, "TOPICFEED_DATA_DIR": str(tmp_path / "data"), "TOPICFEED_FEED__TUNE_GRID": '{"popularity_weight": [0.15, 4.0]}'}
    args = ["feed", "evaluate", "--events", str(ratings), "--documents", str(movies), "--format", "movielens", "--split-time", split.isoformat(), "--tune-days", "4"]
    got = subprocess.run([sys.executable, "-c", "from topicfeed.cli import main; main()", *args], env=env, capture_output=True, text=True, timeout=300)
    assert got.returncode == 0, got.stderr
    lines = got.stdout.splitlines()
    assert lines[0].startswith("tuned on the clicks from") and "2 weight sets" in lines[0] and "popularity there" in lines[0]
    assert [line.split()[0] for line in lines[1:4]] == ["topicfeed", "popularity", "trending"] and "ndcg@10=" in lines[1]


def test_paired_bootstrap_interval_of_the_ndcg_ratio() -> None:
    from feed.evaluate import Scores, paired_ratio_interval

    rng = np.random.default_rng(1)
    base = rng.random(200)
    better = Scores("a", 200, float(np.mean(base * 1.3)), 0, 0, 0, 0, per_user=(base * 1.3).tolist())
    same = Scores("b", 200, float(np.mean(base)), 0, 0, 0, 0, per_user=base.tolist())
    noisy = Scores("c", 200, 0, 0, 0, 0, 0, per_user=rng.permutation(base).tolist())
    assert paired_ratio_interval(better, same) == pytest.approx((1.3, 1.3))  # paired: the same users every draw
    lo, hi = paired_ratio_interval(noisy, same)
    assert lo < 1 < hi and hi - lo > 0.05
    with pytest.raises(ValueError, match="same users"):
        paired_ratio_interval(better, Scores("d", 3, 0, 0, 0, 0, 0, per_user=[1.0, 2.0, 3.0]))
