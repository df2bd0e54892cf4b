"""What the checks read from each application table's source (PostgreSQL), lazily."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pipelines.environment import Environment, Query
from sources.postgres_table import PostgresTable
from verify.sql import count_between_sql, source_latest_cursor_sql
from verify.targets import TableSourceReader


def source_query(environment: Environment, table: PostgresTable) -> Query:
    """SQL against an application table's database; the DSN is resolved at the first query.

    Lazily, so that a source that cannot be reached (or configured) fails the checks that read
    it, with the reason, instead of the whole report. Errors are classified as the pipeline's.
    """
    from pipelines.application_table import application_dsn
    from sources.postgres_table.postgres import connect, endpoint_of, fetch_all

    dsn: list[str] = []
    section = table.credentials_section

    def run(sql: str) -> list[tuple[Any, ...]]:
        if not dsn:
            dsn.append(application_dsn(environment, table))
        with connect(dsn[0], section) as connection:
            return fetch_all(connection, sql, endpoint_of(dsn[0], section))

    return run


def _scalar(query: Query, sql: str) -> Any:
    rows = query(sql)
    return rows[0][0] if rows else None


def table_source_reader(source: Query, table: PostgresTable) -> TableSourceReader:
    """The newest cursor, counts and columns of an application table's source table."""
    from sources.postgres_table import configured_lookback, configured_table, parse_lookback
    from sources.postgres_table.postgres import quote_identifier, table_columns_sql

    schema, name = configured_table(table)
    qualified = f"{quote_identifier(schema)}.{quote_identifier(name)}"
    cursor = quote_identifier(table.cursor_column)
    return TableSourceReader(
        latest=lambda: _scalar(source, source_latest_cursor_sql(qualified, table.cursor_column)),
        count_between=lambda start, end: int(
            _scalar(source, count_between_sql(qualified, cursor, start, end))
        ),
        columns=lambda: {row[0] for row in source(table_columns_sql(schema, name))},
        lookback=timedelta(seconds=parse_lookback(configured_lookback(table), table.section)),
    )
