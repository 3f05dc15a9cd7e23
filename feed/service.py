"""The feed service: FastAPI routers over the ranker, the online profile and the event sink.

``create_app(settings)`` builds the app; heavy things (the catalog, the profile reader, the event
index) are loaded once in ``lifespan`` and passed to the routes as dependencies. The OpenAPI page
(``/docs``, ``/openapi.json``) is the API reference. ``topicfeed serve`` runs it on uvicorn.

* ``GET /v1/feed/{user_id}``: the ranked feed with a reason per item; an unknown user, or an online
  store that fails or does not answer within ``feed.profile_timeout_s``, gets the non-personalized
  feed with ``fallback: true``, never an error. After a store failure, reads are skipped for one
  second (a breaker), so a dead Redis costs no timeout per request. The route and its dependencies
  are ``async``: ranking is CPU work of about 1 ms, and running it on the event loop saves the
  thread-pool hops and GIL hand-offs that cost more than the work (bench_feed: 340 -> 470 req/s,
  p99 150 -> 43 ms). Each worker keeps rendered feeds in a memo (``feed.memo_size``) and reuses one
  only while everything the feed is a function of is unchanged: the catalog version, the stored
  profile's stamp (row timestamps and intents), the user's events through this worker and the query;
  every request still reads the profile once.
* ``POST /v1/events`` (API key): events appended durably to the lake before the reply; invalid ones
  quarantined and reported by index and field; a retried batch adds nothing. Clicks are excluded from
  the user's next feeds at once, and a search followed by clicks counts as a fresh interest (the hook
  the intent refiner fills).
* ``GET /v1/suggestions/{user_id}``: searches to suggest to the user (a search box's "search again"),
  newest first: each fresh search through this worker as Q with the word of its clicked titles that
  the log's users type most (``intent.suggest.QuerySuggester``, saved beside the refiner), else its
  refined Q*, else Q; then the stored profile's recent intents, each as the suggestion pushed with
  it (by the batch DAG or the online refiner), else as its Q*.
* ``GET /v1/users/{user_id}/profile`` (API key), ``GET /healthz``, ``GET /metrics`` (Prometheus).
"""

from __future__ import annotations

import gc
import hmac
import os
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request, Security
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import APIKeyHeader
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import values as prometheus_values
from prometheus_client.multiprocess import MultiProcessCollector
from pydantic import BaseModel, Field

from featurestore.online import OnlineStoreUnavailable, check_online_store
from featurestore.profile import ProfileReader, UserProfile
from feed.catalog import Catalog, CatalogHolder
from feed.dashboard import dashboard_data, render_dashboard
from feed.events import EventSink
from feed.experiments import ExperimentState, state_path
from feed.ranker import Feed, RecentSearch
from feed.routing import ExperimentRouter
from intent.realtime import FreshSearch, IntentProcess, IntentQueue
from intent.students import is_saved_refiner, load_refiner
from intent.suggest import suggester_for
from intent.text import normalize
from topicfeed.settings import Settings

RECENT_SEARCHES = 3  # fresh searches kept per user
SEARCH_TITLES = 3  # clicked titles kept per fresh search (the refiner's prompt takes 3)
SEARCH_TTL = timedelta(hours=1)
BREAKER_S = 1.0


# API models -------------------------------------------------------------------------------------
class ReasonModel(BaseModel):
    kind: Literal["intent", "topic", "trending", "popular", "similar", "fresh", "partner"]
    text: str = Field(examples=["because you recently searched 'aespa japan album'"])


class FeedItemModel(BaseModel):
    item_id: str
    score: float
    reason: ReasonModel
    source: str = Field(description="the candidate source that offered the item")


class ServedModel(BaseModel):
    name: str = Field(description="the experiment live on this surface")
    arm: str = Field(description="the ranker (arm) that ranked this page; send both back on the page's impression and click events")


class FeedResponse(BaseModel):
    user_id: str
    items: list[FeedItemModel]
    fallback: bool = Field(description="true: the non-personalized feed (unknown user, or the online store did not answer)")
    experiment: ServedModel | None = Field(None, description="the experiment and arm that served the page; null when none is live on the surface")


class SuggestionModel(BaseModel):
    query: str = Field(examples=["makita jig saw"], description="the search to suggest")
    kind: Literal["log_word", "refined", "recent"] = Field(
        description="log_word: the user's query with the word of the clicked titles that the log's users type most; refined: the intent refiner's Q*; recent: the query as typed"
    )
    searched: str | None = Field(None, examples=["makita saw"], description="the query the user typed, where known")
    ts: datetime = Field(description="when the user searched (the last click)")


