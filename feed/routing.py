"""Serving side of experiments: per feed request, the experiment live on the surface, the user's arm
and that arm's ranker (``ExperimentRouter.choose``), with the static shares as the fallback when a
dynamic experiment's state cannot be read. Kept apart from ``feed.experiments`` (policies, state,
batch updates), which the CLI and the DAG import without the ranker's dependencies."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from feed.experiments import ExperimentState, assign_with, load_state, state_path
from feed.ranker import Ranker
from topicfeed.settings import DEFAULT_RANKER, ExperimentSettings, Settings


@dataclass(frozen=True)
class Served:
    """The experiment and arm that served a page (the feed response and its events carry them)."""

    experiment: str
    arm: str
    fallback: bool  # a dynamic experiment's state could not be read: the static shares decided


class ExperimentRouter:
    """Per request: the experiment live on the surface (settings), the user's arm, and that arm's
    ranker. Rankers are built once; a dynamic experiment's state is held in memory and re-read when
    its file changes (checked at most every ``feed.experiment_refresh_s``)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        feed = settings.feed
        self.rankers: dict[str, Ranker] = {name: Ranker(feed.ranker_settings(name)) for name in [DEFAULT_RANKER, *feed.rankers]}
        self._states: dict[str, tuple[float, int | None, ExperimentState | None]] = {}

    def state(self, experiment: ExperimentSettings) -> ExperimentState | None:
        checked = self._states.get(experiment.name)
        clock = time.monotonic()
        if checked is not None and clock - checked[0] < self.settings.feed.experiment_refresh_s:
            return checked[2]
        path = state_path(self.settings, experiment.name)
        try:
            mtime: int | None = path.stat().st_mtime_ns
        except OSError:
            mtime = None
        if checked is not None and mtime is not None and checked[1] == mtime:
            state = checked[2]  # the file has not changed
        else:
            state = load_state(path) if mtime is not None else None
        self._states[experiment.name] = (clock, mtime, state)
        return state

    def choose(self, user_id: str, surface: str, now: datetime) -> tuple[Ranker, Served | None]:
        experiment = self.settings.feed.experiment_for(surface, now)
        if experiment is None:
            return self.rankers[DEFAULT_RANKER], None
        state = self.state(experiment) if experiment.type == "dynamic" else None
        got = assign_with(experiment.name, experiment.type, experiment.weights(), user_id, now, experiment.ttl_s, state)
        return self.rankers[got.arm], Served(experiment.name, got.arm, got.fallback)
