"""The application's products audit log (`raw_data.products` in PostgreSQL) as a dlt source.

One resource, `products`: incremental on `valid_ts`, primary key `audit_id` (merge).

Cursor boundary, the dlt way:
- `range_start="closed"` re-reads rows equal to the last cursor value, so rows sharing the
  cursor's timestamp that committed after the previous run are not lost;
- `lag=lookback` re-reads a window behind the cursor, so rows that commit late with a
  `valid_ts` just behind it are not lost either. With a lag dlt turns off its own boundary
  de-duplication: the merge on `audit_id` at the destination makes the re-read idempotent.
- the cursor only advances with the load package that carries the rows (dlt state).

Timestamps: PostgreSQL `timestamp` (no zone) holds UTC wall-clock time in the application.
The Arrow column is re-labelled UTC (metadata only, values unchanged), so the warehouse gets a
zone-aware timestamp and the cursor is an aware UTC datetime; the query compares in UTC.

Other columns: each PostgreSQL type is planned once per run from the catalog
(`sources/products/types.py`; table in docs/products.md); an unmapped type fails permanently.

Configuration (`[sources.products]`, env `SOURCES__PRODUCTS__<KEY>`):
    credentials   PostgreSQL DSN (secret)
    schema_name   default "raw_data"
    table_name    default "products"
    lookback      re-read window behind the cursor: seconds or "90s", "15m", "1h", "1d";
                  default "1h"
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import dlt
import pyarrow as pa
from dlt.common.typing import TSecretStrValue
from dlt.extract.items import DataItemWithMeta
from dlt.sources import DltResource

from sources.errors import PermanentSourceError
from sources.products.postgres import (
    PostgresConfigurationError,
    PostgresUnavailableError,
    connect,
    endpoint_of,
    quote_identifier,
    stream_batches,
    timestamp_literal,
    unparsable_credentials,
)
from sources.products.types import (
    ColumnValueError,
    UnsupportedColumnTypeError,
    check_loadable,
    read_table_plan,
)

__all__ = [
    "CURSOR_COLUMN",
    "PRIMARY_KEY",
    "RESOURCE_NAME",
    "SOURCE_COLUMNS_STATE_KEY",
    "ColumnValueError",
    "PostgresConfigurationError",
    "PostgresUnavailableError",
    "UnsupportedColumnTypeError",
    "check_source",
    "configured_lookback",
    "configured_table",
    "parse_lookback",
    "products_source",
    "unparsable_credentials",
]

RESOURCE_NAME = "products"
CURSOR_COLUMN = "valid_ts"
PRIMARY_KEY = "audit_id"
DEFAULT_SCHEMA = "raw_data"
DEFAULT_TABLE = "products"
DEFAULT_LOOKBACK = "1h"

COLUMN_HINTS: dict[str, dict[str, Any]] = {
    PRIMARY_KEY: {"data_type": "bigint", "nullable": False, "primary_key": True},
    CURSOR_COLUMN: {"data_type": "timestamp", "timezone": True, "precision": 6},
}

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def configured_table() -> tuple[str, str]:
    """`(schema_name, table_name)` of the audit log, from `[sources.products]` or the defaults."""
    schema = dlt.config.get("sources.products.schema_name") or DEFAULT_SCHEMA
    table = dlt.config.get("sources.products.table_name") or DEFAULT_TABLE
    return str(schema), str(table)


def parse_lookback(value: str | float | int) -> float:
    """Seconds from `3600`, `"3600"`, `"90s"`, `"15m"`, `"1h"` or `"1d"`."""
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", str(value).lower())
        if not match:
            raise PermanentSourceError(
                f"[sources.products] lookback={value!r} is not a duration: use seconds or a "
                "number with s, m, h or d (e.g. '1h')."
            )
        seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if seconds < 0:
        raise PermanentSourceError("[sources.products] lookback must not be negative.")
    return seconds


def _as_utc(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Label `valid_ts` as UTC and mark `audit_id` non-null, matching the column hints.

    Both are metadata changes; no values are rewritten. Other columns pass through as-is, so a
    new or retyped column reaches dlt's schema (and its contract) unchanged.
    """
    fields = []
    for field in batch.schema:
        if field.name == CURSOR_COLUMN and pa.types.is_timestamp(field.type):
            field = pa.field(CURSOR_COLUMN, pa.timestamp(field.type.unit, tz="UTC"))
        elif field.name == PRIMARY_KEY:
            field = field.with_nullable(False)
        fields.append(field.remove_metadata())
    target = pa.schema(fields)
    return batch if batch.schema.equals(target) else batch.cast(target)