class SuggestionsResponse(BaseModel):
    user_id: str
    suggestions: list[SuggestionModel]
    fallback: bool = Field(description="true: the online store did not answer, so only the searches this worker saw are listed")


class EventsRequest(BaseModel):
    events: list[Any] = Field(
        description="records of the Event schema (event_id, user_id, domain, type, item_id?, query?, position?, ts, experiment?, arm?); each is validated on its own; "
        "a page's impressions and clicks carry the experiment and arm its feed response named"
    )


class RejectedEvent(BaseModel):
    index: int
    field: str
    message: str


class EventsResponse(BaseModel):
    accepted: int
    duplicates: int
    rejected: list[RejectedEvent]


class ExperimentSummary(BaseModel):
    name: str
    surface: str
    type: Literal["static", "dynamic"]
    arms: dict[str, float] = Field(description="initial shares")
    live: bool
    has_state: bool = Field(description="a batch update has written its state (counts, allocations)")


class HealthResponse(BaseModel):
    status: Literal["ok", "degraded"]
    store: dict[str, Any]
    catalog_items: int
    catalog_age_s: float
    refiner: dict[str, Any] | None = Field(
        None, description="the near-real-time intent refiner: its worker (process or thread), whether it is up, searches refined, failed batches; null without a trained refiner"
    )


# state ----------------------------------------------------------------------------------------------
@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.latency = Histogram("topicfeed_request_seconds", "request latency", ["route"], registry=r, buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1, 5))
        self.errors = Counter("topicfeed_request_errors", "responses with a 5xx status", ["route"], registry=r)
        self.fallbacks = Counter("topicfeed_feed_fallbacks", "non-personalized feeds served", ["reason"], registry=r)
        self.items = Counter("topicfeed_feed_items", "items served, by candidate source", ["source"], registry=r)
        self.events = Counter("topicfeed_events", "events received through the API", ["outcome"], registry=r)
        self.intents = Counter("topicfeed_intents_refined", "fresh searches refined and pushed online by the intent refiner", registry=r)
        self.intent_seconds = Histogram(
            "topicfeed_intent_seconds", "a fresh search's time from arrival to its refined intent pushed online", registry=r, buckets=(0.1, 0.25, 0.5, 1, 1.5, 2, 3, 5, 10)
        )
        self.intent_failures = Counter("topicfeed_intent_failures", "fresh searches the refiner failed to refine (they keep their raw query as the reason)", registry=r)
        self.intent_batch = Histogram("topicfeed_intent_batch_size", "fresh searches refined together (micro-batches)", registry=r, buckets=(1, 2, 4, 8, 16, 32))
        self.suggestions = Counter("topicfeed_search_suggestions", "search suggestions served, by kind", ["kind"], registry=r)
        self.memo = Counter("topicfeed_feed_memo", "feed requests answered from the memo (hit) or ranked and kept (miss)", ["outcome"], registry=r)
        self.arms = Counter("topicfeed_experiment_pages", "feed pages served under an experiment, by arm", ["experiment", "arm"], registry=r)
        self.experiment_fallbacks = Counter(
            "topicfeed_experiment_fallbacks", "pages of a dynamic experiment assigned by the static shares because its state could not be read", ["experiment"], registry=r
        )


def profile_stamp(profile: UserProfile) -> tuple[Any, ...]:
    """What identifies the stored profile's content: its rows' feature timestamps and the intents (a
    recomputed row gets a new timestamp; the intents list is pushed without recomputation)."""
    return (profile.found, profile.preferences_at, profile.intents_at, profile.last_refined_query, tuple(profile.recent_refined_queries), tuple(profile.recent_intent_ts))


