"""The local warehouse: DuckDB files named after the production databases, read by those names.

`DLT` is `warehouse/dlt.duckdb` and `SNOWPIPE` is `warehouse/snowpipe.duckdb` in the data folder,
so `DLT.OPEN_EXCHANGE_RATES.CURRENCIES` is a valid query here as in Snowflake.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import duckdb

from pipelines.environment import configured_bucket_url, data_dir, local_warehouse_dir
from pipelines.locks import file_lock
from pipelines.names import SNOWPIPE_DATABASE, WAREHOUSE_DATABASE


def warehouse_path(database: str) -> Path:
    """Local DuckDB file standing in for a Snowflake database (`DLT` -> `warehouse/dlt.duckdb`)."""
    path = local_warehouse_dir() / f"{database.lower()}.duckdb"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def warehouse_lock(
    database: str = WAREHOUSE_DATABASE, *, shared: bool = False
) -> AbstractContextManager[None]:
    """Serialise access to a local DuckDB warehouse file across processes.

    DuckDB allows one writing process per file, and the worker runs flows in parallel
    processes, so a second writer would fail instead of waiting. Snowflake needs no such lock.
    """
    return file_lock(
        warehouse_path(database).with_suffix(".lock"),
        shared=shared,
        what=f"the local {database} warehouse file",
    )


@contextmanager
def warehouse_write_lock(database: str = WAREHOUSE_DATABASE) -> Iterator[None]:
    """`warehouse_lock` for a writer, with the DuckDB file kept open while it is held.

    Every dlt connection opened meanwhile (the fence, the state restore, the load, the audit)
    then shares one DuckDB instance instead of opening the file and checkpointing it on close
    each time: fence + state restore 0.11 -> 0.05 s of every run. Only while the lock is held,
    so other processes still get the file between loads.
    """
    with warehouse_lock(database):
        path = warehouse_path(database)
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = duckdb.connect(str(path))
        try:
            yield
        finally:
            connection.close()


def local_bucket_url() -> str:
    """The configured bucket, else the data folder's `bucket/` (as a file:// URL)."""
    configured = configured_bucket_url()
    if configured:
        return configured
    path = data_dir() / "bucket"
    path.mkdir(parents=True, exist_ok=True)
    return path.as_uri()


def warehouse_files() -> list[Path]:
    return [warehouse_path(WAREHOUSE_DATABASE), warehouse_path(SNOWPIPE_DATABASE)]


def query(sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run `sql` with both local databases attached under their production names."""
    with (
        warehouse_lock(WAREHOUSE_DATABASE, shared=True),
        warehouse_lock(SNOWPIPE_DATABASE, shared=True),
    ):
        con = duckdb.connect()
        try:
            for database in (WAREHOUSE_DATABASE, SNOWPIPE_DATABASE):
                path = warehouse_path(database)
                if path.exists():
                    con.execute(f"attach '{path}' as {database.lower()} (read_only)")
            result = con.execute(sql)
            columns = [d[0] for d in result.description or []]
            return columns, result.fetchall()
        finally:
            con.close()


def table_counts(tables: Sequence[str]) -> dict[str, int | str]:
    """Row count per table, or why there is none."""
    counts: dict[str, int | str] = {}
    for table in tables:
        try:
            _, rows = query(f"select count(*) from {table}")
            counts[table] = int(rows[0][0])
        except duckdb.Error as exc:
            counts[table] = f"missing ({str(exc).splitlines()[0][:60]})"
    return counts
