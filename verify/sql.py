"""The checks' SQL. The warehouse text runs unchanged on DuckDB (local) and Snowflake; the
pipe's status and COPY_HISTORY are Snowflake's own; the source queries are PostgreSQL's."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from verify.targets import (
    DEFAULT_COPY_HISTORY_HOURS,
    EXCHANGE_RATES,
    EXCHANGE_RATES_LATEST,
    EXCHANGE_RATES_PIPE,
)


def count_sql(table: str) -> str:
    return f"select count(*) from {table}"


def duplicates_sql(table: str, key: Sequence[str], limit: int = 5) -> str:
    columns = ", ".join(key)
    return (
        f"select {columns}, count(*) as copies from {table} group by {columns} "
        f"having count(*) > 1 order by copies desc limit {limit}"
    )


def latest_rate_date_sql() -> str:
    return f"select max(rate_date) from {EXCHANGE_RATES_LATEST}"


def latest_cursor_sql(table: str, cursor: str) -> str:
    return f"select max({cursor}) from {table}"


def pipe_status_sql(pipe: str = EXCHANGE_RATES_PIPE) -> str:
    return f"select SYSTEM$PIPE_STATUS('{pipe}')"


def copy_errors_sql(table: str = EXCHANGE_RATES, hours: int = DEFAULT_COPY_HISTORY_HOURS) -> str:
    """Failed or partial file loads of the pipe's table (COPY_HISTORY covers Snowpipe loads)."""
    database = table.split(".", 1)[0]
    return (
        "select file_name, status, first_error_message, last_load_time "
        f"from table({database}.INFORMATION_SCHEMA.COPY_HISTORY("
        f"TABLE_NAME => '{table}', "
        f"START_TIME => DATEADD(hours, -{int(hours)}, CURRENT_TIMESTAMP()))) "
        "where status <> 'Loaded' or error_count > 0 "
        "order by last_load_time desc limit 20"
    )


def source_latest_cursor_sql(relation: str, cursor: str) -> str:
    """The newest cursor value of a quoted, qualified PostgreSQL `relation`."""
    from sources.postgres_table.postgres import quote_identifier

    return f"SELECT max({quote_identifier(cursor)}) FROM {relation}"


def _utc_literal(value: datetime) -> str:
    # an offset literal compares right with TIMESTAMP_TZ (Snowflake), TIMESTAMPTZ (DuckDB) and
    # PostgreSQL timestamp/timestamptz alike (the audit log's timestamp holds UTC wall time)
    return f"'{as_utc(value):%Y-%m-%d %H:%M:%S.%f}+00:00'"


def count_between_sql(table: str, cursor: str, start: datetime, end: datetime) -> str:
    return (
        f"select count(*) from {table} "
        f"where {cursor} >= {_utc_literal(start)} and {cursor} < {_utc_literal(end)}"
    )


def warehouse_columns_sql(table: str) -> str:
    """Column names of a three-part `table` (same text on DuckDB and Snowflake)."""
    database, schema, name = table.split(".")
    return (
        "select column_name from information_schema.columns "
        f"where lower(table_catalog) = '{database.lower()}' "
        f"and lower(table_schema) = '{schema.lower()}' and lower(table_name) = '{name.lower()}'"
    )


def as_utc(value: datetime) -> datetime:
    # PostgreSQL `timestamp` holds UTC wall-clock time in the application (sources/postgres_table)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