class FeedMemo:
    """Rendered feed bodies reused exactly: an entry answers a request only when its stamp (catalog
    version, profile stamp, the user's event version) equals the request's; least recently used out."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[Any, ...], tuple[tuple[Any, ...], bytes, dict[str, int], bool]] = OrderedDict()

    def get(self, key: tuple[Any, ...], stamp: tuple[Any, ...]) -> tuple[bytes, dict[str, int], bool] | None:
        got = self._entries.get(key)
        if got is None or got[0] != stamp:
            return None
        self._entries.move_to_end(key)
        return got[1], got[2], got[3]

    def put(self, key: tuple[Any, ...], stamp: tuple[Any, ...], body: bytes, sources: dict[str, int], fallback: bool) -> None:
        if self.size <= 0:
            return
        self._entries[key] = (stamp, body, sources, fallback)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


class FreshSearches:
    """Searches with clicks that arrived through this worker: per user the last ``per_user`` searches
    (query, the clicked items' topics, time, refined Q* once back) and each search's last
    ``SEARCH_TITLES`` clicked titles, for the ``users`` users who searched last (the one who searched
    longest ago leaves first), so a long-running worker's memory stays bounded."""

    def __init__(self, users: int, per_user: int = RECENT_SEARCHES) -> None:
        self.users = users
        self.per_user = per_user
        self._searches: OrderedDict[str, list[RecentSearch]] = OrderedDict()
        self._titles: dict[tuple[str, str], list[str]] = {}
        self._lock = threading.Lock()

    def add(self, user: str, query: str, topics: dict[str, float], title: str, ts: datetime) -> tuple[str, ...]:
        """A click under ``query``: the same search as the user's last one (topics merged) or a new
        one; returns the search's clicked titles kept, oldest first."""
        with self._lock:
            searches = self._searches.setdefault(user, [])
            self._searches.move_to_end(user)
            if searches and searches[-1].query == query:
                last = searches[-1]
                searches[-1] = RecentSearch(query, {**last.topics, **topics}, max(ts, last.ts), last.refined)
            else:
                searches.append(RecentSearch(query, dict(topics), ts))
                if len(searches) > self.per_user:
                    gone = searches.pop(0)
                    if all(s.query != gone.query for s in searches):
                        self._titles.pop((user, gone.query), None)
            clicked = self._titles.setdefault((user, query), [])
            if title in clicked:
                clicked.remove(title)
            clicked.append(title)
            del clicked[:-SEARCH_TITLES]
            while len(self._searches) > self.users:
                old, dropped = self._searches.popitem(last=False)
                for s in dropped:
                    self._titles.pop((old, s.query), None)
            return tuple(clicked)

    def refined(self, user: str, query: str, refined: str) -> None:
        """The refiner's Q* for the user's searches of ``query`` (kept only while they are)."""
        with self._lock:
            searches = self._searches.get(user, [])
            for k, s in enumerate(searches):
                if s.query == query:
                    searches[k] = RecentSearch(s.query, s.topics, s.ts, refined)

    def recent(self, user: str, since: datetime) -> list[RecentSearch]:
        """The user's searches after ``since``, oldest first."""
        with self._lock:
            return [s for s in self._searches.get(user, ()) if s.ts > since]

    def titles(self, user: str, query: str) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._titles.get((user, query), ()))

    def __len__(self) -> int:
        return len(self._searches)


