"""Verify what users read, in the current environment: the tutorial's finishing-up checklist.

Checks (SQL against the environment's warehouse; no Prefect here):

- rows: every target table exists and has rows (`DLT.OPEN_EXCHANGE_RATES.CURRENCIES`, every
  application table of the registry, e.g. `DLT.APPLICATION_DATA.PRODUCTS`,
  `SNOWPIPE.OPEN_EXCHANGE_RATES.EXCHANGE_RATES` and the view users read,
  `SNOWPIPE.OPEN_EXCHANGE_RATES.EXCHANGE_RATES_LATEST`);
- freshness: the latest rate date is at most `max_rate_age_days` (default 1) before today (UTC;
  the daily load runs at 09:00, so until then yesterday is the newest); each application
  table's latest cursor value is at most `max_<name>_lag_hours` (default 26: daily plus slack)
  behind the newest in its source table (a cursor that is not a time is reported, not judged);
- reconcile (append-only tables, e.g. the products audit log): rows per UTC day in PostgreSQL
  and in the warehouse over the last `reconcile_days` (default 7) up to the cursor minus the
  source's lookback (newer rows are re-read by the next run); the table only grows, so a
  difference is lost (late) rows or rows that are not the source's, named by day, with the fix;
- columns: a warehouse column the source no longer has (a dropped column: NULL in every new
  row) is reported with the fix;
- duplicates: no key appears twice where users read (currencies `code`, each application
  table's primary key, exchange rates `(rate_date, base)` in the view);
- production only: the pipe runs (`SYSTEM$PIPE_STATUS` says `executionState: RUNNING`) and
  `COPY_HISTORY` shows no failed or partial file loads in the last `copy_history_hours`
  (default 24).

Thresholds are dlt config: `[verify] max_rate_age_days`, `max_<name>_lag_hours` (e.g.
`max_products_lag_hours`), `copy_history_hours`, `reconcile_days` (env
`VERIFY__MAX_RATE_AGE_DAYS`, ...). Application tables come from pipelines/registry.py, so a new
one is checked without a line here.

`verify()` returns a `VerifyReport`; `render()` prints it for people; `data-pipelines verify`
exits non-zero listing what failed, and the `data-freshness` flow fails (and so alerts) likewise.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pipelines import names
from pipelines.environment import Environment, Query
from pipelines.spec import PipelineSpec
from pipelines.text_table import text_table
from sources.postgres_table import PostgresTable

CURRENCIES = names.CURRENCIES_TABLE
PRODUCTS = names.PRODUCTS_TABLE
EXCHANGE_RATES = names.EXCHANGE_RATES_TABLE
EXCHANGE_RATES_LATEST = names.EXCHANGE_RATES_LATEST_VIEW
EXCHANGE_RATES_PIPE = names.EXCHANGE_RATES_PIPE


def warehouse_table(spec: PipelineSpec) -> str:
    """Where users read an application table: `DLT.<DATASET>.<TABLE>`."""
    assert spec.table is not None
    return f"{names.WAREHOUSE_DATABASE}.{spec.dataset.upper()}.{spec.table.name.upper()}"


def target_tables(
    tables: Sequence[PipelineSpec],
) -> tuple[tuple[str, tuple[str, ...] | None], ...]:
    """What users read, with the key that must be unique there (None: raw, append-only)."""
    return (
        (CURRENCIES, ("code",)),
        *((warehouse_table(spec), (spec.table.primary_key,)) for spec in tables if spec.table),
        (EXCHANGE_RATES, None),
        (EXCHANGE_RATES_LATEST, ("rate_date", "base")),
    )


def user_tables() -> tuple[str, ...]:
    """What users read, by the names they use in Snowflake (the same names locally)."""
    from pipelines.registry import application_tables

    return tuple(table for table, _ in target_tables(application_tables()))


DEFAULT_MAX_RATE_AGE_DAYS = 1
DEFAULT_MAX_LAG_HOURS = 26.0
DEFAULT_COPY_HISTORY_HOURS = 24
DEFAULT_RECONCILE_DAYS = 7


class VerificationFailed(RuntimeError):
    """The data is not what users should read; the message lists every failed check."""


@dataclass(frozen=True)
class Thresholds:
    max_rate_age_days: int = DEFAULT_MAX_RATE_AGE_DAYS
    copy_history_hours: int = DEFAULT_COPY_HISTORY_HOURS
    reconcile_days: int = DEFAULT_RECONCILE_DAYS
    # by application table name; a table not named here gets DEFAULT_MAX_LAG_HOURS
    max_lag_hours: Mapping[str, float] = field(default_factory=dict)

    def lag_hours(self, table: str) -> float:
        return float(self.max_lag_hours.get(table, DEFAULT_MAX_LAG_HOURS))

    @classmethod
    def from_config(cls, tables: Sequence[PipelineSpec] = ()) -> Thresholds:
        import dlt

        def get(key: str, default: Any) -> Any:
            value = dlt.config.get(f"verify.{key}")
            return type(default)(value) if value is not None else default

        return cls(
            get("max_rate_age_days", DEFAULT_MAX_RATE_AGE_DAYS),
            get("copy_history_hours", DEFAULT_COPY_HISTORY_HOURS),
            get("reconcile_days", DEFAULT_RECONCILE_DAYS),
            {
                spec.name: get(f"max_{spec.name}_lag_hours", DEFAULT_MAX_LAG_HOURS)
                for spec in tables
            },
        )


@dataclass(frozen=True)
class TableSourceReader:
    """What the checks read from an application table's source table (PostgreSQL)."""

    # The newest cursor value in the source (None: no rows).
    latest: Callable[[], Any]
    # Rows with start <= cursor < end (UTC-aware bounds).
    count_between: Callable[[datetime, datetime], int] | None = None
    # The table's column names.
    columns: Callable[[], set[str]] | None = None
    # The source's re-read window behind the cursor: rows newer than cursor - lookback are
    # re-read by the next run, so they are not missing yet.
    lookback: timedelta = timedelta(0)


