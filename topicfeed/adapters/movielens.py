"""Adapters for MovieLens ratings (GroupLens; Harper & Konstan, ACM TiiS 2015): public interaction data
in our schema, for the feed's offline check.

Every MovieLens layout in use reads the same way (the layout is told by the file's first line):

* ml-100k: ``u.data`` (``user<TAB>item<TAB>rating<TAB>timestamp``) and ``u.item`` (``|``-separated,
  19 genre flags at the end, Latin-1);
* ml-1m / ml-10m: ``ratings.dat`` (``user::item::rating::timestamp``) and ``movies.dat``
  (``item::Title (Year)::Genre|Genre``);
* ml-latest, ml-20m, ml-25m, ml-32m: ``ratings.csv`` (``userId,movieId,rating,timestamp``) and
  ``movies.csv`` (``movieId,title,genres``);
* RecBole's atomic files (``ml-100k.inter`` with ``user_id:token`` headers, ``ml-100k.item`` with
  ``class:token_seq`` genres), as the ``recbole`` wheel on PyPI ships ml-100k.

Ratings become home-feed events: a rating of at least ``like`` (4 of 5 by default) is a ``click``, any
lower rating an ``impression`` (the user was shown the movie and did not take it). Movies become
documents whose topics are ``Genre > Decade`` (``Comedy > 1990s``): the genre is the level-1 topic,
the decade of release the level-2 one, so the hierarchy the ranker matches is real. A movie's
``created_at`` is its release date (1 January of its year where only the year is known), and ids are
prefixed (``ml-u196``, ``ml-m242``) so they never collide with other sources in one lake.

Malformed lines are not raised: they come out as ``RawRecord`` with an ``error`` naming the field, so
that ingestion quarantines them and carries on.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from topicfeed.records import RawRecord

ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama", "Fantasy",
    "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
NO_GENRE = {"unknown", "(no genres listed)", ""}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # created_at of a movie with no known release
_YEAR = re.compile(r"\((\d{4})\)\s*$")


def user_id(raw: str) -> str:
    return f"ml-u{raw.strip()}"


def item_id(raw: str) -> str:
    return f"ml-m{raw.strip()}"


def topic_paths(genres: Iterable[str], year: int | None) -> list[str]:
    """``Genre > Decade`` per genre (``Genre`` alone when the year is unknown); no genre: no topics."""
    out = []
    for g in genres:
        g = g.strip().replace(">", "-")
        if g in NO_GENRE:
            continue
        out.append(f"{g} > {year // 10 * 10}s" if year else g)
    return list(dict.fromkeys(out))


def _encoding(path: Path) -> str:
    """UTF-8 if the whole file decodes as such, else Latin-1 (ml-100k and ml-1m are Latin-1): chosen
    before any line is read, so that no line is read twice."""
    try:
        with path.open(encoding="utf-8", errors="strict") as fh:
            for _ in fh:
                pass
    except UnicodeDecodeError:
        return "latin-1"
    return "utf-8"


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    with path.open(encoding=_encoding(path)) as fh:
        for number, line in enumerate(fh, start=1):
            if line.strip():
                yield number, line.rstrip("\r\n")


def _splitter(first: str) -> tuple[str, bool]:
    """(the layout of a file, whether its first line is a header) from that first line."""
    if "::" in first:
        return "dat", False
    if ":token" in first or ":float" in first:
        return "atomic", True
    if first.lower().startswith(("userid,", "movieid,")):
        return "csv", True
    if "|" in first:
        return "pipe", False
    return "tab", False


def _fields(path: Path) -> Iterator[tuple[int, list[str], str]]:
    """(line number, fields, raw line) of a MovieLens file of any layout, header skipped."""
    lines = _lines(path)
    layout: str | None = None
    names: list[str] = []  # an atomic file's column names, from its header
    for number, line in lines:
        if layout is None:
            layout, has_header = _splitter(line)
            if has_header:
                names = [h.split(":")[0] for h in line.split("," if layout == "csv" else "\t")]
                continue
        if layout == "dat":
            yield number, line.split("::"), line
        elif layout == "csv":
            yield number, next(csv.reader([line])), line
        elif layout == "pipe":
            yield number, line.split("|"), line
        elif layout == "atomic":
            cells = line.split("\t")
            yield number, [dict(zip(names, cells)).get(k, "") for k in ("item_id", "movie_title", "release_year", "class")] if "class" in names else cells, line
        else:
            yield number, line.split(), line


def read_ratings(path: str | Path, like: float = 4.0) -> Iterator[RawRecord]:
    """Events from a MovieLens ratings file: a rating >= ``like`` is a click, a lower one an impression."""
    for number, row, raw in _fields(Path(path)):
        if len(row) < 4:
            yield RawRecord(number, {}, raw=raw, error=("<record>", f"expected user, item, rating and timestamp, got {len(row)} fields"))
            continue
        user, item, rating_s, ts_s = (c.strip() for c in row[:4])
        try:
            rating = float(rating_s)
        except ValueError:
            yield RawRecord(number, {}, raw=raw, error=("rating", f"not a number: {rating_s!r}"))
            continue
        try:
            ts = datetime.fromtimestamp(float(ts_s), tz=UTC)
        except (ValueError, OverflowError, OSError):
            yield RawRecord(number, {}, raw=raw, error=("timestamp", f"not Unix seconds: {ts_s!r}"))
            continue
        kind = "click" if rating >= like else "impression"
        yield RawRecord(
            number,
            {"event_id": f"ml-{user}-{item}-{kind[0]}", "user_id": user_id(user), "domain": "homefeed", "type": kind, "item_id": item_id(item), "ts": ts},
            raw=raw,
        )


def _release(date: str, title: str) -> tuple[datetime, int | None]:
    """(created_at, year) from ml-100k's ``01-Jan-1995``, a bare year, or the ``(1995)`` of a title."""
    date = date.strip()
    for fmt in ("%d-%b-%Y", "%Y"):
        try:
            when = datetime.strptime(date, fmt).replace(tzinfo=UTC)
            return when, when.year
        except ValueError:
            pass
    found = _YEAR.search(title)
    if found:
        year = int(found.group(1))
        return datetime(year, 1, 1, tzinfo=UTC), year
    return EPOCH, None