class FeedState:
    """Everything the routes share, made once in ``lifespan``."""

    def __init__(self, settings: Settings, catalog_loader: Callable[[], Catalog] | None = None) -> None:
        self.settings = settings
        self.holder = CatalogHolder(catalog_loader or (lambda: Catalog.load(settings)))
        reader_settings = settings.model_copy(update={"redis_timeout_s": settings.feed.profile_timeout_s})
        self.reader = ProfileReader(reader_settings)
        self.experiments = ExperimentRouter(settings)
        self.sink = EventSink(settings)
        self.metrics = Metrics()
        self.searches = FreshSearches(settings.feed.fresh_search_users)
        self.memo = FeedMemo(settings.feed.memo_size)
        self.user_version: dict[str, int] = {}  # +1 after each event of the user that changes their feed
        self.suggester = suggester_for(settings, settings.intent_dir)
        self.intents: IntentQueue | IntentProcess | None = None
        if settings.feed.refine_searches and is_saved_refiner(settings.intent_dir):
            report = {"on_refined": self.on_refined, "on_batch": self.on_intent_batch, "on_failed": self.metrics.intent_failures.inc}
            if settings.feed.refiner_process:
                self.intents = IntentProcess(settings, settings.intent_dir, **report)
            else:
                refiner = load_refiner(settings.intent_dir, **settings.intent.serving())
                self.intents = IntentQueue(settings, refiner, suggester=self.suggester, **report)
        self._breaker_until = 0.0
        self._lock = threading.Lock()

    # profile reads with a breaker --------------------------------------------------------------
    def profile(self, user_id: str) -> UserProfile | None:
        """The user's profile, or ``None`` when the store failed (or failed less than a second ago)."""
        if time.monotonic() < self._breaker_until:
            return None
        try:
            return self.reader.get(user_id)
        except (OnlineStoreUnavailable, OSError, RuntimeError):
            self._breaker_until = time.monotonic() + BREAKER_S
            return None

    def recent_searches(self, user_id: str, now: datetime) -> list[RecentSearch]:
        return self.searches.recent(user_id, now - SEARCH_TTL)

    def suggestions(self, user_id: str, profile: UserProfile | None, now: datetime, limit: int) -> list[dict[str, Any]]:
        """Searches to suggest, newest first, one per search and no text twice: the fresh searches
        of this worker (Q with the log's most-typed word of the clicked titles where the suggester
        has one, else the refined Q*, else Q), then the stored profile's recent intents (those not
        already a fresh search's): the suggestion stored with each, else its refined Q*."""
        found: list[tuple[datetime, str, str, str | None]] = []
        fresh: set[str] = set()
        for s in self.recent_searches(user_id, now):
            titles = self.searches.titles(user_id, s.query)
            text, kind = s.query, "recent"
            if self.suggester is not None and titles and (suggested := self.suggester.suggest(s.query, titles)) != normalize(s.query):
                text, kind = suggested, "log_word"
            elif s.refined and normalize(s.refined) != normalize(s.query):
                text, kind = s.refined, "refined"
            if s.refined:
                fresh.add(normalize(s.refined))
            found.append((s.ts, text, kind, s.query))
        if profile is not None:
            for refined, epoch, suggested in zip(profile.recent_refined_queries, profile.recent_intent_ts, profile.recent_suggested_queries):
                if normalize(refined) not in fresh:
                    searched = profile.last_query if refined == profile.last_refined_query else None
                    text, kind = (suggested, "log_word") if suggested and self.settings.feed.search_suggestions else (refined, "refined")
                    found.append((datetime.fromtimestamp(epoch, UTC), text, kind, searched))
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        for ts, text, kind, searched in sorted(found, key=lambda f: f[0], reverse=True):
            key = normalize(text)
            if key and key not in seen and len(out) < limit:
                seen.add(key)
                out.append({"query": text, "kind": kind, "searched": searched, "ts": ts})
        return out

    def on_events(self, rows: list[dict[str, Any]]) -> None:
        """Clicks leave the user's next feeds at once; a search with clicks is a fresh interest."""
        catalog = self.holder.catalog
        last_query: dict[str, str] = {}
        for row in sorted(rows, key=lambda r: r["ts"]):
            user = row["user_id"]
            if row["type"] == "search":
                last_query[user] = row["query"]
                continue
            if row["type"] != "click" or row["item_id"] not in catalog.index:
                continue
            i = catalog.index[row["item_id"]]
            with self._lock:
                catalog.clicked.setdefault(user, set()).add(i)
            query = row.get("query") or last_query.get(user)
            if row["domain"] == "search" and query:
                self.on_search_click(user, query, i, row["ts"])
            with self._lock:  # after the change: a feed read at the new version sees it
                self.user_version[user] = self.user_version.get(user, 0) + 1

    def on_search_click(self, user: str, query: str, item: int, ts: datetime) -> None:
        """The near-real-time intent hook: the clicked item's topics count at once as a fresh interest
        under the query; with a trained refiner, the search (its clicked titles so far) is also queued
        to be refined and pushed online, and the reason then says the refined query."""
        catalog = self.holder.catalog
        titles = self.searches.add(user, query, catalog.item_topics[item], catalog.titles[item], ts)
        if self.intents is not None:
            self.intents.submit(FreshSearch(user, query, titles, ts))

    def on_intent_batch(self, size: int, seconds: list[float]) -> None:
        """A micro-batch of fresh searches refined and pushed: its size and each search's wait, as metrics."""
        self.metrics.intent_batch.observe(size)
        for x in seconds:
            self.metrics.intent_seconds.observe(x)

    def on_refined(self, search: FreshSearch, refined: str) -> None:
        """The refiner's answer for a fresh search: it becomes the search's reason text."""
        self.searches.refined(search.user_id, search.query, refined)
        with self._lock:
            self.user_version[search.user_id] = self.user_version.get(search.user_id, 0) + 1
        self.metrics.intents.inc()


