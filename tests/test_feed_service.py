"""The feed service as a real server process (``topicfeed serve``), on SQLite and on a real Redis."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pyarrow.compute as pc
import pytest

from featurestore.intents import push_intents
from featurestore.jobs import default_asof, refresh_online, simulated_world
from feed.catalog import Catalog
from topicfeed.lake import Lake
from topicfeed.settings import FeastSettings, Settings, SimulatorSettings

from redis_server import free_port

BIN = Path(sys.executable).parent / "topicfeed"
KEY = "test-key-123"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small world, ingested, with offline features computed (copied for each server)."""
    base = tmp_path_factory.mktemp("service-world")
    s = Settings(data_dir=base / "data", simulator=SimulatorSettings(users=250, days=4, docs_per_day=60, seed=3))
    simulated_world(s, base / "sim", online=False)
    return base / "data"


class Server:
    def __init__(self, data: Path, env: dict[str, str], workers: int = 1) -> None:
        self.data = data
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "TOPICFEED_DATA_DIR": str(data), "TOPICFEED_API_KEY": KEY, **env}
        self.proc = subprocess.Popen([str(BIN), "serve", "--port", str(self.port), "--workers", str(workers)], env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code in (200, 503):
                    break
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the service did not start: {self.proc.stdout.read() if self.proc.stdout else ''}")
            time.sleep(0.2)
        self.client = httpx.Client(base_url=self.url, timeout=10)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def start(world: Path, tmp: Path, store: str, redis_url: str | None) -> Iterator[tuple[Server, Settings]]:
    data = tmp / f"data-{store}"
    shutil.copytree(world, data)
    project = f"svc{uuid.uuid4().hex[:8]}"
    env = {"TOPICFEED_FEAST__PROJECT": project}
    s = Settings(data_dir=data, feast=FeastSettings(project=project))
    if store == "redis":
        assert redis_url is not None
        env |= {"TOPICFEED_ONLINE_STORE": "redis", "TOPICFEED_REDIS_URL": redis_url}
        s = s.model_copy(update={"online_store": "redis", "redis_url": redis_url})
    refresh_online(s, default_asof(s))
    server = Server(data, env)
    try:
        yield server, s
    finally:
        server.stop()


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def served(request: pytest.FixtureRequest, world: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Settings]]:
    redis_url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    yield from start(world, tmp_path_factory.mktemp(f"svc-{request.param}"), request.param, redis_url)


def a_user(s: Settings) -> str:
    catalog = Catalog.load(s)
    return max(catalog.clicked, key=lambda u: (len(catalog.clicked[u]), u))


def event(i: str, user: str, **fields: object) -> dict[str, object]:
    return {"event_id": i, "user_id": user, "domain": "homefeed", "type": "click", "item_id": "x", "ts": datetime.now(UTC).isoformat(), **fields}


def test_feed_is_personal_with_reasons_and_caps(served: tuple[Server, Settings]) -> None:
    server, s = served
    user = a_user(s)
    got = server.client.get(f"/v1/feed/{user}", params={"limit": 12})
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["user_id"] == user and body["fallback"] is False and len(body["items"]) == 12
    assert all(set(i) == {"item_id", "score", "reason", "source"} and i["reason"]["text"] for i in body["items"])
    catalog = Catalog.load(s)
    assert not {catalog.index[i["item_id"]] for i in body["items"]} & catalog.clicked[user]  # seen items excluded
    l2 = [int(catalog.l2_topic[catalog.index[i["item_id"]]]) for i in body["items"]]
    assert max(l2.count(t) for t in set(l2) if t >= 0) <= s.feed.max_per_l2_topic  # diversity cap
    new = server.client.get("/v1/feed/someone-new").json()
    assert new["fallback"] is True and len(new["items"]) == s.feed.default_limit  # cold start, not an error
    assert {i["reason"]["kind"] for i in new["items"]} <= {"trending", "popular", "fresh"}