# Above this many audit rows in the lookback window we stop remembering them (state stays
# small) and the window is re-read and re-merged as before: correct, only slower.
MAX_REMEMBERED_WINDOW_ROWS = 50_000
WINDOW_STATE_KEY = "loaded_window_audit_ids"
# the source table's columns as the last run read them (resource state)
SOURCE_COLUMNS_STATE_KEY = "source_columns"


class _LoadedWindow:
    """Skip re-read rows of the lookback window that an earlier run already loaded.

    The lookback re-reads `lag` behind the cursor to catch rows that commit late; audit rows
    never change once written, so a re-read row whose `audit_id` an earlier run loaded is
    dropped here instead of being merged again. A run with no new activity then extracts
    nothing and its load step has no rows to merge. The ids live in the resource's dlt state,
    which travels with the load package and is rewound with it when a run fails, like the
    cursor. Only incremental runs filter: a full load (no start) reads and loads everything.
    """

    def __init__(self, state: dict[str, Any], lag: float, cursor: Any, start: Any) -> None:
        import pyarrow.compute as pc

        self.pc = pc
        self.state = state
        self.lag = timedelta(seconds=lag)
        self.loaded = pa.array(state.get(WINDOW_STATE_KEY, []) if start is not None else [])
        # newest valid_ts seen (naive UTC, like the source column) and the rows within `lag`
        # of it, pruned batch by batch so memory stays bounded on a full load
        self.newest = cursor.astimezone(UTC).replace(tzinfo=None) if cursor else None
        self.window: pa.Table | None = None

    def only_new(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        if not self.lag or PRIMARY_KEY not in batch.schema.names:
            return batch
        self._track(batch)
        if not len(self.loaded):
            return batch
        pc = self.pc
        return batch.filter(pc.invert(pc.is_in(batch.column(PRIMARY_KEY), self.loaded)))

    def _track(self, batch: pa.RecordBatch) -> None:
        pc = self.pc
        times = batch.column(CURSOR_COLUMN).cast(pa.timestamp("us"))
        batch_newest = pc.max(times).as_py()
        if batch_newest is not None and (self.newest is None or batch_newest > self.newest):
            self.newest = batch_newest
        if self.newest is None:
            return
        rows = pa.table({PRIMARY_KEY: batch.column(PRIMARY_KEY), CURSOR_COLUMN: times})
        window = rows if self.window is None else pa.concat_tables([self.window, rows])
        floor = pa.scalar(self.newest - self.lag, pa.timestamp("us"))
        self.window = window.filter(pc.greater_equal(window.column(CURSOR_COLUMN), floor))

    def remember(self) -> None:
        """Store the ids of the rows read within `lag` of the newest `valid_ts`."""
        if not self.lag or self.window is None:
            return  # nothing read: the window and the cursor stay as they are
        ids = self.window.column(PRIMARY_KEY)
        self.state[WINDOW_STATE_KEY] = (
            ids.to_pylist() if len(ids) <= MAX_REMEMBERED_WINDOW_ROWS else []
        )


def _table_plan(connection: Any, schema_name: str, table_name: str, endpoint: Any) -> Any:
    """The audit log's column plan; a missing table or an unmapped column type is permanent."""
    source_table = f"{quote_identifier(schema_name)}.{quote_identifier(table_name)}"
    plan = read_table_plan(connection, source_table, endpoint)
    if plan is None:
        raise PostgresConfigurationError(
            f"Table {schema_name}.{table_name} does not exist in {endpoint}. Create it "
            "(local: python -m local_stack.products_data seed) or point "
            "[sources.products] schema_name/table_name at the audit log table."
        )
    return plan


def configured_lookback() -> str | float | int:
    """`[sources.products] lookback` as configured, or the default."""
    value = dlt.config.get("sources.products.lookback")
    return DEFAULT_LOOKBACK if value is None or value == "" else value


def check_source(
    dsn: str,
    schema_name: str = DEFAULT_SCHEMA,
    table_name: str = DEFAULT_TABLE,
    lookback: str | float | int = DEFAULT_LOOKBACK,
) -> None:
    """Refuse up front what a run would refuse before its first row, with the same errors.

    The lookback, the DSN (scheme, port, options), the connection (credentials, database),
    the table and its column types: one connection and the catalog queries the run's plan
    makes; no rows are read and nothing is written.
    """
    parse_lookback(lookback)
    endpoint = endpoint_of(dsn)
    with connect(dsn) as connection:
        _table_plan(connection, schema_name, table_name, endpoint)


@dlt.source(name="products", section="products", max_table_nesting=0)
def products_source(
    credentials: TSecretStrValue = dlt.secrets.value,
    schema_name: str = DEFAULT_SCHEMA,
    table_name: str = DEFAULT_TABLE,
    lookback: str = DEFAULT_LOOKBACK,
) -> DltResource:
    """The products audit log, incremental on `valid_ts`, merged on `audit_id`."""
    # A DSN string, not dlt's ConnectionStringCredentials: parsing those imports SQLAlchemy
    # (0.2 s of every run); `pipelines.products.products_dsn` turns a table of parts into one.
    dsn = str(credentials)
    lag = parse_lookback(lookback)
    endpoint = endpoint_of(dsn)
    source_table = f"{quote_identifier(schema_name)}.{quote_identifier(table_name)}"

    @dlt.resource(
        name=RESOURCE_NAME,
        primary_key=PRIMARY_KEY,
        write_disposition={"disposition": "merge", "strategy": "delete-insert"},
        columns=COLUMN_HINTS,
    )
    def products(
        valid_ts: dlt.sources.incremental[datetime] = dlt.sources.incremental(  # noqa: B008
            CURSOR_COLUMN,
            lag=lag,
            range_start="closed",
            # rows without a valid_ts can only arrive with a full load; keep them
            on_cursor_value_missing="include",
        ),
    ) -> Iterator[pa.RecordBatch | DataItemWithMeta]:
        start = valid_ts.start_value  # already moved back by the lag
        window = _LoadedWindow(dlt.current.resource_state(), lag, valid_ts.last_value, start)
        with connect(dsn) as connection:
            plan = _table_plan(connection, schema_name, table_name, endpoint)
            # the pipeline names warehouse columns the source no longer has from this list
            # (no second connection); an unchanged list leaves the state unchanged
            dlt.current.resource_state()[SOURCE_COLUMNS_STATE_KEY] = [
                column.name for column in plan.columns
            ]
            query = f"SELECT {plan.select_list} FROM {source_table}"
            if start is not None:
                query += f" WHERE {quote_identifier(CURSOR_COLUMN)} >= {timestamp_literal(start)}"
            hints = plan.column_hints
            hints.pop(CURSOR_COLUMN, None)  # COLUMN_HINTS decide the cursor's type
            checked = False
            for batch in stream_batches(connection, query, endpoint):
                if not batch.num_rows:
                    continue
                batch = window.only_new(_as_utc(plan.convert(batch)))
                if not batch.num_rows:
                    continue
                if not checked:
                    check_loadable(batch.schema, plan.columns)
                    checked = True
                    if hints:
                        # what Arrow alone would tell dlt wrongly (JSON text, zone-less timestamps)
                        batch = dlt.mark.with_hints(batch, dlt.mark.make_hints(columns=hints))
                yield batch
        window.remember()

    return products