async def get_state(request: Request) -> FeedState:
    return request.app.state.feed


StateDep = Annotated[FeedState, Depends(get_state)]


def _check_key(state: FeedState, x_api_key: str | None) -> None:
    expected = state.settings.api_key
    if expected is None:
        raise HTTPException(401, "this endpoint needs an API key, and none is configured (TOPICFEED_API_KEY)")
    if x_api_key is None or not hmac.compare_digest(x_api_key, expected):
        raise HTTPException(401, "missing or wrong X-API-Key")


api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="the service's API key (settings: api_key, TOPICFEED_API_KEY)")
ApiKey = Annotated[str | None, Security(api_key_header)]


async def require_key(state: StateDep, x_api_key: ApiKey) -> None:
    _check_key(state, x_api_key)


# routers ----------------------------------------------------------------------------------------------
feed_router = APIRouter(prefix="/v1/feed", tags=["feed"])
events_router = APIRouter(prefix="/v1/events", tags=["events"])
suggestions_router = APIRouter(prefix="/v1/suggestions", tags=["suggestions"])
users_router = APIRouter(prefix="/v1/users", tags=["users (admin)"])
ops_router = APIRouter(tags=["operations"])
experiments_router = APIRouter(prefix="/v1/experiments", tags=["experiments"])
dashboard_router = APIRouter(prefix="/experiments", tags=["experiments"])

UserId = Annotated[str, Path(min_length=1, max_length=512)]


class FeedQuery(BaseModel):
    """The feed route's query parameters (one model: FastAPI validates it in one pass)."""

    limit: int | None = Field(None, ge=1, le=1000, description="items to return (at most feed.max_limit)")
    surface: Literal["homefeed", "main"] = "homefeed"
    partner: str | None = Field(None, max_length=512, description="partner whose share of the top slots this request guarantees")
    share: float | None = Field(None, ge=0, le=1, description="the partner's share of the top feed.partner_top_n slots")


# the hot route takes the Request itself rather than the state and key dependencies: each dependency
# costs a resolution pass per request; the key header is read (and documented) only as an option
@feed_router.get("/{user_id}", response_model=FeedResponse, openapi_extra={"security": [{}, {"APIKeyHeader": []}]})
async def get_feed(request: Request, user_id: UserId, query: Annotated[FeedQuery, Query()]) -> Response:
    """A personalized feed for ``user_id``, best first, each item with the reason it is there (the API
    key is needed only when ``feed.keyed_reads`` is set)."""
    state: FeedState = request.app.state.feed
    s = state.settings.feed
    if s.keyed_reads:
        _check_key(state, request.headers.get("x-api-key"))
    limit, partner, share = min(query.limit or s.default_limit, s.max_limit), query.partner, query.share
    holder = state.holder
    catalog, version = holder.catalog, holder.version
    now = catalog.asof
    profile = state.profile(user_id)
    stored = profile is not None
    if profile is None:
        state.metrics.fallbacks.labels("store").inc()
    ranker, served = state.experiments.choose(user_id, query.surface, datetime.now(UTC))
    if served is not None:
        state.metrics.arms.labels(served.experiment, served.arm).inc()
        if served.fallback:
            state.metrics.experiment_fallbacks.labels(served.experiment).inc()
    key = (user_id, limit, partner, share, served.arm if served is not None else None)
    stamp = (version, profile_stamp(profile), state.user_version.get(user_id, 0)) if stored else None
    hit = state.memo.get(key, stamp) if stamp is not None else None
    if hit is not None:
        body, sources, fallback = hit
        state.metrics.memo.labels("hit").inc()
    else:
        feed: Feed = ranker.rank(
            catalog, profile, user_id=user_id, limit=limit, now=now, searches=state.recent_searches(user_id, now), partner=partner, share=share, fallback=not stored
        )
        # the model documents the response; the body is rendered directly (no second validation pass)
        items = [{"item_id": i.item_id, "score": i.score, "reason": {"kind": i.reason.kind, "text": i.reason.text}, "source": i.source} for i in feed.items]
        tag = {"name": served.experiment, "arm": served.arm} if served is not None else None
        body = orjson.dumps({"user_id": user_id, "items": items, "fallback": feed.fallback, "experiment": tag})
        sources, fallback = feed.sources, feed.fallback
        if stamp is not None:
            state.memo.put(key, stamp, body, sources, fallback)
            state.metrics.memo.labels("miss").inc()
    if fallback and stored:
        state.metrics.fallbacks.labels("unknown_user").inc()
    for source, n in sources.items():
        state.metrics.items.labels(source).inc(n)
    return Response(body, media_type="application/json")