def test_events_auth_validation_duplicates_and_fresh_clicks(served: tuple[Server, Settings]) -> None:
    server, s = served
    user = a_user(s)
    before = server.client.get(f"/v1/feed/{user}", params={"limit": 5}).json()["items"]
    first = before[0]["item_id"]
    batch = [
        event(f"api-{uuid.uuid4().hex}", user, item_id=first),
        {"event_id": "bad-1", "domain": "homefeed", "type": "click", "item_id": "x", "ts": "2026-01-01T00:00:00Z"},
        event("bad-2", user, domain="tv"),
        "not an object",
    ]
    assert server.client.post("/v1/events", json={"events": batch}).status_code == 401  # no key
    assert server.client.post("/v1/events", json={"events": batch}, headers={"X-API-Key": "wrong"}).status_code == 401
    got = server.client.post("/v1/events", json={"events": batch}, headers={"X-API-Key": KEY})
    assert got.status_code == 200, got.text
    body = got.json()
    assert (body["accepted"], body["duplicates"]) == (1, 0)
    assert [(r["index"], r["field"]) for r in body["rejected"]] == [(1, "user_id"), (2, "domain"), (3, "<record>")]
    again = server.client.post("/v1/events", json={"events": batch}, headers={"X-API-Key": KEY}).json()
    assert (again["accepted"], again["duplicates"]) == (0, 1)  # a retried batch adds nothing
    stored = Lake(s.lake_dir).read("events", filter=pc.field("event_id") == batch[0]["event_id"])
    assert stored.num_rows == 1  # durably in the lake before the reply
    quarantined = [json.loads(line) for f in s.quarantine_dir.glob("events-*-api.jsonl") for line in f.read_text().splitlines()]
    assert {q["field"] for q in quarantined} >= {"user_id", "domain", "<record>"}
    after = [i["item_id"] for i in server.client.get(f"/v1/feed/{user}", params={"limit": 5}).json()["items"]]
    assert first not in after  # the click leaves the next feed at once


def test_a_search_with_clicks_is_a_fresh_interest(served: tuple[Server, Settings]) -> None:
    server, s = served
    catalog = Catalog.load(s)
    item = catalog.ids[int(catalog.by_popularity[5])]
    user = f"searcher-{uuid.uuid4().hex[:6]}"
    now = datetime.now(UTC).isoformat()
    events = [
        {"event_id": f"{user}-s", "user_id": user, "domain": "search", "type": "search", "query": "pole saw", "ts": now},
        {"event_id": f"{user}-c", "user_id": user, "domain": "search", "type": "click", "item_id": item, "query": "pole saw", "position": 0, "ts": now},
    ]
    assert server.client.post("/v1/events", json={"events": events}, headers={"X-API-Key": KEY}).json()["accepted"] == 2
    feed = server.client.get(f"/v1/feed/{user}").json()
    assert feed["fallback"] is False
    assert any(i["reason"] == {"kind": "intent", "text": "because you recently searched 'pole saw'"} for i in feed["items"])
    assert item not in {i["item_id"] for i in feed["items"]}
    # without a refiner or a suggester, the search is suggested again as typed
    got = server.client.get(f"/v1/suggestions/{user}").json()
    assert [(x["query"], x["kind"], x["searched"]) for x in got["suggestions"]] == [("pole saw", "recent", "pole saw")] and got["fallback"] is False
    assert server.client.get(f"/v1/suggestions/nobody-{user}").json()["suggestions"] == []
    # searches refined elsewhere (the batch DAG, another worker) come from the store: the suggestion pushed with one, else its Q*
    stored = f"stored-{user}"
    t0 = datetime.now(UTC) - timedelta(minutes=5)
    push_intents(s, [
        {"user_id": stored, "query": "aespa", "refined_query": "aespa japan album hot mess", "ts": t0.isoformat()},
        {"user_id": stored, "query": "aespa tour", "refined_query": "aespa world tour seoul", "suggested_query": "aespa tour seoul", "ts": (t0 + timedelta(seconds=5)).isoformat()},
    ])
    got = server.client.get(f"/v1/suggestions/{stored}").json()["suggestions"]
    assert [(x["query"], x["kind"], x["searched"]) for x in got] == [("aespa tour seoul", "log_word", "aespa tour"), ("aespa japan album hot mess", "refined", None)]
    assert [x["query"] for x in server.client.get(f"/v1/suggestions/{stored}", params={"limit": 1}).json()["suggestions"]] == ["aespa tour seoul"]
    assert server.client.get(f"/v1/suggestions/{user}", params={"limit": 0}).status_code == 422


