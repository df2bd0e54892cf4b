"""One PostgreSQL table of the application database as a dlt source, by configuration.

A `PostgresTable` says where the table is and how it changes; `table_source(table, dsn)` reads
it, incremental on its cursor column, for a merge on its primary key:

- cursor boundary, the dlt way: `range_start="closed"` re-reads rows equal to the last cursor
  value (rows sharing it that committed after the previous run are not lost), and
  `lag=lookback` re-reads a window behind the cursor (rows that commit late with a cursor just
  behind it are not lost either; with a lag dlt turns off its own boundary de-duplication, so
  the merge on the primary key makes the re-read idempotent). The cursor only advances with the
  load package that carries the rows (dlt state).
- the cursor is compared in SQL as a literal of its own type (`postgres.cursor_literal`):
  a zone-less `timestamp` holds UTC wall-clock time in the application, a `timestamptz` is
  compared as an instant whatever the session's zone, dates and integers as they are.
  A zone-less timestamp cursor is re-labelled UTC in Arrow (metadata only), so the warehouse
  gets a zone-aware column and dlt's cursor is an aware UTC datetime.
- `append_only=True` (an audit log, whose rows never change once written): re-read rows of
  the lookback window that an earlier run loaded are skipped by primary key
  (`_LoadedWindow`), so a run with no new activity loads nothing.
- other columns: each PostgreSQL type is planned once per run from the catalog
  (`types.py`; the table in docs/products.md); an unmapped type fails permanently.

Configuration (`[sources.<section>]`, env `SOURCES__<SECTION>__<KEY>`; section = the table's
name unless given):
    schema_name, table_name   where the table is (defaults from the `PostgresTable`)
    lookback                  re-read window behind the cursor: seconds or "90s", "15m", "1h",
                              "1d" (timestamp cursors; an integer cursor's lag in its own units)
The DSN is resolved by the pipeline (`[sources.<credentials_section>] credentials`).
Every message names the table's section, so a misconfigured table says which one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, timedelta
from typing import Any

import dlt
import pyarrow as pa
from dlt.extract.items import DataItemWithMeta
from dlt.sources import DltResource, DltSource

from sources.errors import PermanentSourceError
from sources.postgres_table.postgres import (
    CURSOR_TYPES,
    PostgresConfigurationError,
    PostgresUnavailableError,
    connect,
    cursor_literal,
    endpoint_of,
    quote_identifier,
    stream_batches,
    unparsable_credentials,
)
from sources.postgres_table.types import (
    ColumnValueError,
    TablePlan,
    UnsupportedColumnTypeError,
    check_loadable,
    read_table_plan,
)

__all__ = [
    "SOURCE_COLUMNS_STATE_KEY",
    "ColumnValueError",
    "PostgresConfigurationError",
    "PostgresTable",
    "PostgresUnavailableError",
    "UnsupportedColumnTypeError",
    "check_source",
    "configured_lookback",
    "configured_table",
    "parse_lookback",
    "table_source",
    "unparsable_credentials",
]

DEFAULT_SCHEMA = "raw_data"
DEFAULT_LOOKBACK = "1h"
# the source table's columns as the last run read them (resource state)
SOURCE_COLUMNS_STATE_KEY = "source_columns"
TIMESTAMP_TYPES = ("timestamp", "timestamptz")


@dataclass(frozen=True)
class PostgresTable:
    """One application table: where it is, its key and cursor, and how its rows change.

    - `name`: the dlt source and resource name, so the warehouse table's name;
    - `table_name`, `schema_name`: where it is in PostgreSQL (config may point elsewhere);
    - `primary_key`, `cursor_column`: the merge key, the incremental cursor;
    - `append_only`: rows never change once written (an audit log): skip re-read rows
      already loaded (needs a timestamp cursor);
    - `section`: its dlt config section (`[sources.<section>]`), default `name`;
    - `credentials_section`: the section whose `credentials` is its DSN (tables of one
      database share it), default `section`;
    - `lookback`: the default re-read window behind the cursor;
    - `described_as`, `create_hint`: words for messages ("the audit log table"; how to create
      a missing table).
    """

    name: str
    table_name: str
    primary_key: str
    cursor_column: str
    schema_name: str = DEFAULT_SCHEMA
    append_only: bool = False
    section: str = ""
    credentials_section: str = ""
    lookback: str = DEFAULT_LOOKBACK
    described_as: str = "source"
    create_hint: str = ""

    def __post_init__(self) -> None:
        if not self.section:
            object.__setattr__(self, "section", self.name)
        if not self.credentials_section:
            object.__setattr__(self, "credentials_section", self.section)

    def setting(self, key: str) -> str:
        return f"[sources.{self.section}] {key}"


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def configured_table(table: PostgresTable) -> tuple[str, str]:
    """`(schema_name, table_name)` from `[sources.<section>]`, or the table's defaults."""
    schema = dlt.config.get(f"sources.{table.section}.schema_name") or table.schema_name
    name = dlt.config.get(f"sources.{table.section}.table_name") or table.table_name
    return str(schema), str(name)