@dataclass(frozen=True)
class Check:
    """One verified fact: which check, on what, whether it held, and the evidence."""

    check: str
    target: str
    ok: bool
    detail: str


@dataclass
class VerifyReport:
    environment: str
    checked_at: datetime
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def failure_summary(self) -> str:
        """One line per failure: `check TABLE: detail`."""
        return "\n".join(f"{c.check} {c.target}: {c.detail}" for c in self.failures)

    def as_rows(self) -> list[dict[str, Any]]:
        return [{**asdict(c), "ok": "ok" if c.ok else "FAILED"} for c in self.checks]

    def render(self) -> str:
        """The readable report: one line per check, then what failed."""
        lines = [
            f"data-pipelines verify: environment {self.environment}, "
            f"{self.checked_at:%Y-%m-%d %H:%M} UTC",
            "",
            *text_table(
                ("check", "table", "result", "detail"),
                [(c.check, c.target, "ok" if c.ok else "FAILED", c.detail) for c in self.checks],
            ),
        ]
        lines.append("")
        if self.ok:
            lines.append(f"OK: all {len(self.checks)} checks passed.")
        else:
            lines.append(f"FAILED: {len(self.failures)} of {len(self.checks)} checks:")
            lines += [f"  - {line}" for line in self.failure_summary().splitlines()]
        return "\n".join(lines)


# ---- SQL (the same text runs on DuckDB locally and on Snowflake) -------------------------------


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
    return f"'{_as_utc(value):%Y-%m-%d %H:%M:%S.%f}+00:00'"


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


# ---- evaluation ------------------------------------------------------------------------------


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:160]


def _as_utc(value: datetime) -> datetime:
    # PostgreSQL `timestamp` holds UTC wall-clock time in the application (sources/postgres_table)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def pipe_status_check(raw: str) -> Check:
    """Judge `SYSTEM$PIPE_STATUS` output: the pipe must be RUNNING; report its backlog/error."""
    try:
        status = json.loads(raw)
    except (TypeError, ValueError):
        return Check("pipe status", EXCHANGE_RATES_PIPE, False, f"unreadable status: {raw!r}")
    state = status.get("executionState", "unknown")
    detail = f"executionState {state}, pendingFileCount {status.get('pendingFileCount', '?')}"
    if status.get("lastIngestedTimestamp"):
        detail += f", last ingested {status['lastIngestedTimestamp']}"
    error = status.get("error") or status.get("lastForwardedErrorMessage")
    if error:
        detail += f", error: {str(error)[:160]}"
    return Check("pipe status", EXCHANGE_RATES_PIPE, state == "RUNNING" and not error, detail)


def copy_history_check(rows: list[tuple[Any, ...]], hours: int) -> Check:
    if not rows:
        return Check("copy errors", EXCHANGE_RATES, True, f"no failed file loads in {hours} h")
    shown = "; ".join(f"{r[0]} {r[1]}: {str(r[2])[:100]}" for r in rows[:3])
    return Check(
        "copy errors",
        EXCHANGE_RATES,
        False,
        f"{len(rows)} failed or partial file load(s) in {hours} h: {shown}",
    )


def _rows_check(query: Query, table: str) -> tuple[Check, bool]:
    try:
        count = int(query(count_sql(table))[0][0])
    except Exception as error:  # a missing table is one of the things we look for
        return Check("rows", table, False, f"missing or unreadable: {_first_line(error)}"), False
    detail = f"{count} row{'' if count == 1 else 's'}" if count else "empty"
    return Check("rows", table, count > 0, detail), True