def test_partner_rule_profile_health_metrics_and_limits(served: tuple[Server, Settings]) -> None:
    server, s = served
    user = a_user(s)
    catalog = Catalog.load(s)
    partner = max(set(catalog.partner) - {""}, key=lambda p: int((catalog.partner == p).sum()))
    items = server.client.get(f"/v1/feed/{user}", params={"limit": 10, "partner": partner, "share": 0.3}).json()["items"]
    assert sum(catalog.partner[catalog.index[i["item_id"]]] == partner for i in items) >= 3
    assert server.client.get(f"/v1/users/{user}/profile").status_code == 401
    profile = server.client.get(f"/v1/users/{user}/profile", headers={"X-API-Key": KEY}).json()
    assert profile["found"] is True and profile["preferences"]["merged"]["1"]
    health = server.client.get("/healthz").json()
    assert health["status"] == "ok" and health["store"]["store"] == s.online_store and health["catalog_items"] == len(catalog)
    assert health["refiner"] is None  # no refiner trained in this world
    assert server.client.get("/v1/feed/never-seen-before").json()["fallback"] is True
    text = server.client.get("/metrics").text
    assert "topicfeed_request_seconds_bucket" in text and 'topicfeed_feed_items_total{source="' in text
    assert 'topicfeed_feed_fallbacks_total{reason="unknown_user"}' in text
    assert server.client.get(f"/v1/feed/{user}", params={"limit": 0}).status_code == 422
    huge = server.client.post("/v1/events", content=b"x" * (s.feed.max_body_bytes + 10), headers={"X-API-Key": KEY, "content-type": "application/json"})
    assert huge.status_code == 413
    assert "/v1/feed/{user_id}" in server.client.get("/openapi.json").json()["paths"]


def test_redis_stopped_mid_run_falls_back_then_recovers(world: Path, tmp_path: Path) -> None:
    """Redis goes away: the feed keeps answering with fallback and no 5xx; Redis back: personal again."""
    from redis_server import local_redis_server

    port = free_port()
    with local_redis_server(tmp_path / "r1", port=port) as url:
        gen = start(world, tmp_path, "redis", url)
        server, s = next(gen)
        user = a_user(s)
        assert server.client.get(f"/v1/feed/{user}").json()["fallback"] is False
    try:
        for _ in range(20):
            got = server.client.get(f"/v1/feed/{user}")
            assert got.status_code == 200 and got.json()["fallback"] is True and got.json()["items"]
        assert server.client.get("/healthz").status_code == 503
        with local_redis_server(tmp_path / "r2", port=port):
            refresh_online(s, default_asof(s))
            deadline = time.monotonic() + 10
            while server.client.get(f"/v1/feed/{user}").json()["fallback"]:
                assert time.monotonic() < deadline, "still falling back after Redis came back"
                time.sleep(0.2)
            assert 'topicfeed_feed_fallbacks_total{reason="store"}' in server.client.get("/metrics").text
    finally:
        gen.close()


def memo_count(server: Server, outcome: str) -> float:
    line = [x for x in server.client.get("/metrics").text.splitlines() if x.startswith(f'topicfeed_feed_memo_total{{outcome="{outcome}"}}')]
    return float(line[0].split()[-1]) if line else 0.0


