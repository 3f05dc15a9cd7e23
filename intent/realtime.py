"""The near-real-time path: a search with clicks, as it arrives, refined and pushed online.

``IntentQueue(settings, refiner)`` runs one worker thread. ``submit`` queues (user, query, clicked
titles, time) and returns at once; the worker takes what has queued up (micro-batches: at most
``max_batch``, waiting at most ``max_wait_s`` for more), refines the batch in one ``predict`` call,
pushes the intents to the online store (``featurestore.intents.push_intents``: the user's next feed
request reads them) and calls ``on_batch`` (its size and each search's wait, submit to pushed) and
``on_refined`` per search. A failed batch is counted and logged, and
the service keeps serving: the search still counts as a fresh interest under its raw query.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from intent.model import IntentRefiner, Request
from topicfeed.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FreshSearch:
    user_id: str
    query: str
    titles: tuple[str, ...]
    ts: datetime


class IntentQueue:
    def __init__(
        self,
        settings: Settings,
        refiner: IntentRefiner,
        on_refined: Callable[[FreshSearch, str], None] | None = None,
        push: Callable[[list[dict]], object] | None = None,
        on_batch: Callable[[int, list[float]], None] | None = None,
        max_batch: int = 32,
        max_wait_s: float = 0.05,
    ) -> None:
        from featurestore.intents import push_intents
        from featurestore.repo import get_store

        self.refiner = refiner
        store = get_store(settings) if push is None else None  # made once: a Feast store per push costs more than the push
        self.on_refined = on_refined
        self.on_batch = on_batch
        self.push = push or (lambda records: push_intents(settings, records, store=store))
        self.max_batch, self.max_wait_s = max_batch, max_wait_s
        self._queue: queue.Queue[FreshSearch | None] = queue.Queue()
        self.refined = 0
        self.failed_batches = 0
        self._submitted: dict[int, float] = {}
        self._thread = threading.Thread(target=self._run, name="intent-refiner", daemon=True)
        self._thread.start()

    def submit(self, search: FreshSearch) -> None:
        self._submitted[id(search)] = time.perf_counter()
        self._queue.put(search)

    def close(self, timeout: float = 10.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def _take(self) -> list[FreshSearch] | None:
        first = self._queue.get()
        if first is None:
            return None
        batch = [first]
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch:
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if item is None:
                self._queue.put(None)
                break
            batch.append(item)
        return batch

    def _run(self) -> None:
        while (batch := self._take()) is not None:
            try:
                refined = self.refiner.predict([Request(s.query, s.titles) for s in batch])
                self.push([{"user_id": s.user_id, "query": s.query, "refined_query": r, "ts": s.ts.isoformat()} for s, r in zip(batch, refined)])
            except Exception:  # noqa: BLE001 - the service keeps serving; the raw query stays the reason
                self.failed_batches += 1
                log.exception("refining %d fresh searches failed", len(batch))
                for s in batch:
                    self._submitted.pop(id(s), None)
                continue
            now = time.perf_counter()
            waited = [now - self._submitted.pop(id(s), now) for s in batch]
            if self.on_batch:
                self.on_batch(len(batch), waited)
            for s, r in zip(batch, refined):
                self.refined += 1
                if self.on_refined:
                    self.on_refined(s, r)