def _duplicates_check(query: Query, table: str, key: Sequence[str]) -> Check:
    rows = query(duplicates_sql(table, key))
    name = ", ".join(key)
    if not rows:
        return Check("duplicates", table, True, f"({name}) unique")
    shown = "; ".join(
        "(" + ", ".join(str(v) for v in row[:-1]) + f") x{row[-1]}" for row in rows[:3]
    )
    return Check("duplicates", table, False, f"duplicate ({name}): {shown}")


def _rate_freshness(query: Query, today: date, max_age_days: int) -> Check:
    latest = query(latest_rate_date_sql())[0][0]
    if latest is None:
        return Check("freshness", EXCHANGE_RATES_LATEST, False, "no rate date at all")
    if isinstance(latest, datetime):
        latest = latest.date()
    elif isinstance(latest, str):
        latest = date.fromisoformat(latest[:10])
    age = (today - latest).days
    detail = f"latest rate_date {latest} is {age} day(s) before today {today} (max {max_age_days})"
    return Check("freshness", EXCHANGE_RATES_LATEST, age <= max_age_days, detail)


def _lag_hours(loaded: Any, newest: Any) -> float | None:
    """How far `loaded` is behind `newest`, in hours; None for a cursor that is not a time."""
    if isinstance(newest, datetime) and isinstance(loaded, datetime):
        lag = _as_utc(newest) - _as_utc(loaded)
    elif isinstance(newest, date) and isinstance(loaded, date):
        lag = timedelta(days=(_day(newest) - _day(loaded)).days)
    else:
        return None
    return max(lag, timedelta(0)).total_seconds() / 3600


def _day(value: date) -> date:
    return value.date() if isinstance(value, datetime) else value


def _shown(value: Any) -> str:
    return f"{_as_utc(value):%Y-%m-%d %H:%M:%S}" if isinstance(value, datetime) else str(value)


def _table_freshness(
    query: Query, target: str, table: PostgresTable, source: TableSourceReader, max_hours: float
) -> Check:
    cursor = table.cursor_column
    loaded = query(latest_cursor_sql(target, cursor))[0][0]
    try:
        newest = source.latest()
    except Exception as error:  # the source is part of the check: say why it could not run
        return Check("freshness", target, False, f"cannot read the source: {_first_line(error)}")
    if newest is None:
        return Check("freshness", target, True, "the source has no rows")
    if loaded is None:
        return Check("freshness", target, False, f"no {cursor} loaded; source has {newest}")
    hours = _lag_hours(loaded, newest)
    if hours is None:
        detail = f"latest {cursor} {loaded}, the source's {newest} (not a time: not judged)"
        return Check("freshness", target, True, detail)
    detail = (
        f"latest {cursor} {_shown(loaded)} is {hours:.1f} h behind the "
        f"source's {_shown(newest)} (max {max_hours:g} h)"
    )
    return Check("freshness", target, hours <= max_hours, detail)


def _day_windows(cutoff: datetime, days: int) -> list[tuple[datetime, datetime]]:
    """UTC days from `days` before `cutoff` up to it, the last one ending at `cutoff`."""
    cutoff = _as_utc(cutoff)
    first = datetime.combine(cutoff.date() - timedelta(days=days), datetime.min.time(), UTC)
    windows = []
    start = first
    while start < cutoff:
        end = min(start + timedelta(days=1), cutoff)
        windows.append((start, end))
        start += timedelta(days=1)
    return windows


def _reconciliation(
    query: Query,
    spec: PipelineSpec,
    target: str,
    table: PostgresTable,
    source: TableSourceReader,
    days: int,
) -> Check:
    """Rows per day: source vs warehouse, up to the cursor minus the lookback.

    An append-only table only grows, so a day with fewer rows in the warehouse lost rows: most
    often rows committed with a cursor further behind the last one than the lookback re-reads.
    """
    assert source.count_between is not None
    cursor = table.cursor_column
    loaded = query(latest_cursor_sql(target, cursor))[0][0]
    if loaded is None:
        return Check("reconcile", target, True, "nothing loaded yet")
    cutoff = _as_utc(loaded) - source.lookback
    gaps = []
    compared = 0
    try:
        for start, end in _day_windows(cutoff, days):
            expected = source.count_between(start, end)
            found = int(query(count_between_sql(target, cursor, start, end))[0][0])
            compared += expected
            if expected != found:
                gaps.append(f"{start:%Y-%m-%d}: source {expected}, warehouse {found}")
    except Exception as error:  # the source is part of the check: say why it could not run
        return Check("reconcile", target, False, f"cannot compare: {_first_line(error)}")
    window = f"{days} day(s) up to {cutoff:%Y-%m-%d %H:%M} UTC (cursor minus lookback)"
    if not gaps:
        return Check("reconcile", target, True, f"{compared} rows match over {window}")
    return Check(
        "reconcile",
        target,
        False,
        f"row counts differ over {window}: {'; '.join(gaps[:5])}. Rows the warehouse lacks "
        f"committed later than the lookback re-reads: run {_full_refresh(spec)}, "
        f"or widen {table.setting('lookback')}",
    )