def test_feed_memo_is_exact_and_a_pushed_intent_reaches_the_next_feed(served: tuple[Server, Settings]) -> None:
    """A repeated request is answered from the memo with the same body; a refined intent pushed to the
    online store changes the profile's stamp, so the next feed is ranked again and shows it."""
    from featurestore.intents import push_intents

    server, s = served
    catalog = Catalog.load(s)
    user = sorted(catalog.clicked, key=lambda u: (len(catalog.clicked[u]), u))[len(catalog.clicked) // 2]
    hits = memo_count(server, "hit")
    first = server.client.get(f"/v1/feed/{user}", params={"limit": 15}).content
    second = server.client.get(f"/v1/feed/{user}", params={"limit": 15}).content
    assert first == second and memo_count(server, "hit") == hits + 1
    longer = server.client.get(f"/v1/feed/{user}", params={"limit": 16}).json()["items"]
    assert len(longer) == 16 and memo_count(server, "hit") == hits + 1  # other parameters: their own entry
    title = catalog.titles[int(catalog.by_fresh[3])]
    push_intents(s, [{"user_id": user, "query": title.split()[0], "refined_query": title, "ts": datetime.now(UTC).isoformat()}])
    server.client.get(f"/v1/feed/{user}", params={"limit": 15})
    assert memo_count(server, "hit") == hits + 1  # ranked again, not served from the memo
    after = server.client.get(f"/v1/feed/{user}", params={"limit": 100}).json()  # the default weighs intents lightly: further down the page
    assert any(i["reason"] == {"kind": "intent", "text": f"because you recently searched '{title}'"} for i in after["items"]), after


def test_one_worker_from_a_clean_environment_serves_its_own_metrics(world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`topicfeed serve` from a shell with no Prometheus variables: importing Feast sets one in the
    server after prometheus-client chose in-memory values; /metrics must still show the service's own."""
    for name in ("PROMETHEUS_MULTIPROC_DIR", "PROMETHEUS_MULTIPROCESS_DIR", "prometheus_multiproc_dir"):
        monkeypatch.delenv(name, raising=False)
    data = tmp_path / "data"
    shutil.copytree(world, data)
    project = f"svc{uuid.uuid4().hex[:8]}"
    refresh_online(Settings(data_dir=data, feast=FeastSettings(project=project)), default_asof(Settings(data_dir=data)))
    server = Server(data, {"TOPICFEED_FEAST__PROJECT": project})
    try:
        for i in range(3):
            assert server.client.get(f"/v1/feed/nobody-{i}").json()["fallback"] is True
        text = server.client.get("/metrics").text
        got = [float(x.split()[-1]) for x in text.splitlines() if x.startswith('topicfeed_feed_fallbacks_total{reason="unknown_user"}')]
        assert got == [3.0] and "topicfeed_request_seconds_bucket" in text
    finally:
        server.stop()


def test_metrics_sum_every_worker(world: Path, tmp_path: Path) -> None:
    """Two workers: /metrics counts the requests both answered (prometheus-client multiprocess mode)."""
    data = tmp_path / "data"
    shutil.copytree(world, data)
    project = f"svc{uuid.uuid4().hex[:8]}"
    refresh_online(Settings(data_dir=data, feast=FeastSettings(project=project)), default_asof(Settings(data_dir=data)))
    server = Server(data, {"TOPICFEED_FEAST__PROJECT": project, "PROMETHEUS_MULTIPROC_DIR": ""}, workers=2)
    try:
        for i in range(30):  # a new connection each: the kernel spreads them over the workers
            assert httpx.get(f"{server.url}/v1/feed/nobody-{i}", timeout=10).json()["fallback"] is True
        text = httpx.get(f"{server.url}/metrics", timeout=10).text
        got = [float(x.split()[-1]) for x in text.splitlines() if x.startswith('topicfeed_feed_fallbacks_total{reason="unknown_user"}')]
        assert got == [30.0]
    finally:
        server.stop()


def test_a_fresh_search_is_refined_and_pushed_online_for_the_next_feed(world: Path, tmp_path: Path) -> None:
    """With a trained refiner in place, a search with clicks posted to the service is refined in the
    background (the refiner's own process, by default), pushed to the online store (the profile shows it) and becomes the feed's reason."""
    from intent.mining import Click
    from intent.model import IntentRefiner
    from intent.suggest import QuerySuggester
    from intent.text import tokens

    from tiny_lm import tiny_llama_dir

    model = IntentRefiner.from_base(tiny_llama_dir(tmp_path / "lm"), num_beams=2, max_new_tokens=6).save_pretrained(tmp_path / "refiner")
    data = tmp_path / "data"
    shutil.copytree(world, data)
    catalog = Catalog.load(Settings(data_dir=data))
    item = catalog.ids[int(catalog.by_popularity[2])]
    # the log's users type the clicked title's last word (and no other) after their query
    title = [t for t in tokens(catalog.titles[catalog.index[item]]) if not t.isdigit() and t not in ("pole", "saw")]
    word = title[-1]
    QuerySuggester(prior=1).fit([Click(f"q{n} {word}", f"d{n}", catalog.titles[catalog.index[item]]) for n in range(3)]).save_pretrained(model)
    project = f"svc{uuid.uuid4().hex[:8]}"
    refresh_online(Settings(data_dir=data, feast=FeastSettings(project=project)), default_asof(Settings(data_dir=data)))
    server = Server(data, {"TOPICFEED_FEAST__PROJECT": project, "TOPICFEED_INTENT__MODEL_DIR": str(model)})
    try:
        user = a_user(Settings(data_dir=data))
        now = datetime.now(UTC).isoformat()
        events = [
            {"event_id": f"{user}-fs", "user_id": user, "domain": "search", "type": "search", "query": "pole saw", "ts": now},
            {"event_id": f"{user}-fc", "user_id": user, "domain": "search", "type": "click", "item_id": item, "query": "pole saw", "position": 0, "ts": now},
        ]
        assert server.client.post("/v1/events", json={"events": events}, headers={"X-API-Key": KEY}).json()["accepted"] == 2
        deadline = time.monotonic() + 30
        while not (profile := server.client.get(f"/v1/users/{user}/profile", headers={"X-API-Key": KEY}).json()).get("last_refined_query"):
            assert time.monotonic() < deadline, "the fresh search never reached the online store"
            time.sleep(0.1)
        refined = profile["last_refined_query"]
        assert {"pole", "saw"} <= set(refined.split()) and profile["last_query"] == "pole saw"  # key tokens kept
        feed = server.client.get(f"/v1/feed/{user}").json()
        assert any(i["reason"] == {"kind": "intent", "text": f"because you recently searched '{refined}'"} for i in feed["items"])
        metrics = server.client.get("/metrics").text
        assert "topicfeed_intents_refined_total 1.0" in metrics and "topicfeed_intent_failures_total 0.0" in metrics
        refiner = server.client.get("/healthz").json()["refiner"]
        assert refiner["worker"] == "process" and refiner["alive"] is True and refiner["refined"] == 1 and refiner["restarts"] == 0
        assert refiner["pid"] != server.proc.pid
        assert "topicfeed_intent_seconds_count 1.0" in metrics and "topicfeed_intent_batch_size_count 1.0" in metrics  # its wait and its batch
        assert 'topicfeed_intent_batch_size_bucket{le="1.0"} 1.0' in metrics and 'topicfeed_intent_seconds_bucket{le="10.0"} 1.0' in metrics
        # re-search suggestions: the fresh search as Q with the word the log's users type, and its
        # refined Q* (pushed online) not listed a second time
        want = [(f"pole saw {word}", "log_word", "pole saw")]
        deadline = time.monotonic() + 10  # the refined answer reaches this worker just after the store
        while (got := [(x["query"], x["kind"], x["searched"]) for x in server.client.get(f"/v1/suggestions/{user}").json()["suggestions"]]) != want:
            assert time.monotonic() < deadline, got
            time.sleep(0.1)
        assert 'topicfeed_search_suggestions_total{kind="log_word"}' in server.client.get("/metrics").text
        # the refiner process pushed the suggestion online beside Q*, for any worker to read
        profile = server.client.get(f"/v1/users/{user}/profile", headers={"X-API-Key": KEY}).json()
        assert profile["recent_suggested_queries"] == [f"pole saw {word}"] and profile["recent_refined_queries"] == [refined]
    finally:
        server.stop()


ARTIFACTS = Path(os.environ.get("TOPICFEED_TEST_ARTIFACTS", Path(__file__).resolve().parent.parent / "test-artifacts"))
TREND = {"trend": {"sources": {"topics": {"enabled": False}, "similar": {"enabled": False}, "intents": {"enabled": False}}}}
EXPERIMENT = {"name": "home1", "type": "dynamic", "arms": {"default": 0.5, "trend": 0.5}, "warmup_impressions": 40, "ttl_s": 3600}


def test_experiment_serving_events_batches_and_the_dashboard_in_a_real_browser(world: Path, tmp_path: Path) -> None:
    """A dynamic experiment on the home feed: every page says its experiment and arm, each arm's ranker
    ranks it; with no state yet the static shares decide (and /metrics says so); tagged impressions
    and clicks posted back are stored, applied hour by hour, and move the traffic; the dashboard
    loads in headless Chromium (Selenium) and shows every arm; a screenshot is kept."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as ChromeService
    from selenium.webdriver.common.by import By

    from feed.experiments import ExperimentState, update_experiment

    data = tmp_path / "data"
    shutil.copytree(world, data)
    project = f"svc{uuid.uuid4().hex[:8]}"
    env = {
        "TOPICFEED_FEAST__PROJECT": project,
        "TOPICFEED_FEED__RANKERS": json.dumps(TREND),
        "TOPICFEED_FEED__EXPERIMENTS": json.dumps([EXPERIMENT]),
        "TOPICFEED_FEED__EXPERIMENT_REFRESH_S": "0.1",
        "TOPICFEED_FEED__MEMO_SIZE": "0",
    }
    s = Settings(data_dir=data, feast=FeastSettings(project=project), feed={"rankers": TREND, "experiments": [EXPERIMENT]})
    refresh_online(s, default_asof(s))
    catalog = Catalog.load(s)
    users = sorted(catalog.clicked)[:60]
    server = Server(data, env)
    try:
        pages = {u: server.client.get(f"/v1/feed/{u}", params={"limit": 10}).json() for u in users}
        arms = {u: p["experiment"]["arm"] for u, p in pages.items()}
        assert all(p["experiment"]["name"] == "home1" for p in pages.values()) and set(arms.values()) == {"default", "trend"}
        assert all(server.client.get(f"/v1/feed/{u}", params={"limit": 10}).json()["experiment"]["arm"] == arms[u] for u in users[:10])  # sticky
        trend_sources = {i["source"] for u, p in pages.items() if arms[u] == "trend" for i in p["items"]}
        assert trend_sources and not trend_sources & {"topics", "similar", "intents"}  # the arm's own ranker
        assert any(i["source"] == "topics" for u, p in pages.items() if arms[u] == "default" for i in p["items"])
        metrics = server.client.get("/metrics").text
        assert 'topicfeed_experiment_fallbacks_total{experiment="home1"}' in metrics and 'topicfeed_experiment_pages_total{arm="trend",experiment="home1"}' in metrics
        assert server.client.get("/experiments/home1").status_code == 404  # no batch applied yet

        # six hours of tagged impressions and clicks: the default arm's pages are clicked far more
        hour0 = datetime(2026, 11, 30, 0, tzinfo=UTC)
        sent: dict[str, list[int]] = {"default": [0, 0], "trend": [0, 0]}
        for h in range(6):
            events = []
            for k, (u, p) in enumerate(pages.items()):
                tag = p["experiment"]
                for pos, item in enumerate(p["items"]):
                    base = {"user_id": u, "domain": "homefeed", "item_id": item["item_id"], "position": pos, "experiment": tag["name"], "arm": tag["arm"]}
                    ts = (hour0 + timedelta(hours=h, seconds=k * 10 + pos)).isoformat()
                    events.append({**base, "event_id": f"x{h}-{u}-{pos}-i", "type": "impression", "ts": ts})
                    if pos < (3 if tag["arm"] == "default" else 1 if k % 3 == 0 else 0):
                        events.append({**base, "event_id": f"x{h}-{u}-{pos}-c", "type": "click", "ts": ts})
                        sent[tag["arm"]][1] += 1
                    sent[tag["arm"]][0] += 1
            got = server.client.post("/v1/events", json={"events": events}, headers={"X-API-Key": KEY}).json()
            assert got["accepted"] == len(events) and got["rejected"] == []
            result = update_experiment(s, s.feed.experiments[0], hour0 + timedelta(hours=h), hour0 + timedelta(hours=h + 1))
            assert result.applied
        stored = Lake(data / "lake").read("events", filter=pc.field("experiment") == "home1")
        assert stored.num_rows == sum(i + c for i, c in sent.values())
        state = ExperimentState.load(result.path)
        assert {a: [c.impressions, c.clicks] for a, c in state.arms.items()} == sent
        status = server.client.get("/v1/experiments/home1").json()
        assert status["live_winner"] == "default" and status["batches"] == 6
        assert {r["arm"]: r["traffic"] for r in status["status"]}["default"] > 0.9
        time.sleep(0.3)  # past the refresh interval: the service reads the new state
        after = [server.client.get(f"/v1/feed/nobody-{i}").json()["experiment"] for i in range(60)]
        assert sum(a["arm"] == "default" for a in after) >= 45  # the traffic followed the posterior

        # the dashboard in a real headless browser
        options = webdriver.ChromeOptions()
        options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
        for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,2200"):
            options.add_argument(flag)
        driver = webdriver.Chrome(service=ChromeService(executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=options)
        try:
            driver.get(f"{server.url}/experiments/home1")
            assert driver.title == "Experiment home1 · topicfeed"
            rows = {r.get_attribute("data-arm") for r in driver.find_elements(By.CSS_SELECTOR, "#arms tbody tr")}
            assert rows == {"default", "trend"}
            charts = driver.find_elements(By.CSS_SELECTOR, "svg.chart")
            assert [c.get_attribute("id") for c in charts] == ["hourly-ctr", "cumulative-ctr", "posterior", "allocation"]
            for chart in charts:
                legend = {e.text for e in chart.find_elements(By.CSS_SELECTOR, "text.legend")}
                drawn = {e.get_attribute("data-arm") for e in chart.find_elements(By.CSS_SELECTOR, ".series")}
                assert legend == drawn == {"default", "trend"}, chart.get_attribute("id")
                assert chart.size["width"] > 300 and chart.size["height"] > 100  # laid out, visible
            assert driver.find_element(By.ID, "live-winner").text.startswith("default")
            assert driver.find_element(By.ID, "todays-winner").text == "default"
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shot = ARTIFACTS / "experiment-dashboard.png"
            assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
        finally:
            driver.quit()
    finally:
        server.stop()
