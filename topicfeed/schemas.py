"""Record schemas: what an event and a document are, in one place.

The pydantic models are the rules (ingestion validates every record with them); the Arrow
schemas are how the records are stored in the Parquet lake. Timestamps are UTC: an ISO-8601
string with an offset is converted, one without an offset is taken as UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

import pyarrow as pa
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, model_validator

from topicfeed.taxonomy import join_path, split_path

NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=512)]


def _to_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_to_utc)]


class Domain(StrEnum):
    homefeed = "homefeed"
    search = "search"
    main = "main"


DOMAINS: tuple[str, ...] = tuple(d.value for d in Domain)  # in this order everywhere (the simulator codes them 0, 1, 2)


class EventType(StrEnum):
    impression = "impression"
    click = "click"
    search = "search"


class Event(BaseModel):
    """One user action on one surface (home feed, search, main page); an impression or click of a page
    served under an experiment carries its experiment and arm."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: NonEmpty
    user_id: NonEmpty
    domain: Domain
    type: EventType
    item_id: NonEmpty | None = None
    query: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1024)] | None = None
    position: Annotated[int, Field(ge=0, le=100_000)] | None = None
    ts: UtcDatetime
    experiment: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)] | None = None
    arm: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Event:
        if self.type is EventType.search:
            if self.domain is not Domain.search:
                raise ValueError("a 'search' event must have domain 'search'")
            if self.query is None:
                raise ValueError("a 'search' event needs a query")
        elif self.item_id is None:
            raise ValueError(f"an '{self.type.value}' event needs an item_id")
        if (self.experiment is None) != (self.arm is None):
            raise ValueError("'experiment' and 'arm' go together (the feed response's experiment): give both or neither")
        return self


def _normalise_topic(path: str) -> str:
    return join_path(split_path(path))


TopicPath = Annotated[str, AfterValidator(_normalise_topic)]


class Document(BaseModel):
    """One piece of content that can be shown in the feed, on the main page or in search."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    doc_id: NonEmpty
    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2_000)]
    body: Annotated[str, BeforeValidator(lambda v: "" if v is None else v), StringConstraints(max_length=200_000)] = ""
    source: NonEmpty
    created_at: UtcDatetime
    partner: NonEmpty | None = None
    topics: list[TopicPath] | None = None


TS = pa.timestamp("us", tz="UTC")

EVENT_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("domain", pa.string(), nullable=False),
        pa.field("type", pa.string(), nullable=False),
        pa.field("item_id", pa.string()),
        pa.field("query", pa.string()),
        pa.field("position", pa.int32()),
        pa.field("ts", TS, nullable=False),
        pa.field("experiment", pa.string()),  # the experiment and arm that served the page (feed responses say which)
        pa.field("arm", pa.string()),
    ]
)

DOCUMENT_SCHEMA = pa.schema(
    [
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("title", pa.string(), nullable=False),
        pa.field("body", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("created_at", TS, nullable=False),
        pa.field("partner", pa.string()),
        pa.field("topics", pa.list_(pa.string())),
    ]
)

MODELS: dict[str, type[BaseModel]] = {"events": Event, "documents": Document}
SCHEMAS: dict[str, pa.Schema] = {"events": EVENT_SCHEMA, "documents": DOCUMENT_SCHEMA}
KEYS: dict[str, str] = {"events": "event_id", "documents": "doc_id"}
TIME_COLUMNS: dict[str, str] = {"events": "ts", "documents": "created_at"}


def to_row(record: BaseModel) -> dict[str, object]:
    """A validated record as a plain dict ready for Arrow (enums as their string values)."""
    return record.model_dump(mode="python")
