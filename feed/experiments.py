"""Experiments between rankers: a static A/B at fixed ratios, and a dynamic A/B whose traffic follows
batched Thompson sampling.

Each arm's posterior CTR is Beta(1 + clicks, 1 + impressions - clicks). The dynamic allocation is
each arm's chance to be the best under those posteriors (P(best), estimated by seeded Monte Carlo
draws), with a floor of traffic per arm (1% by default) so every arm keeps learning; until every arm
has ``warmup_impressions`` the initial weights allocate instead. α and β change only when a batch of
logged impressions and clicks is applied (``ExperimentState.apply``, hourly), never per event, so a
burst cannot lock one arm in; a batch id applied twice changes nothing.

Assignment: a user's arm comes from a hash of (experiment, user, the user's current TTL window): the
window is the user's own (its start is staggered by a hash of the user id), so each user keeps an arm
for ``ttl_s`` whatever the worker, and the allocation used is the one in force at the window's start.
For the static split the arm is a deterministic function of (experiment, user) alone.

``BatchedThompson``, ``EpsilonGreedy``, ``UCB1`` and ``Static`` are allocation policies with the same
interface, compared by ``benchmarks/sim_experiments.py``.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from topicfeed.settings import ExperimentSettings, Settings

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _unit(*parts: str) -> float:
    """A uniform number in [0, 1) from a hash of the parts (stable across processes and machines)."""
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") >> 11) / float(1 << 53)


def pick(weights: Mapping[str, float], u: float) -> str:
    """The arm whose cumulative-weight interval holds ``u`` (arms in name order)."""
    names = sorted(weights)
    total = sum(max(0.0, weights[n]) for n in names)
    if total <= 0:
        raise ValueError("no arm has a positive weight")
    acc = 0.0
    for n in names:
        acc += max(0.0, weights[n]) / total
        if u < acc:
            return n
    return names[-1]


def posterior_draws(alpha: np.ndarray, beta: np.ndarray, draws: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).beta(alpha[None, :], beta[None, :], size=(draws, len(alpha)))


def p_best(alpha: np.ndarray, beta: np.ndarray, draws: int = 20_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(P(arm is best), expected loss of choosing it: E[max - arm]) under Beta posteriors."""
    if len(alpha) == 1:
        return np.ones(1), np.zeros(1)
    x = posterior_draws(alpha, beta, draws, seed)
    best = np.bincount(np.argmax(x, axis=1), minlength=len(alpha)) / draws
    loss = (x.max(axis=1, keepdims=True) - x).mean(axis=0)
    return best, loss


def with_floor(weights: np.ndarray, floor: float) -> np.ndarray:
    """Weights summing to 1 with every arm at ``floor`` at least (water-filling)."""
    n = len(weights)
    if n == 0:
        return weights
    floor = min(floor, 1.0 / n)
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum() if w.sum() > 0 else np.full(n, 1.0 / n)
    low = w < floor
    for _ in range(n):
        rest = 1.0 - floor * low.sum()
        free = w[~low].sum()
        out = np.where(low, floor, w * (rest / free if free > 0 else 0.0))
        new_low = out < floor - 1e-15
        if not (new_low & ~low).any():
            return out
        low |= new_low
    return np.full(n, 1.0 / n)


# policies (the simulation study compares them; serving uses BatchedThompson or Static) ------------


@dataclass
class Policy:
    """An allocation over arms from per-arm (impressions, clicks) totals, recomputed once per batch."""

    arms: Sequence[str]
    initial: Sequence[float] | None = None
    warmup_impressions: int = 0
    floor: float = 0.0

    def _initial(self) -> np.ndarray:
        w = np.asarray(self.initial if self.initial is not None else [1.0] * len(self.arms), dtype=np.float64)
        return w / w.sum()

    def allocate(self, impressions: np.ndarray, clicks: np.ndarray, batch: int) -> np.ndarray:
        if (impressions < self.warmup_impressions).any():
            return with_floor(self._initial(), self.floor)
        return with_floor(self._allocate(impressions, clicks, batch), self.floor)

    def _allocate(self, impressions: np.ndarray, clicks: np.ndarray, batch: int) -> np.ndarray:
        raise NotImplementedError

    def winner(self, impressions: np.ndarray, clicks: np.ndarray) -> int:
        """The arm the experiment would declare best now (the highest posterior mean)."""
        return int(np.argmax((1 + clicks) / (2 + impressions)))