@suggestions_router.get("/{user_id}", response_model=SuggestionsResponse, openapi_extra={"security": [{}, {"APIKeyHeader": []}]})
async def get_suggestions(request: Request, user_id: UserId, limit: Annotated[int | None, Query(ge=1, le=50, description="suggestions to return; default feed.suggestion_limit")] = None) -> SuggestionsResponse:
    """Searches to suggest to ``user_id`` ("search again"), newest first: a fresh search as Q with the
    word of its clicked titles that the log's users type most ("makita saw" -> "makita jig saw"),
    else as the refiner's Q*; then the user's stored recent intents (batch or online), each as the
    suggestion pushed with it, else as its Q*. An unknown
    user gets an empty list; an online store that does not answer, the fresh searches alone."""
    state: FeedState = request.app.state.feed
    if state.settings.feed.keyed_reads:
        _check_key(state, request.headers.get("x-api-key"))
    profile = state.profile(user_id)
    items = state.suggestions(user_id, profile, state.holder.catalog.asof, limit or state.settings.feed.suggestion_limit)
    for item in items:
        state.metrics.suggestions.labels(item["kind"]).inc()
    return SuggestionsResponse(user_id=user_id, suggestions=[SuggestionModel(**i) for i in items], fallback=profile is None)


@events_router.post("", response_model=EventsResponse, dependencies=[Depends(require_key)])
def post_events(state: StateDep, body: EventsRequest) -> EventsResponse:
    """Store events in the lake before answering; invalid ones are quarantined and listed by index."""
    if len(body.events) > state.settings.feed.max_events_per_request:
        raise HTTPException(413, f"at most {state.settings.feed.max_events_per_request} events per request")
    result = state.sink.append(body.events)
    state.on_events(result.accepted)
    m = state.metrics.events
    m.labels("accepted").inc(len(result.accepted))
    m.labels("duplicate").inc(result.duplicates)
    m.labels("rejected").inc(len(result.rejected))
    return EventsResponse(accepted=len(result.accepted), duplicates=result.duplicates, rejected=[RejectedEvent(**r) for r in result.rejected])


@users_router.get("/{user_id}/profile", dependencies=[Depends(require_key)])
def get_profile(state: StateDep, user_id: UserId) -> dict[str, Any]:
    """The user's whole online profile, as the feed reads it."""
    try:
        profile = state.reader.get(user_id)
    except OnlineStoreUnavailable as exc:
        raise HTTPException(503, str(exc)) from exc
    out = asdict(profile)
    out["preferences"] = {d: {str(lv): v for lv, v in levels.items()} for d, levels in profile.preferences.items()}
    out["recent_searches"] = [{"query": q.query, "ts": q.ts} for q in state.recent_searches(user_id, state.holder.catalog.asof)]
    return out


ExperimentName = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


def _experiment_state(state: FeedState, name: str, x_api_key: str | None) -> ExperimentState:
    if state.settings.feed.keyed_reads:
        _check_key(state, x_api_key)
    path = state_path(state.settings, name)
    if not path.is_file():
        known = [e.name for e in state.settings.feed.experiments]
        raise HTTPException(404, f"no state for experiment {name!r} yet (experiments in the settings: {known}; its first batch update writes it)")
    try:
        return ExperimentState.load(path)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise HTTPException(503, f"experiment {name!r}: its state {path} cannot be read: {exc}") from exc


@experiments_router.get("", response_model=list[ExperimentSummary])
def list_experiments(state: StateDep, x_api_key: ApiKey) -> list[ExperimentSummary]:
    """The experiments in the settings, whether each is live now and has a state yet."""
    if state.settings.feed.keyed_reads:
        _check_key(state, x_api_key)
    now = datetime.now(UTC)
    return [
        ExperimentSummary(name=e.name, surface=e.surface, type=e.type, arms=e.weights(), live=e.active(now), has_state=state_path(state.settings, e.name).is_file())
        for e in state.settings.feed.experiments
    ]


@experiments_router.get("/{name}")
def get_experiment(state: StateDep, name: ExperimentName, x_api_key: ApiKey) -> dict[str, Any]:
    """Per arm: impressions, clicks, CTR, α, β, P(best), expected loss, traffic; the winners; the series the dashboard draws."""
    return dashboard_data(_experiment_state(state, name, x_api_key))


