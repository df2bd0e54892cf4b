"""The application's products audit log (`raw_data.products` in PostgreSQL) as a dlt source.

One instance of the general PostgreSQL table source (`sources/postgres_table`): incremental on
`valid_ts`, merged on `audit_id`, append-only (audit rows never change once written, so re-read
rows of the lookback window that an earlier run loaded are skipped).

Timestamps: PostgreSQL `timestamp` (no zone) holds UTC wall-clock time in the application; the
warehouse gets a zone-aware timestamp and the cursor is an aware UTC datetime.

Configuration (`[sources.products]`, env `SOURCES__PRODUCTS__<KEY>`):
    credentials   PostgreSQL DSN (secret): the application database
    schema_name   default "raw_data"
    table_name    default "products"
    lookback      re-read window behind the cursor: seconds or "90s", "15m", "1h", "1d";
                  default "1h"
"""

from __future__ import annotations

from dlt.sources import DltSource

from sources.postgres_table import (
    SOURCE_COLUMNS_STATE_KEY,
    ColumnValueError,
    PostgresConfigurationError,
    PostgresTable,
    PostgresUnavailableError,
    UnsupportedColumnTypeError,
    table_source,
)

__all__ = [
    "CURSOR_COLUMN",
    "PRIMARY_KEY",
    "PRODUCTS",
    "RESOURCE_NAME",
    "SOURCE_COLUMNS_STATE_KEY",
    "ColumnValueError",
    "PostgresConfigurationError",
    "PostgresUnavailableError",
    "UnsupportedColumnTypeError",
    "products_source",
]

PRODUCTS = PostgresTable(
    name="products",
    table_name="products",
    primary_key="audit_id",
    cursor_column="valid_ts",
    append_only=True,
    described_as="audit log",
    create_hint="local: python -m dev_stack.products_data seed",
)
RESOURCE_NAME = PRODUCTS.name
CURSOR_COLUMN = PRODUCTS.cursor_column
PRIMARY_KEY = PRODUCTS.primary_key


def products_source(credentials: str) -> DltSource:
    """The products audit log, incremental on `valid_ts`, merged on `audit_id`."""
    return table_source(PRODUCTS, credentials)
