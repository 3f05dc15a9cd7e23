"""The ``topicfeed`` command. Each subcommand is a thin call into library code."""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from topicfeed.settings import Settings, get_settings

app = typer.Typer(help="topicfeed: cross-domain topic profiles for feed personalization.", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
store_app = typer.Typer(help="The online/offline feature store.", no_args_is_help=True)
app.add_typer(store_app, name="store")
classify_app = typer.Typer(help="The topic classifier: train, predict, eval, the data pipeline's ablation.", no_args_is_help=True)
app.add_typer(classify_app, name="classify")
feed_app = typer.Typer(help="The feed ranker: offline evaluation, the partner rule's preview.", no_args_is_help=True)
app.add_typer(feed_app, name="feed")
intent_app = typer.Typer(help="The query-intent refiner: mine (Q, Q*) from search logs, train, refine, evaluate.", no_args_is_help=True)
app.add_typer(intent_app, name="intent")
experiments_app = typer.Typer(help="Experiments between rankers: a dynamic experiment's state, its batch updates and its status.", no_args_is_help=True)
app.add_typer(experiments_app, name="experiments")
notify_app = typer.Typer(help="Notification targeting: which users to tell about which new items, when and why.", no_args_is_help=True)
app.add_typer(notify_app, name="notify")


class Kind(StrEnum):
    events = "events"
    documents = "documents"


class InFormat(StrEnum):
    auto = "auto"
    jsonl = "jsonl"
    csv = "csv"
    parquet = "parquet"
    mind = "mind"
    movielens = "movielens"


class OutFormat(StrEnum):
    parquet = "parquet"
    jsonl = "jsonl"


def _settings(**simulator: object) -> Settings:
    base = get_settings()
    overrides = {k: v for k, v in simulator.items() if v is not None}
    if not overrides:
        return base
    return base.model_copy(update={"simulator": base.simulator.model_copy(update=overrides)})


@app.command()
def config() -> None:
    """Print the effective settings (defaults < topicfeed.yaml < TOPICFEED_* env vars)."""
    typer.echo(get_settings().model_dump_json(indent=2))


@app.command()
def simulate(
    out: Annotated[Path, typer.Option(help="output folder")] = Path("sim"),
    users: Annotated[int | None, typer.Option(help="number of home-feed users")] = None,
    days: Annotated[int | None, typer.Option(help="days of logs")] = None,
    seed: Annotated[int | None, typer.Option(help="random seed")] = None,
    fmt: Annotated[OutFormat, typer.Option("--format", help="format of documents and events")] = OutFormat.parquet,
    taxonomy: Annotated[Path | None, typer.Option(help="taxonomy file (IAB TSV, MIND or one path per line)")] = None,
) -> None:
    """Write a synthetic world: documents, events and (apart) the ground truth."""
    from topicfeed.simulator import simulate as run_simulation
    from topicfeed.taxonomy import Taxonomy

    settings = _settings(users=users, days=days, seed=seed)
    tax = Taxonomy.load(taxonomy) if taxonomy else None
    result = run_simulation(settings, out, fmt=fmt.value, taxonomy=tax)
    s = result.stats
    typer.echo(
        f"simulated {s['events']} events, {s['documents']} documents, {s['users']} users in {result.timings['total_s']:.1f}s "
        f"({s['events'] / max(result.timings['total_s'], 1e-9):,.0f} events/s) -> {out}"
    )
    typer.echo(f"ctr: {json.dumps(s['ctr'])}  shares: {json.dumps(s['shares'])}")


@app.command()
def ingest(
    kind: Annotated[Kind, typer.Argument(help="what the file holds")],
    path: Annotated[Path, typer.Argument(help="JSONL, CSV or Parquet of our schema, or a MIND .tsv")],
    fmt: Annotated[InFormat, typer.Option("--format", help="input format (auto: from the file name)")] = InFormat.auto,
) -> None:
    """Validate and store records in the lake; invalid ones go to quarantine, duplicates are dropped."""
    from topicfeed.ingest import ingest as run_ingest

    start = time.perf_counter()
    try:
        report = run_ingest(kind.value, path, get_settings(), fmt.value, echo_errors=5)
    except (FileNotFoundError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    seconds = time.perf_counter() - start
    typer.echo(f"{report.summary_line()} ({seconds:.1f}s, {report.read / max(seconds, 1e-9):,.0f} records/s)")
    if report.quarantine_path:
        typer.echo(f"quarantine: {report.quarantine_path}")


@app.command()
def summary(as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False) -> None:
    """Counts and click-through rates of what the lake holds."""
    from topicfeed.summary import format_summary, lake_summary

    result = lake_summary(get_settings())
    typer.echo(json.dumps(result, indent=2) if as_json else format_summary(result))


@app.command()
def run(
    users: Annotated[int | None, typer.Option(help="number of simulated users")] = None,
    days: Annotated[int | None, typer.Option(help="days of logs")] = None,
) -> None:
    """The main job on the embedded default (SQLite, local files): simulate -> ingest -> train the
    classifier and the intent refiner -> the DAGs through Airflow -> the feed service's feeds of three
    users -> notification targets -> what was written where."""
    from dags.main_job import main_job

    settings = _settings(users=users, days=days)
    start = time.perf_counter()
    main_job(settings, log=typer.echo)
    typer.echo(f"done in {time.perf_counter() - start:.1f}s")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    workers: Annotated[int, typer.Option(help="worker processes (uvicorn)")] = 1,
) -> None:
    """Run the feed service (FastAPI on uvicorn); the OpenAPI reference is at /docs. With several
    workers, /metrics sums them all (prometheus-client multiprocess mode, in a fresh temporary folder
    unless PROMETHEUS_MULTIPROC_DIR is set)."""
    import tempfile

    import uvicorn

    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="topicfeed-metrics-")

    uvicorn.run("feed.service:app_from_settings", factory=True, host=host, port=port, workers=workers, log_level="warning", access_log=False)