def configured_lookback(table: PostgresTable) -> str | float | int:
    """`[sources.<section>] lookback` as configured, or the table's default."""
    value = dlt.config.get(f"sources.{table.section}.lookback")
    return table.lookback if value is None or value == "" else value


def parse_lookback(value: str | float | int, section: str) -> float:
    """Seconds from `3600`, `"3600"`, `"90s"`, `"15m"`, `"1h"` or `"1d"`."""
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", str(value).lower())
        if not match:
            raise PermanentSourceError(
                f"[sources.{section}] lookback={value!r} is not a duration: use seconds or a "
                "number with s, m, h or d (e.g. '1h')."
            )
        seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if seconds < 0:
        raise PermanentSourceError(f"[sources.{section}] lookback must not be negative.")
    return seconds


def _with_table_hints(batch: pa.RecordBatch, table: PostgresTable) -> pa.RecordBatch:
    """Label a zone-less timestamp cursor UTC and mark the key non-null, like the hints say.

    Both are metadata changes; no values are rewritten. Other columns pass through as-is, so a
    new or retyped column reaches dlt's schema (and its contract) unchanged.
    """
    fields = []
    for field in batch.schema:
        if field.name == table.cursor_column and pa.types.is_timestamp(field.type):
            field = pa.field(field.name, pa.timestamp(field.type.unit, tz="UTC"))
        elif field.name == table.primary_key:
            field = field.with_nullable(False)
        fields.append(field.remove_metadata())
    target = pa.schema(fields)
    return batch if batch.schema.equals(target) else batch.cast(target)


# Above this many rows in the lookback window we stop remembering them (state stays small) and
# the window is re-read and re-merged as before: correct, only slower.
MAX_REMEMBERED_WINDOW_ROWS = 50_000
WINDOW_STATE_KEY = "loaded_window_audit_ids"


