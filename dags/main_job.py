"""The main job (``make run`` / ``topicfeed run``): a simulated platform end to end, with the batch
work run by Airflow itself.

1. simulate a world (users, documents, home-feed / search / main-page logs, users' time zones);
2. ingest documents and events into the lake (invalid records quarantined and counted);
3. train the small topic classifier on a sample of the simulated documents (their own topics);
4. train the query-intent refiner (the gold set + the pairs mined from the lake's searches);
5. run the DAGs for the end of the period through Airflow (``dag.test()``, SQLite metadata DB, in
   one process, ``python -m dags.run``): content_topics -> topic_preferences, the last
   ``search_windows`` search_intents windows, notification_targeting for the last day;
6. start the feed service (a real HTTP server process) and print three users' feeds with reasons:
   a light home-feed user who searches, a heavy user, a new user;
7. print the notification target list; 8. say what was written where.

Every step prints one line as it ends; Airflow's own log goes to ``<data_dir>/airflow/main_job.log``.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq

from dags.run import airflow_env
from topicfeed.settings import Settings

Log = Callable[[str], None]
STEPS = 8


def _step(log: Log, n: int, text: str, since: float) -> None:
    log(f"[{n}/{STEPS}] {text} ({time.perf_counter() - since:.1f}s)")


def _hour_after(t: datetime) -> datetime:
    return t.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)


def train_classifier(settings: Settings, log: Log) -> str:
    """The small classifier on a seeded sample of the lake's labelled documents."""
    from classifier.data import Doc
    from classifier.model import train_recipe
    from topicfeed.lake import Lake
    from topicfeed.taxonomy import Taxonomy

    cfg = settings.main_job
    rows = [r for r in Lake(settings.lake_dir).read("documents", columns=["doc_id", "title", "body", "topics"]).to_pylist() if r["topics"]]
    rows.sort(key=lambda r: r["doc_id"])
    random.Random(settings.classifier.seed).shuffle(rows)
    held = rows[cfg.classifier_docs : cfg.classifier_docs + 300]
    docs = [Doc(r["doc_id"], r["title"], r["body"] or "", tuple(r["topics"])) for r in rows[: cfg.classifier_docs]]
    taxonomy = Taxonomy.load(settings.taxonomy_path)
    cs = settings.classifier.model_copy(update={"epochs": cfg.classifier_epochs})
    clf, seconds = train_recipe(cs, taxonomy, docs, progress=True)
    clf.save_pretrained(settings.classifier_dir)
    if not held:
        return f"{len(docs)} documents, {cfg.classifier_epochs} epochs in {seconds:.0f}s"
    preds = clf.predict([Doc(r["doc_id"], r["title"], r["body"] or "") for r in held], k=1, progress=False)
    first = [p[0].path if p and p[0] is not None else "" for p in preds]
    l1 = sum(f.split(" > ")[0] == (r["topics"][0].split(" > ")[0]) for f, r in zip(first, held)) / len(held)
    return f"{len(docs)} documents, {cfg.classifier_epochs} epochs in {seconds:.0f}s; L1 top-1 {l1:.2f} on {len(held)} held-out simulated documents"


def train_refiner(settings: Settings) -> str:
    from intent.jobs import train_default
    from intent.students import student_name

    cfg = settings.main_job
    s = settings.model_copy(update={"intent": settings.intent.model_copy(update={"epochs": cfg.intent_epochs, "tagger_epochs": cfg.intent_epochs, "max_mined_pairs": cfg.intent_pairs, "search_examples": cfg.intent_searches})})
    start = time.perf_counter()
    made = (train_default(s, s.intent_dir).fit_report_ or {}).get("search_examples", 0)  # the made searches it trained on (none for the causal student)
    searches = f" + {made} made searches" if made else ""
    return f"{student_name(settings.intent)} on the gold set + {cfg.intent_pairs} mined pairs{searches}, {cfg.intent_epochs} epochs in {time.perf_counter() - start:.0f}s -> {s.intent_dir}"