def _when(value: str | None) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@store_app.command("apply")
def store_apply() -> None:
    """Write feature_store.yaml from the settings and register every Feast definition."""
    from featurestore import repo

    defs = repo.apply(get_settings())
    typer.echo(f"applied {len(defs.all())} Feast objects to project '{get_settings().feast.project}' ({get_settings().online_store} online store)")


@store_app.command("compute")
def store_compute(asof: Annotated[str | None, typer.Option(help="ISO time; default: just after the newest event")] = None) -> None:
    """Compute user preferences, item topics and item stats from the lake (offline tables)."""
    from featurestore.jobs import compute_features

    typer.echo(json.dumps(compute_features(get_settings(), _when(asof)), indent=2))


@store_app.command("materialize")
def store_materialize(
    start: Annotated[str | None, typer.Option(help="ISO time; default: end minus the profile TTL")] = None,
    end: Annotated[str | None, typer.Option(help="ISO time; default: just after the newest event")] = None,
    engine: Annotated[str, typer.Option(help="topicfeed (vectorised) or feast (FeatureStore.materialize)")] = "topicfeed",
) -> None:
    """Load the latest offline values into the online store (SQLite or Redis)."""
    from featurestore import repo
    from featurestore.jobs import default_asof
    from featurestore.online import OnlineStoreUnavailable

    settings = get_settings()
    stop = _when(end) or default_asof(settings)
    begin = _when(start) or stop - timedelta(days=settings.feast.profile_ttl_days)
    try:
        store = repo.get_store(settings)
        repo.apply(settings, store)
        for report in repo.materialize(settings, begin, stop, store, engine=engine):
            typer.echo(json.dumps(report.__dict__))
    except OnlineStoreUnavailable as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(3) from exc


@store_app.command("push-intents")
def store_push_intents(path: Annotated[Path, typer.Argument(help="JSONL of {user_id, query, refined_query, ts}")]) -> None:
    """Push refined intents to the online store now (Feast push source) and keep them offline."""
    from featurestore import intents

    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    missing = [(i + 1, f) for i, r in enumerate(records) for f in ("user_id", "query", "refined_query", "ts") if not r.get(f)]
    if missing:
        typer.echo(f"error: {path}: record {missing[0][0]} has no '{missing[0][1]}'", err=True)
        raise typer.Exit(2)
    typer.echo(f"pushed intents of {intents.push_intents(get_settings(), records)} users")


@store_app.command("profile")
def store_profile(
    user_id: Annotated[str, typer.Argument()],
    sdk: Annotated[bool, typer.Option(help="read through Feast's get_online_features")] = False,
) -> None:
    """Print one user's whole online profile as JSON."""
    from dataclasses import asdict

    from featurestore.online import OnlineStoreUnavailable
    from featurestore.profile import ProfileReader

    reader = ProfileReader(get_settings())
    try:
        profile = reader.get_via_sdk(user_id) if sdk else reader.get(user_id)
    except OnlineStoreUnavailable as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(3) from exc
    typer.echo(json.dumps(asdict(profile), default=str, indent=2))


@store_app.command("check")
def store_check() -> None:
    """Reach the configured online store (SQLite or Redis) once, with timeouts."""
    from featurestore.online import OnlineStoreUnavailable, check_online_store

    try:
        typer.echo(json.dumps(check_online_store(get_settings())))
    except OnlineStoreUnavailable as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(3) from exc


def _shared(path: str) -> Path:
    return get_settings().shared_data_dir / path


@classify_app.command("train")
def classify_train(
    taxonomy: Annotated[Path | None, typer.Option(help="taxonomy file (IAB TSV, MIND taxonomy.tsv or one path per line); default: MIND's")] = None,
    data: Annotated[Path | None, typer.Option(help="labelled documents: MIND news.tsv, or JSONL/CSV/Parquet documents with topics; default: the MIND sample")] = None,
    out: Annotated[Path | None, typer.Option(help="model directory; default: the configured classifier dir")] = None,
    dev_fraction: Annotated[float | None, typer.Option(help="share held out for eval; 0 trains on everything (a model to ship)")] = None,
) -> None:
    """SFT the classifier on labelled documents (a dev split is held out and recorded for `eval`)."""
    from classifier import jobs

    settings = get_settings()
    data = data or _shared("mind/news_train.tsv")
    jobs.train(settings, taxonomy or _shared("mind/taxonomy.tsv"), data, out or settings.classifier_dir, dev_fraction=dev_fraction)


