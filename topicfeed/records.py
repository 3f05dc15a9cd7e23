"""A record as a reader yields it, before validation: shared by ``topicfeed.ingest`` and the source
adapters (``topicfeed.adapters``), so that neither imports the other's module for it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RawRecord:
    """One record as read from a source, before validation.

    ``number`` is 1-based in the source (line of a JSONL/TSV file, data row of a CSV or
    Parquet file). A reader that cannot even parse the record sets ``error`` to
    ``(field, message)`` and leaves ``data`` empty.
    """

    number: int
    data: dict[str, Any]
    raw: Any = None
    error: tuple[str, str] | None = None
