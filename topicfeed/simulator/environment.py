"""The simulator's click model as an environment: given a user, a time and a ranked list, the chance of
a click on each slot, from the user's true interests (as they stand at the end of the simulated
period), the position bias and each document's quality, exactly as the home feed's logs were drawn:

    P(click) = examination(position) x quality(doc) x (base + gain x match(user, doc))

``simulate(...).environment`` is the one of the world just simulated; ``benchmarks/sim_online.py``
replays a simulated week of feed sessions against it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np

from topicfeed.simulator.logs import CLICK_MODEL, HOMEFEED, LogSimulator, examination


class ClickEnvironment:
    def __init__(self, logs: LogSimulator, surface: int = HOMEFEED) -> None:
        self._logs = logs
        self.world = logs.w
        self.base, self.gain = CLICK_MODEL[surface]
        self.user_index = {str(u): i for i, u in enumerate(self.world.users.user_id)}
        self.doc_index = {str(d): i for i, d in enumerate(self.world.docs.doc_id)}

    def segment(self, user_id: str) -> str:
        return "light" if self.world.users.light[self.user_index[user_id]] else "heavy"

    def feed_sessions_per_day(self, user_id: str) -> float:
        return float(self.world.users.feed_rate[self.user_index[user_id]])

    def click_probabilities(self, user_id: str, ranked: Sequence[str], when: datetime | None = None) -> np.ndarray:
        """P(click) of each slot of ``ranked`` (document ids, best first) for ``user_id``; unknown
        documents get 0. ``when`` is accepted for the interface: interests are those at the end."""
        u = self.user_index[user_id]
        docs = np.array([self.doc_index.get(d, -1) for d in ranked], dtype=np.int64)
        known = docs >= 0
        p = np.zeros(len(docs))
        if known.any():
            d = docs[known]
            match = self._logs._match(np.full(len(d), u), d)
            pos = np.flatnonzero(known)
            p[known] = examination(pos) * self.world.docs.quality[d] * (self.base + self.gain * match)
        return p

    def sample_clicks(self, user_id: str, ranked: Sequence[str], rng: np.random.Generator) -> np.ndarray:
        return rng.random(len(ranked)) < self.click_probabilities(user_id, ranked)