@classify_app.command("predict")
def classify_predict(
    input: Annotated[Path, typer.Option("--input", help="documents (JSONL/CSV/Parquet/MIND news.tsv)")],
    output: Annotated[Path, typer.Option(help="predictions, one JSON object per document")],
    model: Annotated[Path | None, typer.Option(help="trained classifier directory")] = None,
    k: Annotated[int | None, typer.Option(help="topics per document (beam width)")] = None,
) -> None:
    """Write the k best topics of each document with their scores."""
    from classifier import jobs

    settings = get_settings()
    n = jobs.predict(settings, model or settings.classifier_dir, input, output, k=k)
    typer.echo(f"wrote topics of {n} documents to {output}")


@classify_app.command("eval")
def classify_eval(
    model: Annotated[Path | None, typer.Option(help="trained classifier directory")] = None,
    data: Annotated[Path | None, typer.Option(help="labelled documents; the training file means its held-out split")] = None,
    baselines: Annotated[bool, typer.Option(help="also TF-IDF + LR and MiniLM + LR on the same split")] = True,
    as_json: Annotated[Path | None, typer.Option("--json", help="also write the results here")] = None,
) -> None:
    """Top-1 accuracy and recall@k per level, valid outputs and docs/s, with the two baselines."""
    from classifier import jobs
    from classifier.evaluate import format_results

    settings = get_settings()
    results = jobs.eval_model(settings, model or settings.classifier_dir, data or _shared("mind/news_train.tsv"), baselines=baselines)
    typer.echo(format_results(results))
    if as_json:
        as_json.write_text(json.dumps([r.as_dict() for r in results], indent=1))


@classify_app.command("ablate")
def classify_ablate(
    taxonomy: Annotated[Path | None, typer.Option(help="taxonomy file; default: MIND's")] = None,
    data: Annotated[Path | None, typer.Option(help="labelled documents; default: the MIND sample")] = None,
    gold_fraction: Annotated[float, typer.Option(help="share of the training split kept as gold; the rest is the unlabelled pool")] = 0.5,
    as_json: Annotated[Path | None, typer.Option("--json", help="also write the table here")] = None,
) -> None:
    """Does each data step help? SFT on gold, + judged weak labels, + synthetic documents, scored on dev."""
    from classifier import jobs

    table = jobs.ablation(get_settings(), taxonomy or _shared("mind/taxonomy.tsv"), data or _shared("mind/news_train.tsv"), gold_fraction=gold_fraction)
    typer.echo(table.table())
    if as_json:
        as_json.write_text(json.dumps([{"step": r.step, "train_docs": r.train_docs, "train_s": round(r.train_s), "note": r.note, **r.result.as_dict()} for r in table.rows], indent=1))


@classify_app.command("items")
def classify_items(model: Annotated[Path | None, typer.Option(help="trained classifier directory")] = None) -> None:
    """Classify the lake's documents and write the offline item_topics table (with topic embeddings)."""
    from classifier.items import classify_lake_documents
    from classifier.jobs import load_classifier, set_threads

    settings = get_settings()
    set_threads(settings)
    path, n, _ = classify_lake_documents(settings, load_classifier(settings, model or settings.classifier_dir), progress=True)
    typer.echo(f"classified {n} documents; item topics in {path}")


