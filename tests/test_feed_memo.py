"""The service's feed memo: exact reuse, stamps, least-recently-used eviction."""

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