@dataclass
class Static(Policy):
    def _allocate(self, impressions: np.ndarray, clicks: np.ndarray, batch: int) -> np.ndarray:
        return self._initial()


@dataclass
class BatchedThompson(Policy):
    draws: int = 4_000
    seed: int = 0

    def _allocate(self, impressions: np.ndarray, clicks: np.ndarray, batch: int) -> np.ndarray:
        best, _ = p_best(1 + clicks, 1 + impressions - clicks, self.draws, self.seed + batch)
        return best

    def winner(self, impressions: np.ndarray, clicks: np.ndarray) -> int:
        best, _ = p_best(1 + clicks, 1 + impressions - clicks, self.draws, self.seed)
        return int(np.argmax(best))


@dataclass
class EpsilonGreedy(Policy):
    epsilon: float = 0.1

    def _allocate(self, impressions: np.ndarray, clicks: np.ndarray, batch: int) -> np.ndarray:
        w = np.full(len(self.arms), self.epsilon / len(self.arms))
        w[int(np.argmax(clicks / np.maximum(impressions, 1)))] += 1 - self.epsilon
        return w


@dataclass
class UCB1(Policy):
    def _allocate(self, impressions: np.ndarray, clicks: np.ndarray, batch: int) -> np.ndarray:
        n = np.maximum(impressions, 1)
        bound = clicks / n + np.sqrt(2 * math.log(max(2.0, impressions.sum())) / n)
        w = np.zeros(len(self.arms))
        w[int(np.argmax(bound))] = 1.0
        return w


# the experiment's state: counts, applied batches, allocations over time -------------------------


@dataclass
class ArmCounts:
    impressions: int = 0
    clicks: int = 0

    @property
    def alpha(self) -> int:
        return 1 + self.clicks

    @property
    def beta(self) -> int:
        return 1 + max(0, self.impressions - self.clicks)


@dataclass
class ExperimentState:
    """What a dynamic experiment has learned; saved as JSON (``save`` / ``load``)."""

    name: str
    arms: dict[str, ArmCounts]
    initial: dict[str, float]
    batches: list[str] = field(default_factory=list)  # ids of the batches applied, in order
    allocations: list[tuple[str, dict[str, float]]] = field(default_factory=list)  # (from ISO time, weights)
    log: list[dict[str, Any]] = field(default_factory=list)  # per batch: {"batch", "at", "counts": {arm: [impressions, clicks]}}
    _index: tuple[int, list[str], list[int]] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def new(cls, name: str, initial: Mapping[str, float], since: datetime) -> ExperimentState:
        weights = {a: float(w) for a, w in initial.items()}
        return cls(name, {a: ArmCounts() for a in weights}, weights, [], [(since.astimezone(UTC).isoformat(), _normalised(weights))])

    def apply(
        self, batch_id: str, counts: Mapping[str, tuple[int, int]], at: datetime, warmup_impressions: int, floor: float, seed: int = 0, dynamic: bool = True
    ) -> bool:
        """Add a batch's (impressions, clicks) per arm and recompute the allocation from ``at`` on
        (``dynamic=False``, a static split: the counts are kept, the initial shares stay). A batch id
        seen before changes nothing (returns False); counts for arms no longer in the experiment are
        ignored (an arm removed mid-test)."""
        if batch_id in self.batches:
            return False
        for arm, (imp, clk) in counts.items():  # all checked before any is added
            if clk > imp or imp < 0 or clk < 0:
                raise ValueError(f"batch {batch_id!r}: arm {arm!r}: clicks {clk} must lie in 0..impressions {imp}")
        for arm, (imp, clk) in counts.items():
            if arm in self.arms:
                self.arms[arm].impressions += int(imp)
                self.arms[arm].clicks += int(clk)
        self.batches.append(batch_id)
        self.log.append({"batch": batch_id, "at": at.astimezone(UTC).isoformat(), "counts": {a: [int(i), int(c)] for a, (i, c) in sorted(counts.items()) if a in self.arms}})
        names = sorted(self.arms)
        policy = (
            BatchedThompson(names, [self.initial.get(a, 0.0) for a in names], warmup_impressions, floor, seed=seed + len(self.batches))
            if dynamic
            else Static(names, [self.initial.get(a, 0.0) for a in names])
        )
        imp = np.array([self.arms[a].impressions for a in names], dtype=np.float64)
        clk = np.array([self.arms[a].clicks for a in names], dtype=np.float64)
        w = policy.allocate(imp, clk, 0)
        self.allocations.append((at.astimezone(UTC).isoformat(), {a: float(x) for a, x in zip(names, w)}))
        return True

    def remove_arm(self, arm: str, at: datetime) -> None:
        """Stop an arm: its traffic goes to the others from ``at`` on (its counts are kept in the log)."""
        if arm not in self.arms:
            return
        del self.arms[arm]
        self.initial.pop(arm, None)
        current = {a: w for a, w in self.allocation_at(at).items() if a != arm}
        self.allocations.append((at.astimezone(UTC).isoformat(), _normalised(current or {a: 1.0 for a in self.arms})))

    def allocation_at(self, when: datetime) -> dict[str, float]:
        """The allocation in force at ``when`` (the newest one from before it; of equal times, the
        one recorded last). A binary search over the allocations' times, indexed once per change."""
        stamp = when.astimezone(UTC).isoformat()
        if self._index is None or self._index[0] != len(self.allocations):
            order = sorted(range(len(self.allocations)), key=lambda i: (self.allocations[i][0], i))
            self._index = (len(self.allocations), [self.allocations[i][0] for i in order], order)
        _, keys, order = self._index
        k = bisect.bisect_right(keys, stamp) - 1
        current = self.allocations[order[k]][1] if k >= 0 else self.allocations[0][1]
        return {a: w for a, w in current.items() if a in self.arms} or _normalised({a: 1.0 for a in self.arms})

    def status(self, draws: int = 20_000) -> list[dict[str, float | int | str]]:
        """Per arm: impressions, clicks, CTR, α, β, P(best), expected loss."""
        names = sorted(self.arms)
        a = np.array([self.arms[n].alpha for n in names], dtype=np.float64)
        b = np.array([self.arms[n].beta for n in names], dtype=np.float64)
        best, loss = p_best(a, b, draws)
        return [
            {
                "arm": n,
                "impressions": self.arms[n].impressions,
                "clicks": self.arms[n].clicks,
                "ctr": self.arms[n].clicks / self.arms[n].impressions if self.arms[n].impressions else 0.0,
                "alpha": int(a[i]),
                "beta": int(b[i]),
                "p_best": float(best[i]),
                "expected_loss": float(loss[i]),
            }
            for i, n in enumerate(names)
        ]

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        data = {"name": self.name, "arms": {a: asdict(c) for a, c in self.arms.items()}, "initial": self.initial, "batches": self.batches, "allocations": self.allocations, "log": self.log}
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: Path) -> ExperimentState:
        data = json.loads(path.read_text())
        return cls(
            data["name"],
            {a: ArmCounts(**c) for a, c in data["arms"].items()},
            data["initial"],
            list(data["batches"]),
            [(s, w) for s, w in data["allocations"]],
            list(data.get("log", [])),
        )