@feed_app.command("evaluate")
def feed_evaluate(
    events: Annotated[Path, typer.Option(help="events (JSONL/CSV/Parquet of our schema, MIND behaviors.tsv, MovieLens ratings)")],
    documents: Annotated[Path, typer.Option(help="documents with topics (our schema, MIND news.tsv, MovieLens movies)")],
    split_time: Annotated[str, typer.Option(help="ISO time: rank from what came before, score on the clicks after")],
    k: Annotated[int, typer.Option(help="cut-off of the ranked lists")] = 10,
    fmt: Annotated[InFormat, typer.Option("--format", help="format of both files (auto: from the file names)")] = InFormat.auto,
    tune_days: Annotated[
        float | None,
        typer.Option(
            help="first choose the ranking weights (feed.tune_grid) on the clicks of this many days before the split, ranked from the history before them "
            "(30 on MovieLens 100K; 14 held too few users to choose by)"
        ),
    ] = None,
    intents: Annotated[
        str | None,
        typer.Option(
            help="refine the searches with clicks of the --intent-days before the split and push them online first, as the search_intents DAG does: "
            "'raw' (Q* = Q) or a saved refiner's directory; adds a row without the intents source, on the same profiles"
        ),
    ] = None,
    intent_days: Annotated[float, typer.Option(help="with --intents: days of searches before the split that are refined")] = 7.0,
    domain: Annotated[list[str] | None, typer.Option(help="score only the later clicks in this domain (repeatable; e.g. homefeed); default: every domain")] = None,
) -> None:
    """nDCG@k, precision@k, recall@k, MRR and coverage of our feed, popularity and trending, in one run
    (documents whose topics are outside the configured taxonomy get one made of the topics they use)."""
    import json

    from feed.evaluate import evaluate_offline, grid_size, paired_ratio_interval, tune_weights

    settings = get_settings()
    feed = None
    refiner = None
    try:
        if intents is not None:
            from intent.model import RawQuery
            from intent.students import load_refiner

            if intents == "raw":
                refiner = RawQuery()
            elif Path(intents).is_dir():
                refiner = load_refiner(intents, **settings.intent.serving())  # a directory that holds no refiner says so
            else:
                raise ValueError(f"--intents {intents}: neither 'raw' nor a directory")
        if tune_days:
            bar = _bar(grid_size(settings.feed.tune_grid), "weight sets")
            try:
                tuned = tune_weights(
                    settings, events, documents, _when(split_time), days=tune_days, k=k, fmt=fmt.value, progress=lambda done, _: bar.update(1), intents=refiner, intent_days=intent_days, domains=domain
                )
            finally:
                bar.close()
            typer.echo(
                f"tuned on the clicks from {tuned.validation_time.isoformat()} to the split ({tuned.users} users, {tuned.tried} weight sets): "
                f"ndcg@{k} {tuned.default_ndcg:.3f} with the defaults, {tuned.tuned_ndcg:.3f} with {json.dumps(tuned.overrides) if tuned.overrides else 'the defaults'} "
                f"(popularity there: {tuned.popularity_ndcg:.3f})"
            )
            feed = tuned.feed
        refining, refined = _count_bar("searches refined", "search")
        try:
            scores = evaluate_offline(
                settings, events, documents, _when(split_time), k=k, fmt=fmt.value, feed=feed, intents=refiner, intent_days=intent_days, domains=domain, progress=refined
            )
        finally:
            refining.close()
    except (FileNotFoundError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    for s in scores:
        typer.echo(s.line(k))
    ours, pop, trend = scores[:3]
    typer.echo(f"ndcg@{k} of topicfeed vs popularity: {ours.ndcg / max(pop.ndcg, 1e-9):.2f}x, vs trending: {ours.ndcg / max(trend.ndcg, 1e-9):.2f}x")
    if len(scores) > 3:
        lo, hi = paired_ratio_interval(ours, scores[3])
        typer.echo(f"ndcg@{k} of topicfeed vs the same without intents: {ours.ndcg / max(scores[3].ndcg, 1e-9):.3f}x [{lo:.3f}, {hi:.3f}]")


@feed_app.command("preview-rule")
def feed_preview_rule(
    partner: Annotated[str, typer.Option(help="the partner, as in the documents' partner field")],
    share: Annotated[float, typer.Option(help="its share of the top slots, 0..1")],
    top_n: Annotated[int, typer.Option(help="slots the share applies to")] = 10,
    users: Annotated[int, typer.Option(help="users sampled from the lake")] = 500,
) -> None:
    """The offline cost of a partner rule before it goes live: DCG of the ranker's own scores with the
    rule, without it, and with random placement of the same share (what a managed service does)."""
    from feed.preview import preview_rule

    try:
        typer.echo(preview_rule(get_settings(), partner, share, top_n=top_n, users=users).table())
    except (FileNotFoundError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


def main() -> None:
    app(prog_name="topicfeed")


if __name__ == "__main__":
    sys.exit(main())


# intent ------------------------------------------------------------------------------------------------
def _bar(total: int | None, desc: str, unit: str = "step"):  # noqa: ANN202
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, leave=False, disable=not sys.stderr.isatty())


def _count_bar(desc: str, unit: str):  # noqa: ANN202
    """A progress bar and a ``progress(done, total)`` callback that moves it."""
    bar = _bar(None, desc, unit=unit)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    return bar, progress


def _training_bar(desc: str):  # noqa: ANN202
    """A progress bar and the ``fit(progress=...)`` callback that moves it, with the loss."""
    bar = _bar(0, desc)

    def progress(step: int, total: int, loss: float) -> None:
        bar.total = total
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.3f}")

    return bar, progress


def _echo_rejected(rejected: list[tuple[int, str, str]], limit: int | None = None) -> None:
    """Rows of an input file that were not read, on stderr: (line, field, message), the first ``limit``."""
    for line, field, message in rejected[:limit]:
        typer.echo(f"rejected line {line}: field '{field}': {message}", err=True)