def read_movies(path: str | Path) -> Iterator[RawRecord]:
    """Documents from a MovieLens movies file; topics ``Genre > Decade``."""
    for number, row, raw in _fields(Path(path)):
        if len(row) == 5 + len(ML100K_GENRES):  # u.item: id|title|release|video release|url|19 flags
            movie, title, date = row[0], row[1], row[2]
            flags = row[5:]
            if any(f.strip() not in ("0", "1") for f in flags):
                yield RawRecord(number, {}, raw=raw, error=("genres", "u.item's 19 genre columns must be 0 or 1"))
                continue
            genres = [g for g, f in zip(ML100K_GENRES, flags) if f.strip() == "1"]
        elif len(row) == 4:  # RecBole atomic: id, title, year, space-separated genres
            movie, title, date, genres = row[0], row[1], row[2], row[3].split()
        elif len(row) == 3:  # movies.dat / movies.csv: id, "Title (Year)", Genre|Genre
            movie, title, date, genres = row[0], row[1], "", row[2].split("|")
        else:
            yield RawRecord(number, {}, raw=raw, error=("<record>", f"not a MovieLens movie line ({len(row)} fields)"))
            continue
        if not movie.strip():
            yield RawRecord(number, {}, raw=raw, error=("movie_id", "empty"))
            continue
        created_at, year = _release(date, title)
        kept = [g for g in genres if g.strip() not in NO_GENRE]
        body = f"{title.strip()}." + (f" Genres: {', '.join(kept)}." if kept else "") + (f" Released {year}." if year else "")
        yield RawRecord(
            number,
            {
                "doc_id": item_id(movie),
                "title": title.strip() or f"movie {movie.strip()}",
                "body": body,
                "source": "movielens",
                "created_at": created_at,
                "topics": topic_paths(genres, year) or None,
            },
            raw=raw,
        )

