"""Read the local warehouse with the production names: DLT and SNOWPIPE attached read-only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb

from pipelines.environment import (
    SNOWPIPE_DATABASE,
    WAREHOUSE_DATABASE,
    warehouse_lock,
    warehouse_path,
)

# What users read, by the names they would use in Snowflake.
LOCAL_TABLES = (
    "DLT.OPEN_EXCHANGE_RATES.CURRENCIES",
    "DLT.APPLICATION_DATA.PRODUCTS",
    "SNOWPIPE.OPEN_EXCHANGE_RATES.EXCHANGE_RATES",
    "SNOWPIPE.OPEN_EXCHANGE_RATES.EXCHANGE_RATES_LATEST",
)


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


def table_counts(tables: tuple[str, ...] = LOCAL_TABLES) -> dict[str, int | str]:
    """Row count per table, or why there is none."""
    counts: dict[str, int | str] = {}
    for table in tables:
        try:
            _, rows = query(f"select count(*) from {table}")
            counts[table] = int(rows[0][0])
        except duckdb.Error as exc:
            counts[table] = f"missing ({str(exc).splitlines()[0][:60]})"
    return counts