def run_dags(settings: Settings, runs: list[tuple[str, datetime]], log: Log) -> list[dict[str, Any]]:
    """``python -m dags.run`` in a fresh process (its own Airflow home under the data directory);
    one line per finished run, Airflow's log to a file."""
    env = airflow_env(settings.data_dir)
    env["TOPICFEED_ONLINE_STORE"] = settings.online_store
    env["TOPICFEED_REDIS_URL"] = settings.redis_url
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    by_dag: dict[str, list[str]] = {}
    for dag_id, logical in runs:
        by_dag.setdefault(dag_id, []).append(logical.isoformat())
    args = [f"{d}={','.join(ts)}" for d, ts in by_dag.items()]
    log_path = Path(env["AIRFLOW_HOME"]) / "main_job.log"
    results = []
    with log_path.open("w") as logf:
        proc = subprocess.Popen([sys.executable, "-m", "dags.run", *args], env=env, stdout=subprocess.PIPE, stderr=logf, text=True, cwd=Path(__file__).resolve().parent.parent)
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("RESULT "):
                r = json.loads(line[len("RESULT ") :])
                results.append(r)
                returns = "; ".join(f"{k}: {_short(v['return'])}" for k, v in r["tasks"].items())
                log(f"      {r['dag_id']} [{r['start'][:16]} .. {r['end'][:16]}] {r['state']}: {returns}")
            else:
                logf.write(line)
        code = proc.wait()
    if code != 0 or any(r["state"] != "success" for r in results):
        raise RuntimeError(f"a DAG run failed; Airflow's log: {log_path}")
    return results


