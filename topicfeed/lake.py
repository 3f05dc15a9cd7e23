"""The offline lake: append-only Parquet tables partitioned by UTC date.

Layout: ``<data_dir>/lake/<table>/date=YYYY-MM-DD/part-<batch>-<n>.parquet``. Each ingest batch
writes new files; nothing is rewritten. A batch is written under ``<lake>/.staging/`` first and each
finished file renamed into place, so readers never see a half-written file, even if the writer is
killed (``write_parquet_atomic`` does the same for the feature tables).
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from topicfeed.schemas import KEYS, SCHEMAS, TIME_COLUMNS

PARTITION = pa.schema([pa.field("date", pa.string())])


def write_parquet_atomic(table: pa.Table, path: Path) -> Path:
    """Write ``table`` to ``path`` through a temporary file in the same folder and a rename: a reader
    sees the old file or the new one, never a partial one (a killed writer leaves only the hidden
    temporary file, which no reader's ``*.parquet`` pattern matches)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def parquet_scan(glob: str) -> str:
    """DuckDB's scan of the Parquet files matching ``glob``, date partitions as a column."""
    return f"read_parquet('{glob}', hive_partitioning = true)"


class Lake:
    """Parquet tables (``events``, ``documents``, and later derived ones) under one root."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, table: str) -> Path:
        return self.root / table

    def glob(self, table: str) -> str:
        """Every data file of a table, as a glob pattern."""
        return f"{self.path(table)}/*/*.parquet"

    def scan(self, table: str) -> str:
        """The table as a DuckDB table expression (``select ... from {lake.scan('events')}``)."""
        return parquet_scan(self.glob(table))

    def exists(self, table: str) -> bool:
        return any(self.path(table).glob("date=*/*.parquet"))

    def dataset(self, table: str) -> ds.Dataset | None:
        if not self.exists(table):
            return None
        schema = SCHEMAS.get(table)
        full = pa.schema(list(schema) + list(PARTITION)) if schema is not None else None
        return ds.dataset(self.path(table), format="parquet", partitioning=ds.partitioning(PARTITION, flavor="hive"), schema=full)

    def read(self, table: str, columns: list[str] | None = None, filter: pc.Expression | None = None) -> pa.Table:
        """The whole table (or some columns / rows); an empty table when nothing was written."""
        dataset = self.dataset(table)
        if dataset is None:
            schema = SCHEMAS[table]
            empty = schema.empty_table()
            return empty.select(columns) if columns else empty
        return dataset.to_table(columns=columns, filter=filter)

    def keys(self, table: str) -> set[str]:
        """Every primary key already stored (event_id / doc_id)."""
        column = self.read(table, columns=[KEYS[table]]).column(0)
        return set(column.to_pylist())

    def count(self, table: str) -> int:
        dataset = self.dataset(table)
        return 0 if dataset is None else dataset.count_rows()

    def append(self, table: str, data: pa.Table) -> int:
        """Write rows as new files in their date partitions; returns the number of rows written."""
        if data.num_rows == 0:
            return 0
        data = data.cast(SCHEMAS[table]) if table in SCHEMAS else data
        when = data.column(TIME_COLUMNS[table])
        date = pc.strftime(when, format="%Y-%m-%d")
        data = data.append_column("date", date)
        batch = uuid.uuid4().hex[:12]
        staging = self.root / ".staging" / f"{table}-{batch}"
        ds.write_dataset(
            data,
            staging,
            format="parquet",
            partitioning=ds.partitioning(PARTITION, flavor="hive"),
            basename_template=f"part-{batch}-{{i}}.parquet",
            existing_data_behavior="overwrite_or_ignore",
        )
        for part in sorted(staging.rglob("*.parquet")):
            target = self.path(table) / part.relative_to(staging)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(part, target)
        shutil.rmtree(staging, ignore_errors=True)
        try:
            staging.parent.rmdir()  # gone when no other writer is staging
        except OSError:
            pass
        return data.num_rows
