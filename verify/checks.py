"""The judgement: each check compares what the warehouse holds with what it should.

`check_warehouse(query, ...)` runs every check with one SQL function (a string -> rows); it
never raises for a failed check: a table it cannot read is one failed check.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pipelines.environment import Query
from pipelines.spec import PipelineSpec
from sources.postgres_table import PostgresTable
from verify.report import Check, VerifyReport
from verify.sql import (
    as_utc,
    copy_errors_sql,
    count_between_sql,
    count_sql,
    duplicates_sql,
    latest_cursor_sql,
    latest_rate_date_sql,
    pipe_status_sql,
    warehouse_columns_sql,
)
from verify.targets import (
    EXCHANGE_RATES,
    EXCHANGE_RATES_LATEST,
    EXCHANGE_RATES_PIPE,
    TableSourceReader,
    Thresholds,
    target_tables,
    warehouse_table,
)


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:160]


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
        lag = as_utc(newest) - as_utc(loaded)
    elif isinstance(newest, date) and isinstance(loaded, date):
        lag = timedelta(days=(_day(newest) - _day(loaded)).days)
    else:
        return None
    return max(lag, timedelta(0)).total_seconds() / 3600


def _day(value: date) -> date:
    return value.date() if isinstance(value, datetime) else value


def _shown(value: Any) -> str:
    return f"{as_utc(value):%Y-%m-%d %H:%M:%S}" if isinstance(value, datetime) else str(value)


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
    cutoff = as_utc(cutoff)
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
    cutoff = as_utc(loaded) - source.lookback
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