class _LoadedWindow:
    """Skip re-read rows of the lookback window that an earlier run already loaded.

    The lookback re-reads `lag` behind the cursor to catch rows that commit late; rows of an
    append-only table never change once written, so a re-read row whose key an earlier run
    loaded is dropped here instead of being merged again. A run with no new activity then
    extracts nothing and its load step has no rows to merge. The keys live in the resource's
    dlt state, which travels with the load package and is rewound with it when a run fails,
    like the cursor. Only incremental runs filter: a full load (no start) loads everything.
    """

    def __init__(
        self, table: PostgresTable, state: dict[str, Any], lag: float, cursor: Any, start: Any
    ) -> None:
        import pyarrow.compute as pc

        self.pc = pc
        self.key, self.cursor_column = table.primary_key, table.cursor_column
        self.state = state
        self.lag = timedelta(seconds=lag) if table.append_only else timedelta(0)
        self.loaded = pa.array(state.get(WINDOW_STATE_KEY, []) if start is not None else [])
        # newest cursor seen (naive UTC, like the source column) and the rows within `lag` of
        # it, pruned batch by batch so memory stays bounded on a full load
        self.newest = cursor.astimezone(UTC).replace(tzinfo=None) if cursor else None
        self.window: pa.Table | None = None

    def only_new(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        if not self.lag or self.key not in batch.schema.names:
            return batch
        self._track(batch)
        if not len(self.loaded):
            return batch
        pc = self.pc
        return batch.filter(pc.invert(pc.is_in(batch.column(self.key), self.loaded)))

    def _track(self, batch: pa.RecordBatch) -> None:
        pc = self.pc
        times = batch.column(self.cursor_column).cast(pa.timestamp("us"))
        batch_newest = pc.max(times).as_py()
        if batch_newest is not None and (self.newest is None or batch_newest > self.newest):
            self.newest = batch_newest
        if self.newest is None:
            return
        rows = pa.table({self.key: batch.column(self.key), self.cursor_column: times})
        window = rows if self.window is None else pa.concat_tables([self.window, rows])
        floor = pa.scalar(self.newest - self.lag, pa.timestamp("us"))
        self.window = window.filter(pc.greater_equal(window.column(self.cursor_column), floor))

    def remember(self) -> None:
        """Store the keys of the rows read within `lag` of the newest cursor value."""
        if not self.lag or self.window is None:
            return  # nothing read: the window and the cursor stay as they are
        ids = self.window.column(self.key)
        self.state[WINDOW_STATE_KEY] = (
            ids.to_pylist() if len(ids) <= MAX_REMEMBERED_WINDOW_ROWS else []
        )


def _table_plan(
    connection: Any, table: PostgresTable, schema_name: str, table_name: str, endpoint: Any
) -> TablePlan:
    """The table's column plan; a missing table, key or cursor, or an unmapped type is permanent."""
    relation = f"{quote_identifier(schema_name)}.{quote_identifier(table_name)}"
    plan = read_table_plan(connection, relation, endpoint, table.section)
    where = f"point {table.setting('schema_name/table_name')} at the {table.described_as} table"
    if plan is None:
        create = f" ({table.create_hint})" if table.create_hint else ""
        raise PostgresConfigurationError(
            f"Table {schema_name}.{table_name} does not exist in {endpoint}. Create it{create} "
            f"or {where}."
        )
    types = {column.name: column.base_type for column in plan.columns}
    for role, column in (("primary key", table.primary_key), ("cursor", table.cursor_column)):
        if column not in types:
            raise PostgresConfigurationError(
                f"Table {schema_name}.{table_name} in {endpoint} has no column {column!r}, the "
                f"{role} of the {table.name} pipeline: add it, or {where}."
            )
    cursor_type = types[table.cursor_column]
    allowed = TIMESTAMP_TYPES if table.append_only else CURSOR_TYPES
    if cursor_type not in allowed:
        raise PostgresConfigurationError(
            f"The cursor {table.cursor_column!r} of {schema_name}.{table_name} is {cursor_type}; "
            f"the {table.name} pipeline needs one of {', '.join(allowed)}: choose another "
            f"cursor column, or {where}."
        )
    return plan


def check_source(
    table: PostgresTable,
    dsn: str,
    schema_name: str,
    table_name: str,
    lookback: str | float | int,
) -> None:
    """Refuse up front what a run would refuse before its first row, with the same errors.

    The lookback, the DSN (scheme, port, options), the connection (credentials, database),
    the table, its key, cursor and column types: one connection and the catalog queries the
    run's plan makes; no rows are read and nothing is written.
    """
    parse_lookback(lookback, table.section)
    endpoint = endpoint_of(dsn, table.credentials_section)
    with connect(dsn, table.credentials_section) as connection:
        _table_plan(connection, table, schema_name, table_name, endpoint)


def _cursor_hints(plan: TablePlan, table: PostgresTable) -> dict[str, Any]:
    """The cursor's and key's column hints: what Arrow alone would tell dlt differently."""
    base_type = {c.name: c.base_type for c in plan.columns}[table.cursor_column]
    hints: dict[str, Any] = {}
    if base_type in TIMESTAMP_TYPES:  # zone-aware in the warehouse (UTC), to the microsecond
        hints = {"data_type": "timestamp", "timezone": True, "precision": 6}
    return hints


def table_source(
    table: PostgresTable,
    dsn: str,
    *,
    schema_name: str | None = None,
    table_name: str | None = None,
    lookback: str | float | int | None = None,
) -> DltSource:
    """`table` as a dlt source of one resource, incremental on its cursor, merged on its key.

    `schema_name`, `table_name` and `lookback` default to the configured ones. `dsn` is a
    string, not dlt's ConnectionStringCredentials: parsing those imports SQLAlchemy (0.2 s of
    every run).
    """
    configured_schema, configured_name = configured_table(table)
    schema_name = schema_name or configured_schema
    table_name = table_name or configured_name
    lag = parse_lookback(
        configured_lookback(table) if lookback is None else lookback, table.section
    )
    endpoint = endpoint_of(dsn, table.credentials_section)
    relation = f"{quote_identifier(schema_name)}.{quote_identifier(table_name)}"
    cursor = table.cursor_column

    def rows(
        incremental: dlt.sources.incremental[Any] = dlt.sources.incremental(  # noqa: B008
            cursor,
            lag=lag,
            range_start="closed",
            # rows without a cursor value can only arrive with a full load; keep them
            on_cursor_value_missing="include",
        ),
    ) -> Iterator[pa.RecordBatch | DataItemWithMeta]:
        start = incremental.start_value  # already moved back by the lag
        state = dlt.current.resource_state()
        window = _LoadedWindow(table, state, lag, incremental.last_value, start)
        with connect(dsn, table.credentials_section) as connection:
            plan = _table_plan(connection, table, schema_name, table_name, endpoint)
            # the pipeline names warehouse columns the source no longer has from this list
            # (no second connection); an unchanged list leaves the state unchanged
            state[SOURCE_COLUMNS_STATE_KEY] = [column.name for column in plan.columns]
            query = f"SELECT {plan.select_list} FROM {relation}"
            if start is not None:
                cursor_type = {c.name: c.base_type for c in plan.columns}[cursor]
                query += f" WHERE {quote_identifier(cursor)} >= "
                query += cursor_literal(start, cursor_type)
            # what Arrow alone would tell dlt wrongly (JSON text, zone-less timestamps)
            hints = {**plan.column_hints, cursor: _cursor_hints(plan, table)}
            hints = {name: hint for name, hint in hints.items() if hint}
            checked = False
            for batch in stream_batches(connection, query, endpoint):
                if not batch.num_rows:
                    continue
                batch = window.only_new(_with_table_hints(plan.convert(batch), table))
                if not batch.num_rows:
                    continue
                if not checked:
                    check_loadable(batch.schema, plan.columns, table.section)
                    checked = True
                    if hints:
                        batch = dlt.mark.with_hints(batch, dlt.mark.make_hints(columns=hints))
                yield batch
        window.remember()

    resource = dlt.resource(
        rows,
        name=table.name,
        primary_key=table.primary_key,
        write_disposition={"disposition": "merge", "strategy": "delete-insert"},
        columns={table.primary_key: {"nullable": False, "primary_key": True}},
    )

    def source() -> DltResource:
        return resource

    return dlt.source(source, name=table.name, section=table.section, max_table_nesting=0)()