@dashboard_router.get("/{name}", response_class=HTMLResponse)
def experiment_dashboard(state: StateDep, name: ExperimentName, x_api_key: ApiKey) -> HTMLResponse:
    """The experiment's live dashboard (HTML): hourly and cumulative CTR per arm, the winners, Beta posteriors, traffic over time."""
    exp = next((e for e in state.settings.feed.experiments if e.name == name), None)
    about = f"{exp.type.capitalize()} experiment on the {exp.surface} surface, arms {', '.join(exp.arms)}." if exp else "Not in the current settings."
    return HTMLResponse(render_dashboard(_experiment_state(state, name, x_api_key), about))


@ops_router.get("/healthz", response_model=HealthResponse, responses={503: {"model": HealthResponse}})
def healthz(state: StateDep) -> Response:
    """Whether the online store answers (the feed still serves, as fallback, when it does not), and the
    intent refiner's state (the feed serves without it: fresh searches keep their raw queries)."""
    catalog = state.holder.catalog
    try:
        store = check_online_store(state.reader.settings)
        status, code = "ok", 200
    except OnlineStoreUnavailable as exc:
        store, status, code = {"error": str(exc)}, "degraded", 503
    refiner = state.intents.status() if state.intents is not None else None
    body = HealthResponse(status=status, store=store, catalog_items=len(catalog), catalog_age_s=round(time.time() - state.holder.refreshed_at, 1), refiner=refiner)
    return JSONResponse(body.model_dump(), status_code=code)


@ops_router.get("/metrics", response_class=Response)
def metrics(state: StateDep) -> Response:
    """Prometheus metrics: request latency, 5xx errors, fallbacks, items per source, events, memo hits.
    With several workers (``PROMETHEUS_MULTIPROC_DIR`` set, as ``topicfeed serve --workers N`` does),
    every worker's values, summed (prometheus-client's multiprocess mode). The mode is the one this
    process's metric values were made in, not the variable alone: importing Feast sets
    PROMETHEUS_MULTIPROC_DIR after prometheus-client has chosen in-memory values, and reading that
    folder would then serve Feast's metrics without ours."""
    if prometheus_values.ValueClass is not prometheus_values.MutexValue and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


# the app -----------------------------------------------------------------------------------------------
class BodyLimit:
    """A pure ASGI middleware: a request body over ``limit`` bytes gets 413 (by Content-Length, or
    as it streams in)."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await JSONResponse({"detail": f"request body over {self.limit} bytes"}, status_code=413)(scope, receive, send)
            return
        seen = 0

        async def limited() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await JSONResponse({"detail": f"request body over {self.limit} bytes"}, status_code=413)(scope, receive, send)


class _TooLarge(Exception):
    pass


class Observe:
    """A pure ASGI middleware: request latency per route and 5xx counts into the service's metrics."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def observed(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed)
        finally:
            state: FeedState | None = getattr(scope["app"].state, "feed", None) if "app" in scope else None
            if state is not None:
                route = getattr(scope.get("route"), "path", "unmatched")
                state.metrics.latency.labels(route).observe(time.perf_counter() - start)
                if status >= 500:
                    state.metrics.errors.labels(route).inc()


def create_app(settings: Settings, catalog_loader: Callable[[], Catalog] | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = FeedState(settings, catalog_loader)
        state.holder.start(settings.feed.catalog_refresh_s)
        app.state.feed = state
        gc.freeze()  # keep full collections of start-up objects out of the requests (featurestore.profile)
        yield
        state.holder.stop()
        if state.intents is not None:
            state.intents.close()
        state.reader.close()

    app = FastAPI(
        title="topicfeed feed service",
        version="0.1.0",
        description="A personalized home feed from cross-domain topic profiles, with reasons.",
        lifespan=lifespan,
    )

    for router in (feed_router, suggestions_router, events_router, users_router, experiments_router, dashboard_router, ops_router):
        app.include_router(router)
    app.add_middleware(Observe)
    app.add_middleware(BodyLimit, limit=settings.feed.max_body_bytes)
    return app


def app_from_settings() -> FastAPI:
    """The app for ``uvicorn --factory`` (and ``topicfeed serve``): settings from the environment."""
    from topicfeed.settings import get_settings

    return create_app(get_settings())