@intent_app.command("mine")
def intent_mine(
    search_log: Annotated[Path | None, typer.Option(help="a search log, TSV or CSV (product_uid, product_title, search_term, relevance, or other logs' names for them such as query, title, median_relevance, clicked: rated click_relevance (2) or more is a click; without a rating every row is one) instead of the lake")] = None,
    out: Annotated[Path | None, typer.Option(help="write the pairs and bias patterns as JSON here")] = None,
    show: Annotated[int, typer.Option(help="pairs to print")] = 10,
) -> None:
    """(Q, Q*) pairs from search clicks: containment between a document's queries, bias patterns
    (words users add to anything) found statistically and dropped, the most informative Q* kept."""
    from intent.jobs import mine_lake
    from intent.mining import mine, read_search_log

    try:
        if search_log:
            clicks, rejected = read_search_log(search_log, get_settings().intent.click_relevance)
            _echo_rejected(rejected, limit=10)
            if rejected:
                typer.echo(f"{len(rejected)} unreadable rows of {search_log} left out; {len(clicks):,} clicks read", err=True)
            report = mine(clicks)
        else:
            report = mine_lake(get_settings())
    except (FileNotFoundError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(report.summary())
    for p in report.pairs[:show]:
        typer.echo(f"  {p.query!r} -> {p.refined_query!r}   ({p.title[:60]})")
    if out:
        out.write_text(json.dumps(report.as_dict(), indent=1))
        typer.echo(f"wrote {out}")


@intent_app.command("train")
def intent_train(
    out: Annotated[Path | None, typer.Option(help="model directory; default: the configured intent dir")] = None,
    teacher: Annotated[Path | None, typer.Option(help="a trained teacher: it labels sampled lake searches and searches made from the gold examples (settings.intent.title_searches) for the student")] = None,
    news: Annotated[Path | None, typer.Option(exists=True, dir_okay=False, help="with --teacher: a news catalog (MIND news.tsv format) whose titles' named entities the teacher also labels as searches")] = None,
    base: Annotated[str | None, typer.Option(help="the LM student's base (minilm, gemma3-270m, a .gguf file, an HF causal LM directory; NAME@N grows it to N blocks); implies --student lm; default: settings (minilm@12)")] = None,
    student: Annotated[str | None, typer.Option(help="tagger (an encoder chooses title words; the default) or lm (a causal LM writes Q* by beam search); default: settings.intent.student")] = None,
    gold_only: Annotated[bool, typer.Option(help="train the student's base on the gold set's training part only (no mined pairs, no teacher labels)")] = False,
    search_log: Annotated[Path | None, typer.Option(help="a real search log (the columns of intent mine --search-log) instead of the lake: its training products' mined pairs, the searches made from their clicks (with --teacher, the teacher's labels of their searches too) and the suggester counted on them")] = None,
    holdout: Annotated[float, typer.Option(min=0.0, max=0.9, help="with --search-log: the share of its products left out, those intent eval --search-log --holdout scores (0: train on every product)")] = 0.2,
) -> None:
    """Train the refiner: by default the student (gold set + the lake's mined pairs [+ teacher labels]),
    or with --search-log on a real search log's training products."""
    from intent.jobs import split_by_product, train_default
    from intent.mining import read_search_log
    from intent.model import gold_split
    from intent.students import new_student

    if student not in (None, "tagger", "lm"):
        raise typer.BadParameter(f"{student!r}: tagger or lm", param_hint="--student")
    if news is not None and teacher is None:
        raise typer.BadParameter("--news needs --teacher: the teacher labels the news catalog's entity searches", param_hint="--news")
    if search_log is not None and gold_only:
        raise typer.BadParameter("--search-log and --gold-only: the gold set alone reads no log", param_hint="--search-log")
    settings = get_settings()
    clicks = None
    if search_log is not None:
        try:
            read, rejected = read_search_log(search_log, settings.intent.click_relevance)
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc
        _echo_rejected(rejected, limit=10)
        clicks, left_out = split_by_product(read, holdout)
        if not clicks:
            typer.echo(f"error: {search_log}: no clicks on its training products ({len(read):,} clicks read, {len(rejected)} rows rejected, {len(left_out):,} held out)", err=True)
            raise typer.Exit(2)
        typer.echo(f"{search_log}: {len(clicks):,} clicks on {len({c.doc_id for c in clicks}):,} training products; "
                   f"{len(left_out):,} clicks on {len({c.doc_id for c in left_out}):,} products held out (--holdout {holdout}); {len(rejected)} rows rejected")
    update: dict[str, object] = {"base_model": base, "student": "lm"} if base else {}
    if student:
        update["student"] = student
    if update:
        settings = settings.model_copy(update={"intent": settings.intent.model_copy(update=update)})
    out = out or settings.intent_dir
    start = time.perf_counter()
    bar, progress = _training_bar("training")

    if gold_only:
        refiner = new_student(settings.intent).fit(gold_split()[0], progress=progress)
        refiner.save_pretrained(out)
    else:
        refiner = train_default(settings, out, teacher=teacher, news=news, progress=progress, clicks=clicks)
    bar.close()
    what = settings.intent.tagger_base + " (word tagger)" if settings.intent.student == "tagger" else settings.intent.base_model
    typer.echo(f"trained {what} on {refiner.fit_report_['examples']} examples in {time.perf_counter() - start:.0f}s "
               f"(loss {refiner.fit_report_['first_loss']} -> {refiner.fit_report_['last_loss']}); saved to {out}")


@intent_app.command("train-teacher")
def intent_train_teacher(
    out: Annotated[Path, typer.Option(help="where the teacher is saved (then: intent train --teacher DIR)")],
    base: Annotated[str | None, typer.Option(help="the teacher's base (gemma3-270m, a .gguf file, an HF directory); default: settings.intent.teacher_base")] = None,
) -> None:
    """Train the teacher: its base (Gemma 3 270M) fine-tuned on the gold set's training part, by the
    settings' teacher recipe (LoRA, 3 epochs; settings.intent.teacher_*). About 4 minutes on 2 cores."""
    from intent.model import IntentRefiner, gold_split

    settings = get_settings()
    params = settings.intent.teacher_params()
    if base:
        params = params.model_copy(update={"base_model": base})
    start = time.perf_counter()
    bar, progress = _training_bar("training the teacher")

    teacher = IntentRefiner.from_base(params=params).fit(gold_split()[0], progress=progress)
    bar.close()
    teacher.save_pretrained(out)
    how = f"LoRA r {params.lora_r}" if params.lora else "every weight"
    typer.echo(f"trained the teacher {params.base_model} ({how}) on {teacher.fit_report_['examples']} gold examples in {time.perf_counter() - start:.0f}s "
               f"(loss {teacher.fit_report_['first_loss']} -> {teacher.fit_report_['last_loss']}); saved to {out}")


@intent_app.command("refine")
def intent_refine(
    input: Annotated[Path, typer.Option("--input", help='JSONL requests: {"id", "query", "documents": [{"doc_id", "title", "body"?}]}')],
    output: Annotated[Path, typer.Option("--output", help='JSONL out: {"id", "query", "refined_query"}')],
    model: Annotated[Path | None, typer.Option(help="refiner directory; default: the configured intent dir")] = None,
) -> None:
    """Refine every request of a JSONL file; invalid lines are reported by line and field, not refined."""
    from intent.jobs import refine_file

    bar, progress = _count_bar("refining", "request")
    try:
        with bar:
            report = refine_file(model or get_settings().intent_dir, input, output, progress=progress, **get_settings().intent.serving())
    except (FileNotFoundError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    _echo_rejected(report.rejected)
    typer.echo(f"refined {report.refined} requests into {output}; rejected {len(report.rejected)}")


@intent_app.command("suggest")
def intent_suggest(
    input: Annotated[Path, typer.Option("--input", help='JSONL requests, as intent refine reads them: {"id", "query", "documents": [{"doc_id", "title"}]}')],
    output: Annotated[Path, typer.Option("--output", help='JSONL out: {"id", "query", "suggested_query"}')],
    search_log: Annotated[Path | None, typer.Option(help="learn from this search log (the columns of intent mine --search-log) instead of the lake's search sessions")] = None,
    model: Annotated[Path | None, typer.Option(help="suggest with the search head of this saved word tagger (intent train makes one) instead of counting a log")] = None,
) -> None:
    """A short search suggestion per request: Q + the clicked titles' word that the log's users type
    most often with Q's words, in title order ("makita saw" -> "makita jig saw"), or with --model the
    word a trained tagger's search head expects them to type; invalid lines reported by line and field."""
    from intent.jobs import suggest_file

    try:
        report, unreadable = suggest_file(get_settings(), input, output, search_log, model)
    except (FileNotFoundError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if unreadable:
        typer.echo(f"{len(unreadable)} unreadable rows of {search_log} left out (the first: line {unreadable[0][0]}, field {unreadable[0][1]!r}: {unreadable[0][2]})", err=True)
    _echo_rejected(report.rejected)
    typer.echo(f"suggested for {report.refined} requests into {output}; rejected {len(report.rejected)}")


@intent_app.command("eval")
def intent_eval(
    models: Annotated[list[Path] | None, typer.Option("--model", help="refiner directories to compare (repeatable; gaps are read against the first); default: the configured one")] = None,
    gold: Annotated[Path | None, typer.Option(help='your own labelled searches, all evaluated: JSONL as intent refine reads it plus "refined_query" (and "category"), or a TSV in the format of intent/data/gold.tsv; default: the held-out gold set')] = None,
    search_log: Annotated[Path | None, typer.Option(help="real search log for the held-out-products check (the columns of intent mine --search-log); default: the shared Home Depot log where it is present")] = None,
    log: Annotated[bool, typer.Option("--log/--no-log", help="the real-log check (--no-log: labelled searches only)")] = True,
    holdout: Annotated[float, typer.Option(help="share of the gold set / of the log's products held out")] = 0.2,
    samples: Annotated[int, typer.Option(help="held-out log searches refined for the retrieval check")] = 500,
    as_json: Annotated[Path | None, typer.Option("--json", help="also write every row, the gaps and the counts here")] = None,
) -> None:
    """ROUGE, BERTScore, key-token retention, bias share on held-out gold (or your labelled searches,
    --gold); on held-out products of a real search log, ROUGE-L against mined Q* and the clicked
    product's BM25 MRR with Q* vs Q, beside the log's one-word suggestion (Q + the title word the
    training products' users type most with Q's words)."""
    from dataclasses import asdict

    from intent.benchmark import evaluate_models
    from intent.jobs import read_labelled

    settings = get_settings()
    examples, rejected = None, []
    if gold is not None:
        try:
            examples, rejected = read_labelled(gold)
        except (OSError, UnicodeDecodeError) as exc:
            typer.echo(f"error: {gold}: {exc}", err=True)
            raise typer.Exit(2) from exc
        _echo_rejected(rejected, limit=10)
        if not examples:
            typer.echo(f"error: {gold}: no labelled search could be read ({len(rejected)} lines rejected)", err=True)
            raise typer.Exit(2)
    log_path = None
    if log:
        log_path = search_log or _shared("homedepot/search_log.tsv")
        if search_log is None and not log_path.is_file():
            typer.echo(f"no search log at {log_path} (--search-log F, or --no-log): the real-log check is left out", err=True)
            log_path = None
    try:
        with _bar(None, "refining", unit="request") as bar:
            result = evaluate_models(
                settings, models or [settings.intent_dir], log_path, holdout=holdout, samples=samples, gold=examples, gold_name=f"labelled searches {gold.name}" if gold else None, progress=bar.update
            )
    except (FileNotFoundError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if gold is not None:
        result.rejected[gold.name] = rejected
    for line in result.lines():
        typer.echo(line)
    if as_json:
        as_json.write_text(json.dumps(asdict(result), indent=1))


@intent_app.command("refine-logs")
def intent_refine_logs(
    start: Annotated[str, typer.Option(help="ISO time: the window's start (inclusive)")],
    end: Annotated[str, typer.Option(help="ISO time: the window's end (exclusive)")],
    model: Annotated[Path | None, typer.Option(help="refiner directory; default: the configured intent dir")] = None,
    push: Annotated[bool, typer.Option(help="also push the refined intents to the online store")] = True,
) -> None:
    """Refine a window's searches with clicks, grouped by (user, query), and suggest each again with
    the suggester saved beside the refiner: offline history + online push."""
    from intent.jobs import refine_window
    from intent.students import load_refiner
    from intent.suggest import suggester_for

    settings = get_settings()
    t0 = time.perf_counter()
    directory = model or settings.intent_dir
    refiner = load_refiner(directory, **settings.intent.serving())
    bar, refined = _count_bar("searches refined", "search")
    try:
        records = refine_window(settings, refiner, _when(start), _when(end), push=push, suggester=suggester_for(settings, directory), progress=refined)
    finally:
        bar.close()
    typer.echo(f"refined {len(records)} searches in {time.perf_counter() - t0:.1f}s" + (" and pushed them online" if push else ""))
    for r in records[:5]:
        typer.echo(f"  {r['user_id']}: {r['query']!r} -> {r['refined_query']!r}" + (f" (suggested: {r['suggested_query']!r})" if r["suggested_query"] else ""))


@notify_app.command("targets")
def notify_targets(
    new_since: Annotated[str | None, typer.Option(help="ISO time: target the lake's documents created since then")] = None,
    items: Annotated[Path | None, typer.Option(help="item ids to target (text lines, JSON lines, CSV or Parquet with item_id)")] = None,
    now: Annotated[str | None, typer.Option(help="ISO time the list is made for; default: just after the newest event")] = None,
    name: Annotated[str | None, typer.Option(help="the run's name (its list is notifications/targets/<name>.parquet; a rerun replaces it)")] = None,
    output: Annotated[Path | None, typer.Option(help="also write the list here as JSON lines")] = None,
    show: Annotated[int, typer.Option(help="targets to print")] = 10,
) -> None:
    """Users whose preferences or recent searches match each item, with a frequency cap per user and
    day, quiet hours in the user's time zone (held until they end) and no repeat of an item."""
    from feed.catalog import Catalog
    from feed.notify import new_items, read_items, run_targeting

    if (new_since is None) == (items is None):
        typer.echo("error: give exactly one of --new-since T or --items FILE", err=True)
        raise typer.Exit(2)
    settings = get_settings()
    try:
        catalog = Catalog.load(settings, asof=_when(now))
        at = catalog.asof
        wanted = read_items(items) if items else new_items(settings, _when(new_since), at)
        run = run_targeting(settings, at, wanted, name=name, catalog=catalog)
    except (FileNotFoundError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(run.summary())
    if run.unknown_items:
        typer.echo(f"unknown items (not in the catalog): {', '.join(run.unknown_items[:10])}" + (" ..." if len(run.unknown_items) > 10 else ""))
    for t in run.targets[:show]:
        typer.echo(f"  {t.user_id:>12s}  {t.item_id:>10s}  send_at={t.send_at:%Y-%m-%d %H:%M}Z ({t.time_zone})  [{t.reason_kind}] {t.reason}")
    if output:
        with output.open("w") as f:
            for t in run.targets:
                f.write(json.dumps({"user_id": t.user_id, "item_id": t.item_id, "score": t.score, "reason_kind": t.reason_kind, "reason": t.reason, "send_at": t.send_at.isoformat(), "time_zone": t.time_zone}) + "\n")
    typer.echo(f"wrote {run.path}" + (f" and {output}" if output else ""))


@notify_app.command("import-time-zones")
def notify_import_time_zones(source: Annotated[Path, typer.Argument(help="Parquet with user_id, time_zone (the simulator writes time_zones.parquet)")]) -> None:
    """Record users' time zones where targeting reads them (for quiet hours)."""
    from feed.notify import import_time_zones

    typer.echo(f"wrote {import_time_zones(get_settings(), source)}")


def _experiment_path(name: str) -> Path:
    if not name.replace("-", "").replace("_", "").isalnum():
        typer.echo(f"error: experiment name {name!r}: letters, digits, '-' and '_' only", err=True)
        raise typer.Exit(2)
    return get_settings().experiments_dir / f"{name}.json"


@experiments_app.command("new")
def experiments_new(
    name: Annotated[str, typer.Argument(help="experiment name")],
    arms: Annotated[str, typer.Option(help="arms and their initial weights: a=0.5,b=0.5")],
    since: Annotated[str | None, typer.Option(help="ISO time the experiment starts; default: now")] = None,
) -> None:
    """Start a dynamic experiment's state (initial weights allocate until the warm-up ends)."""
    from feed.experiments import ExperimentState

    path = _experiment_path(name)
    if path.exists():
        typer.echo(f"error: {path} exists", err=True)
        raise typer.Exit(2)
    try:
        weights = {a: float(w) for a, w in (part.split("=", 1) for part in arms.split(","))}
    except ValueError as exc:
        typer.echo(f"error: --arms {arms!r}: expected name=weight,name=weight", err=True)
        raise typer.Exit(2) from exc
    ExperimentState.new(name, weights, _when(since) or datetime.now(UTC)).save(path)
    typer.echo(f"wrote {path}")


@experiments_app.command("update")
def experiments_update(
    name: Annotated[str, typer.Argument(help="experiment name")],
    batch_id: Annotated[str, typer.Option(help="the batch's id (e.g. its hour); a batch applied before changes nothing")],
    counts: Annotated[Path, typer.Option(help='JSON: {"arm": [impressions, clicks], ...}')],
    at: Annotated[str | None, typer.Option(help="ISO time the new allocation applies from; default: now")] = None,
    warmup: Annotated[int, typer.Option(help="impressions every arm needs before Thompson sampling allocates")] = 1000,
    floor: Annotated[float, typer.Option(help="least share of traffic per arm")] = 0.01,
) -> None:
    """Apply one batch of logged impressions and clicks (batched Thompson sampling)."""
    from feed.experiments import ExperimentState

    path = _experiment_path(name)
    try:
        state = ExperimentState.load(path)
        batch = {a: (int(v[0]), int(v[1])) for a, v in json.loads(counts.read_text()).items()}
        changed = state.apply(batch_id, batch, _when(at) or datetime.now(UTC), warmup, floor)
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    state.save(path)
    typer.echo(f"batch {batch_id}: " + ("applied" if changed else "already applied, nothing changed"))


@experiments_app.command("batch")
def experiments_batch(
    start: Annotated[str, typer.Option(help="ISO start of the window (inclusive)")],
    end: Annotated[str, typer.Option(help="ISO end of the window (exclusive)")],
) -> None:
    """Apply a window's logged impressions and clicks (the lake's events tagged with experiment and arm)
    to every experiment of the settings live in it: the experiment_update DAG's work. Once per window."""
    from feed.experiments import update_all

    s = get_settings()
    try:
        begin, until = _when(start), _when(end)
    except ValueError as exc:
        typer.echo(f"error: --start/--end: {exc}", err=True)
        raise typer.Exit(2) from exc
    if begin is None or until is None or until <= begin:
        typer.echo("error: --end must come after --start", err=True)
        raise typer.Exit(2)
    results = update_all(s, begin, until)
    if not results:
        typer.echo("no experiment in the settings (feed.experiments) was live in that window")
    for r in results:
        counts = ", ".join(f"{a}: {i:,} impressions, {c:,} clicks" for a, (i, c) in r.counts.items()) or "no tagged events"
        typer.echo(f"{r.experiment}: batch {r.batch} " + ("applied" if r.applied else "already applied, nothing changed") + f" ({counts}; {r.unmatched_clicks} unmatched clicks) -> {r.path}")


@experiments_app.command("status")
def experiments_status(name: Annotated[str, typer.Argument(help="experiment name")], as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Per arm: impressions, clicks, CTR, alpha, beta, P(best) and expected loss, and the allocation now."""
    from feed.experiments import ExperimentState

    path = _experiment_path(name)
    try:
        state = ExperimentState.load(path)
    except (OSError, ValueError, KeyError) as exc:
        typer.echo(f"error: cannot read {path}: {exc}", err=True)
        raise typer.Exit(2) from exc
    rows = state.status()
    now = state.allocation_at(datetime.now(UTC))
    if as_json:
        typer.echo(json.dumps({"experiment": name, "batches": len(state.batches), "arms": rows, "allocation": now}, indent=1))
        return
    typer.echo(f"{name}: {len(state.batches)} batches applied")
    typer.echo(f"  {'arm':16s} {'impressions':>11s} {'clicks':>8s} {'CTR':>7s} {'alpha':>7s} {'beta':>8s} {'P(best)':>8s} {'exp. loss':>10s} {'traffic':>8s}")
    for r in rows:
        typer.echo(
            f"  {r['arm']:16s} {r['impressions']:11,d} {r['clicks']:8,d} {r['ctr']:7.2%} {r['alpha']:7d} {r['beta']:8d} {r['p_best']:8.1%} {r['expected_loss']:10.5f} {now.get(r['arm'], 0):8.1%}"
        )