def _normalised(weights: Mapping[str, float]) -> dict[str, float]:
    total = sum(weights.values())
    return {a: (w / total if total > 0 else 1.0 / len(weights)) for a, w in weights.items()}


# assignment ------------------------------------------------------------------------------------


def static_arm(experiment: str, user_id: str, weights: Mapping[str, float]) -> str:
    """The static split's arm: a deterministic function of (experiment, user)."""
    return pick(weights, _unit(experiment, user_id))


def window_start(experiment: str, user_id: str, now: datetime, ttl_s: float) -> datetime:
    """The start of the user's current assignment window (each user's windows are offset by a hash);
    exact integer microseconds, so a window's own start maps to itself."""
    ttl = max(1, round(ttl_s * 1_000_000))
    offset = int(_unit("offset", experiment, user_id) * ttl)
    t = (now.astimezone(UTC) - _EPOCH) // timedelta(microseconds=1)
    return _EPOCH + timedelta(microseconds=((t - offset) // ttl) * ttl + offset)


def dynamic_arm(state: ExperimentState, user_id: str, now: datetime, ttl_s: float) -> str:
    """The dynamic split's arm: sticky for the user's TTL window, drawn from the allocation in force
    when that window began."""
    start = window_start(state.name, user_id, now, ttl_s)
    return pick(state.allocation_at(start), _unit(state.name, user_id, start.isoformat()))


@dataclass(frozen=True)
class Assignment:
    arm: str
    fallback: bool  # the state could not be read: the static weights decided


def assign_with(name: str, kind: str, weights: Mapping[str, float], user_id: str, now: datetime, ttl_s: float, state: ExperimentState | None) -> Assignment:
    """The user's arm: the static split, or the dynamic one from ``state``. A dynamic experiment
    without a usable state (none, or one whose arm for the user is not in ``weights``) falls back to
    the static weights and says so."""
    if kind == "static":
        return Assignment(static_arm(name, user_id, weights), False)
    arm = dynamic_arm(state, user_id, now, ttl_s) if state is not None and state.arms else None
    if arm is None or arm not in weights:
        return Assignment(static_arm(name, user_id, weights), True)
    return Assignment(arm, False)


def load_state(path: Path | None) -> ExperimentState | None:
    """The saved state, or None when it cannot be read (no path, missing, corrupt)."""
    if path is None:
        return None
    try:
        return ExperimentState.load(path)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def assign(name: str, kind: str, weights: Mapping[str, float], user_id: str, now: datetime, ttl_s: float, state_path: Path | None = None) -> Assignment:
    """``assign_with`` on the state saved at ``state_path`` (read here; a dynamic experiment only)."""
    return assign_with(name, kind, weights, user_id, now, ttl_s, load_state(state_path) if kind != "static" else None)


# the batch update from the event log (the experiment_update DAG, ``topicfeed experiments batch``) ------


def state_path(settings: Settings, name: str) -> Path:
    return settings.experiments_dir / f"{name}.json"


def lake_counts(lake_dir: Path, name: str, start: datetime, end: datetime) -> dict[str, tuple[int, int]]:
    """Per arm: (impressions, clicks) the lake's event log holds for the experiment in ``[start, end)``."""
    import pyarrow as pa  # here, not at import: the CLI's experiments commands stay quick
    import pyarrow.compute as pc

    from topicfeed.lake import Lake

    expr = (
        (pc.field("experiment") == name)
        & (pc.field("ts") >= pa.scalar(start, type=pa.timestamp("us", tz="UTC")))
        & (pc.field("ts") < pa.scalar(end, type=pa.timestamp("us", tz="UTC")))
        & (pc.field("date") >= f"{start.astimezone(UTC):%Y-%m-%d}")
        & (pc.field("date") <= f"{end.astimezone(UTC):%Y-%m-%d}")
        & pc.field("type").isin(["impression", "click"])
    )
    table = Lake(lake_dir).read("events", columns=["arm", "type"], filter=expr)
    out: dict[str, list[int]] = {}
    for row in table.group_by(["arm", "type"]).aggregate([([], "count_all")]).to_pylist():
        out.setdefault(row["arm"], [0, 0])[0 if row["type"] == "impression" else 1] += int(row["count_all"])
    return {a: (i, c) for a, (i, c) in sorted(out.items())}


@dataclass(frozen=True)
class BatchResult:
    experiment: str
    batch: str
    applied: bool  # False: this window was applied before (nothing changed)
    counts: dict[str, tuple[int, int]]
    unmatched_clicks: int  # clicks beyond an arm's impressions (their impressions were not logged): not counted
    path: Path


def update_experiment(settings: Settings, experiment: ExperimentSettings, start: datetime, end: datetime) -> BatchResult:
    """Apply the window's logged impressions and clicks to the experiment's state, once: the batch id
    is the window, so a rerun changes nothing. A missing state is started from the settings; an arm
    no longer in the settings is removed, a new one added with its initial share."""
    path = state_path(settings, experiment.name)
    state = ExperimentState.load(path) if path.exists() else ExperimentState.new(experiment.name, experiment.weights(), experiment.start or start)
    for arm in sorted(set(state.arms) - set(experiment.arms)):
        state.remove_arm(arm, start)
    for arm in sorted(set(experiment.arms) - set(state.arms)):
        state.arms[arm] = ArmCounts()
        state.initial[arm] = experiment.weights()[arm]
    raw = lake_counts(settings.lake_dir, experiment.name, start, end)
    counts = {a: (i, min(c, i)) for a, (i, c) in raw.items() if a in experiment.arms}
    unmatched = sum(c - min(c, i) for a, (i, c) in raw.items() if a in experiment.arms)
    batch = f"{start.astimezone(UTC).isoformat()}/{end.astimezone(UTC).isoformat()}"
    applied = state.apply(batch, counts, end, experiment.warmup_impressions, experiment.floor, dynamic=experiment.type == "dynamic")
    state.save(path)
    return BatchResult(experiment.name, batch, applied, counts, unmatched, path)


def update_all(settings: Settings, start: datetime, end: datetime) -> list[BatchResult]:
    """Every experiment of the settings that was live during the window."""
    return [update_experiment(settings, e, start, end) for e in settings.feed.experiments if (e.start is None or e.start < end) and (e.end is None or start < e.end)]
