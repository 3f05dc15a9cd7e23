"""The service's in-process state: the feed memo (exact reuse, stamps, least-recently-used eviction) and the fresh searches (bounded per user and in users)."""

from __future__ import annotations

from feed.service import FeedMemo


def test_memo_answers_only_the_same_stamp_and_evicts_the_least_recently_used() -> None:
    memo = FeedMemo(2)
    memo.put(("a", 20), (0, "p1", 0), b"A", {"topics": 20}, False)
    memo.put(("b", 20), (0, "p1", 0), b"B", {}, True)
    assert memo.get(("a", 20), (0, "p1", 0)) == (b"A", {"topics": 20}, False)
    assert memo.get(("a", 20), (1, "p1", 0)) is None  # catalog refreshed
    assert memo.get(("a", 20), (0, "p2", 0)) is None  # profile changed
    assert memo.get(("a", 20), (0, "p1", 1)) is None  # the user's events changed
    memo.put(("c", 20), (0, "p1", 0), b"C", {}, False)  # "b" is the least recently used
    assert len(memo) == 2 and memo.get(("b", 20), (0, "p1", 0)) is None and memo.get(("a", 20), (0, "p1", 0)) is not None


def test_a_memo_of_size_zero_keeps_nothing() -> None:
    memo = FeedMemo(0)
    memo.put(("a", 20), (0,), b"A", {}, False)
    assert len(memo) == 0 and memo.get(("a", 20), (0,)) is None


def test_fresh_searches_keep_the_last_searches_and_titles_of_the_users_who_searched_last() -> None:
    from datetime import UTC, datetime, timedelta

    from feed.service import FreshSearches

    t0 = datetime(2026, 12, 6, tzinfo=UTC)
    fresh = FreshSearches(users=2, per_user=2)
    assert fresh.add("u", "saw", {"a": 1.0}, "T1", t0) == ("T1",)
    assert fresh.add("u", "saw", {"b": 1.0}, "T2", t0 + timedelta(seconds=5)) == ("T1", "T2")  # the same search
    [s] = fresh.recent("u", t0 - timedelta(hours=1))
    assert s.query == "saw" and s.topics == {"a": 1.0, "b": 1.0} and s.ts == t0 + timedelta(seconds=5)
    assert fresh.add("u", "saw", {}, "T3", t0) == ("T1", "T2", "T3") and fresh.add("u", "saw", {}, "T4", t0) == ("T2", "T3", "T4")
    assert fresh.add("u", "saw", {}, "T2", t0) == ("T3", "T4", "T2")  # clicked again: the newest
    fresh.refined("u", "saw", "makita jig saw")
    assert fresh.recent("u", t0 - timedelta(hours=1))[0].refined == "makita jig saw"
    fresh.add("u", "drill", {}, "D1", t0 + timedelta(minutes=1))
    fresh.add("u", "sander", {}, "S1", t0 + timedelta(minutes=2))  # a third search: "saw" leaves, with its titles
    assert [s.query for s in fresh.recent("u", t0 - timedelta(hours=1))] == ["drill", "sander"] and fresh.titles("u", "saw") == ()
    assert [s.query for s in fresh.recent("u", t0 + timedelta(seconds=90))] == ["sander"]  # only those after `since`
    fresh.add("v", "drill", {}, "D2", t0)
    fresh.add("u", "sander", {}, "S2", t0)  # u searched last, v before
    fresh.add("w", "lamp", {}, "L1", t0)  # a third user: v, who searched longest ago, leaves
    assert len(fresh) == 2 and fresh.recent("v", t0 - timedelta(hours=1)) == [] and fresh.titles("v", "drill") == ()
    assert fresh.titles("u", "sander") == ("S1", "S2") and fresh.titles("w", "lamp") == ("L1",)