def _full_refresh(spec: PipelineSpec) -> str:
    refresh = spec.flow_for("full-refresh")
    return refresh.name if refresh else "a full refresh"


def _dropped_columns(
    query: Query, spec: PipelineSpec, target: str, source: TableSourceReader
) -> Check:
    """Warehouse columns the source no longer has: they hold NULL for every new row."""
    assert source.columns is not None
    try:
        source_columns = {c.lower() for c in source.columns()}
        warehouse = {str(r[0]).lower() for r in query(warehouse_columns_sql(target))}
    except Exception as error:
        return Check("columns", target, False, f"cannot compare: {_first_line(error)}")
    dropped = sorted(c for c in warehouse - source_columns if not c.startswith("_dlt"))
    if not dropped:
        return Check("columns", target, True, "every warehouse column exists in the source")
    name = spec.table.name if spec.table else spec.name
    return Check(
        "columns",
        target,
        False,
        f"dropped in the source, NULL in every new row: {', '.join(dropped)}. If the drop is "
        f"intended, drop the column in the warehouse (or run {_full_refresh(spec)} after "
        f"`dlt pipeline {spec.name} drop {name}`); else restore it in PostgreSQL",
    )


def check_warehouse(
    query: Query,
    *,
    environment: str,
    monitors_snowpipe: bool,
    tables: Sequence[PipelineSpec] = (),
    sources: Mapping[str, TableSourceReader] | None = None,
    thresholds: Thresholds | None = None,
    now: datetime | None = None,
) -> VerifyReport:
    """Run every check with `query` (one SQL string -> rows); never raises for a failed check.

    `tables`: the application tables' pipelines; `sources`: what their source tables hold, by
    pipeline name (a table without one gets the warehouse-side checks only).
    """
    thresholds = thresholds or Thresholds()
    sources = sources or {}
    now = now or datetime.now(UTC)
    report = VerifyReport(environment=environment, checked_at=now)
    readable: dict[str, bool] = {}
    targets = target_tables(tables)
    for table, _ in targets:
        check, readable[table] = _rows_check(query, table)
        report.checks.append(check)
    if readable[EXCHANGE_RATES_LATEST]:
        report.checks.append(_rate_freshness(query, now.date(), thresholds.max_rate_age_days))
    for spec in tables:
        target, table, source = warehouse_table(spec), spec.table, sources.get(spec.name)
        if table is None or source is None or not readable[target]:
            continue
        max_hours = thresholds.lag_hours(spec.name)
        report.checks.append(_table_freshness(query, target, table, source, max_hours))
        if table.append_only and source.count_between is not None:
            days = thresholds.reconcile_days
            report.checks.append(_reconciliation(query, spec, target, table, source, days))
        if source.columns is not None:
            report.checks.append(_dropped_columns(query, spec, target, source))
    for table, key in targets:
        if key is not None and readable[table]:
            report.checks.append(_duplicates_check(query, table, key))
    if monitors_snowpipe:
        try:
            report.checks.append(pipe_status_check(query(pipe_status_sql())[0][0]))
        except Exception as error:
            report.checks.append(
                Check("pipe status", EXCHANGE_RATES_PIPE, False, _first_line(error))
            )
        try:
            rows = query(copy_errors_sql(EXCHANGE_RATES, thresholds.copy_history_hours))
            report.checks.append(copy_history_check(rows, thresholds.copy_history_hours))
        except Exception as error:
            report.checks.append(Check("copy errors", EXCHANGE_RATES, False, _first_line(error)))
    return report


# ---- the environment's warehouse and source -------------------------------------------------


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


def verify(environment: Environment, thresholds: Thresholds | None = None) -> VerifyReport:
    """All checks against the environment's warehouse and every application table's source."""
    from pipelines.registry import application_tables

    tables = application_tables()
    sources = {
        spec.name: table_source_reader(source_query(environment, spec.table), spec.table)
        for spec in tables
        if spec.table is not None
    }
    return check_warehouse(
        environment.warehouse_query(),
        environment=environment.name,
        monitors_snowpipe=environment.monitors_snowpipe,
        tables=tables,
        sources=sources,
        thresholds=thresholds or Thresholds.from_config(tables),
    )