def _short(value: Any) -> str:
    if not isinstance(value, dict):
        return str(value)
    keep = {k: v for k, v in value.items() if k not in ("path", "item_topics", "item_stats", "online", "asof", "start", "end")}
    online = value.get("online")
    if isinstance(online, list):
        keep["online rows"] = sum(int(x.get("written", 0)) for x in online if isinstance(x, dict))
    return json.dumps(keep, default=str)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_and_print_feeds(settings: Settings, users: list[tuple[str, str]], log: Log) -> None:
    """Start ``topicfeed serve`` as its own process, print each user's feed as the API returns it."""
    from topicfeed.lake import Lake

    port = _free_port()
    env = {**os.environ, "TOPICFEED_DATA_DIR": str(settings.data_dir.resolve()), "TOPICFEED_ONLINE_STORE": settings.online_store, "TOPICFEED_REDIS_URL": settings.redis_url}
    proc = subprocess.Popen([sys.executable, "-c", "from topicfeed.cli import main; main()", "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the feed service did not start: {proc.stderr.read() if proc.stderr else ''}")
            time.sleep(0.3)
        docs = Lake(settings.lake_dir).read("documents", columns=["doc_id", "title"])
        titles = dict(zip(docs.column("doc_id").to_pylist(), docs.column("title").to_pylist()))
        log(f"      feed service at {base} (OpenAPI: {base}/docs)")
        for label, user in users:
            got = httpx.get(f"{base}/v1/feed/{user}", params={"limit": settings.main_job.feed_items}, timeout=10).json()
            log(f"      GET /v1/feed/{user}: {label}" + (" (fallback: non-personalized)" if got["fallback"] else ""))
            for n, item in enumerate(got["items"], 1):
                log(f"        {n}. {titles.get(item['item_id'], item['item_id'])[:64]:64s} [{item['reason']['kind']}] {item['reason']['text']}")
            again = httpx.get(f"{base}/v1/suggestions/{user}", timeout=10).json()["suggestions"]
            if again:
                log("        search again (GET /v1/suggestions): " + ", ".join(f"'{x['query']}' [{x['kind']}]" for x in again))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def pick_users(settings: Settings, sim_dir: Path) -> list[tuple[str, str]]:
    """A light home-feed user who searches and has a profile, a heavy user, a new user."""
    from featurestore.profile import ProfileReader

    users = pq.read_table(sim_dir / "ground_truth" / "users.parquet").to_pandas()
    reader = ProfileReader(settings)
    try:
        light = next((u for u in users[(users.segment == "light") & users.uses_search].user_id if reader.get(u).found and reader.get(u).recent_refined_queries), None)
        light = light or next(u for u in users[(users.segment == "light") & users.uses_search].user_id if reader.get(u).found)
        heavy = next(u for u in users[users.segment == "heavy"].user_id if reader.get(u).found)
    finally:
        reader.close()
    return [("a light home-feed user who searches", str(light)), ("a heavy user", str(heavy)), ("a new user", "new-user-1")]


def main_job(settings: Settings, log: Log = print) -> dict[str, Any]:
    """The whole job (module docstring); returns what it wrote."""
    from feed.notify import import_time_zones
    from topicfeed.ingest import ingest
    from topicfeed.simulator import simulate
    from topicfeed.summary import format_summary, lake_summary

    t0 = time.perf_counter()
    sim_dir = settings.data_dir / "simulated" / f"seed-{settings.simulator.seed}"
    t = time.perf_counter()
    sim = simulate(settings, sim_dir)
    st = sim.stats
    _step(log, 1, f"simulate: {st['events']} events, {st['documents']} documents, {st['users']} users -> {sim_dir}", t)
    t = time.perf_counter()
    reports = [ingest(kind, sim.files[kind], settings) for kind in ("documents", "events")]
    import_time_zones(settings, sim.files["time_zones"])
    _step(log, 2, "ingest " + "; ".join(r.summary_line() for r in reports) + "; users' time zones", t)
    t = time.perf_counter()
    _step(log, 3, "classifier: " + train_classifier(settings, log), t)
    t = time.perf_counter()
    _step(log, 4, "intent refiner: " + train_refiner(settings), t)

    from featurestore.jobs import default_asof

    t = time.perf_counter()
    asof = default_asof(settings)
    hour = _hour_after(asof)
    windows = [asof.replace(second=0, microsecond=0) - timedelta(minutes=asof.minute % 10) + timedelta(minutes=10 * (k + 1)) for k in range(-settings.main_job.search_windows + 1, 1)]
    day = asof.astimezone(UTC).replace(hour=6, minute=0, second=0, microsecond=0)
    day = day if day >= asof else day + timedelta(days=1)
    runs = [("content_topics", hour), ("topic_preferences", hour), *(("search_intents", w) for w in windows), ("notification_targeting", day)]
    log(f"[5/{STEPS}] Airflow: {len(runs)} DAG runs with dag.test() (log: {settings.data_dir / 'airflow' / 'main_job.log'})")
    results = run_dags(settings, runs, log)
    _step(log, 5, f"Airflow: {len(results)} runs succeeded; online store: {settings.online_store}", t)

    t = time.perf_counter()
    serve_and_print_feeds(settings, pick_users(settings, sim_dir), log)
    _step(log, 6, "feeds served over HTTP", t)

    t = time.perf_counter()
    notify = next(r for r in results if r["dag_id"] == "notification_targeting")["tasks"]["pick_targets"]["return"]
    targets = pq.read_table(notify["path"]).to_pylist()
    log(f"      {len(targets)} targets for the day's {notify['items']} new items ({notify['held']} held past quiet hours, {notify['capped']} over the cap); the first five:")
    for r in targets[:5]:
        log(f"        {r['user_id']:>8s} <- {r['item_id']:>10s} at {r['send_at']:%Y-%m-%d %H:%M}Z ({r['time_zone']}): {r['reason']}")
    _step(log, 7, f"notification targets -> {notify['path']}", t)

    log(format_summary(lake_summary(settings)))
    written = {
        "lake": settings.lake_dir,
        "quarantine": settings.quarantine_dir,
        "offline features": settings.features_dir,
        "online store": settings.sqlite_path if settings.online_store == "sqlite" else settings.redis_url,
        "classifier": settings.classifier_dir,
        "intent refiner": settings.intent_dir,
        "notification targets": Path(notify["path"]).parent,
        "Airflow home (metadata DB, logs)": settings.data_dir / "airflow",
        "simulation and its ground truth": sim_dir,
    }
    _step(log, 8, "written:\n" + "\n".join(f"      {k:34s} {v}" for k, v in written.items()), t0)
    return {"asof": asof, "runs": results, "targets": len(targets), "written": written}
