"""The ``topicfeed`` command. Each subcommand is a thin call into library code."""

from __future__ import annotations

import json
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from topicfeed.settings import Settings, get_settings

app = typer.Typer(help="topicfeed: cross-domain topic profiles for feed personalization.", no_args_is_help=True, add_completion=False)
store_app = typer.Typer(help="The online/offline feature store.", no_args_is_help=True)
app.add_typer(store_app, name="store")


class Kind(StrEnum):
    events = "events"
    documents = "documents"


class InFormat(StrEnum):
    auto = "auto"
    jsonl = "jsonl"
    csv = "csv"
    parquet = "parquet"
    mind = "mind"


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

    try:
        report = run_ingest(kind.value, path, get_settings(), fmt.value, echo_errors=5)
    except (FileNotFoundError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(report.summary_line())
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
    """The main job on the embedded default: simulate -> ingest -> summary, all under the data dir."""
    from topicfeed.ingest import ingest as run_ingest
    from topicfeed.simulator import simulate as run_simulation
    from topicfeed.summary import format_summary, lake_summary

    settings = _settings(users=users, days=days)
    sim_dir = settings.data_dir / "simulated" / f"seed-{settings.simulator.seed}"
    start = time.perf_counter()
    result = run_simulation(settings, sim_dir)
    typer.echo(f"[1/3] simulate: {result.stats['events']} events, {result.stats['documents']} documents, {result.stats['users']} users ({result.timings['total_s']:.1f}s) -> {sim_dir}")
    for step, kind in (("2/3", "documents"), ("2/3", "events")):
        t = time.perf_counter()
        report = run_ingest(kind, result.files[kind], settings)
        typer.echo(f"[{step}] ingest {report.summary_line()} ({time.perf_counter() - t:.1f}s)")
    typer.echo("[3/3] summary")
    typer.echo(format_summary(lake_summary(settings)))
    typer.echo(f"done in {time.perf_counter() - start:.1f}s; ground truth (not ingested): {sim_dir / 'ground_truth'}")


@store_app.command("check")
def store_check() -> None:
    """Reach the configured online store (SQLite or Redis) once, with timeouts."""
    from featurestore.online import OnlineStoreUnavailable, check_online_store

    try:
        typer.echo(json.dumps(check_online_store(get_settings())))
    except OnlineStoreUnavailable as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(3) from exc


def main() -> None:
    app(prog_name="topicfeed")


if __name__ == "__main__":
    sys.exit(main())
