"""Verify what users read, in the current environment: the tutorial's finishing-up checklist.

Checks (SQL against the environment's warehouse; no Prefect here):

- rows: every target table exists and has rows (`DLT.OPEN_EXCHANGE_RATES.CURRENCIES`,
  `DLT.APPLICATION_DATA.PRODUCTS`, `SNOWPIPE.OPEN_EXCHANGE_RATES.EXCHANGE_RATES` and the view
  users read, `SNOWPIPE.OPEN_EXCHANGE_RATES.EXCHANGE_RATES_LATEST`);
- freshness: the latest rate date is at most `max_rate_age_days` (default 1) before today (UTC;
  the daily load runs at 09:00, so until then yesterday is the newest); the latest products
  `valid_ts` is at most `max_products_lag_hours` (default 26: daily at 06:00 plus slack)
  behind the newest `valid_ts` in the source, PostgreSQL `raw_data.products`;
- reconcile: audit rows per UTC day in PostgreSQL and in the warehouse over the last
  `reconcile_days` (default 7) up to the cursor minus the source's lookback (newer rows are
  re-read by the next run); the audit log only grows, so a difference is lost (late) rows or
  rows that are not the source's, named by day, with the fix;
- columns: a warehouse column the source no longer has (a dropped column: NULL in every new
  row) is reported with the fix;
- duplicates: no key appears twice where users read (currencies `code`, products `audit_id`,
  exchange rates `(rate_date, base)` in the view);
- production only: the pipe runs (`SYSTEM$PIPE_STATUS` says `executionState: RUNNING`) and
  `COPY_HISTORY` shows no failed or partial file loads in the last `copy_history_hours`
  (default 24).

Thresholds are dlt config: `[verify] max_rate_age_days`, `max_products_lag_hours`,
`copy_history_hours`, `reconcile_days` (env `VERIFY__MAX_RATE_AGE_DAYS`, ...).

`verify()` returns a `VerifyReport`; `render()` prints it for people; `data-pipelines verify`
exits non-zero listing what failed, and the `data-freshness` flow fails (and so alerts) likewise.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pipelines import names
from pipelines.environment import Environment, Query
from pipelines.text_table import text_table

CURRENCIES = names.CURRENCIES_TABLE
PRODUCTS = names.PRODUCTS_TABLE
EXCHANGE_RATES = names.EXCHANGE_RATES_TABLE
EXCHANGE_RATES_LATEST = names.EXCHANGE_RATES_LATEST_VIEW
EXCHANGE_RATES_PIPE = names.EXCHANGE_RATES_PIPE

# What users read, with the key that must be unique there (None: raw, append-only by design).
TARGET_TABLES: tuple[tuple[str, tuple[str, ...] | None], ...] = (
    (CURRENCIES, ("code",)),
    (PRODUCTS, ("audit_id",)),
    (EXCHANGE_RATES, None),
    (EXCHANGE_RATES_LATEST, ("rate_date", "base")),
)

DEFAULT_MAX_RATE_AGE_DAYS = 1
DEFAULT_MAX_PRODUCTS_LAG_HOURS = 26.0
DEFAULT_COPY_HISTORY_HOURS = 24
DEFAULT_RECONCILE_DAYS = 7


class VerificationFailed(RuntimeError):
    """The data is not what users should read; the message lists every failed check."""


@dataclass(frozen=True)
class Thresholds:
    max_rate_age_days: int = DEFAULT_MAX_RATE_AGE_DAYS
    max_products_lag_hours: float = DEFAULT_MAX_PRODUCTS_LAG_HOURS
    copy_history_hours: int = DEFAULT_COPY_HISTORY_HOURS
    reconcile_days: int = DEFAULT_RECONCILE_DAYS

    @classmethod
    def from_config(cls) -> Thresholds:
        import dlt

        def get(key: str, default: Any) -> Any:
            value = dlt.config.get(f"verify.{key}")
            return type(default)(value) if value is not None else default

        return cls(
            get("max_rate_age_days", DEFAULT_MAX_RATE_AGE_DAYS),
            get("max_products_lag_hours", DEFAULT_MAX_PRODUCTS_LAG_HOURS),
            get("copy_history_hours", DEFAULT_COPY_HISTORY_HOURS),
            get("reconcile_days", DEFAULT_RECONCILE_DAYS),
        )


@dataclass(frozen=True)
class ProductsSourceReader:
    """What the checks read from the products source (PostgreSQL `raw_data.products`)."""

    # Rows with start <= valid_ts < end (UTC-aware bounds).
    count_between: Callable[[datetime, datetime], int]
    # The table's column names.
    columns: Callable[[], set[str]]
    # The source's re-read window behind the cursor: rows newer than cursor - lookback are
    # re-read by the next run, so they are not missing yet.
    lookback: timedelta


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


def latest_valid_ts_sql() -> str:
    return f"select max(valid_ts) from {PRODUCTS}"


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


def source_latest_valid_ts_sql(schema: str, table: str) -> str:
    from sources.products.postgres import quote_identifier

    return f"SELECT max(valid_ts) FROM {quote_identifier(schema)}.{quote_identifier(table)}"


def _utc_literal(value: datetime) -> str:
    # an offset literal compares right with TIMESTAMP_TZ (Snowflake), TIMESTAMPTZ (DuckDB) and
    # PostgreSQL timestamp/timestamptz alike (the audit log's timestamp holds UTC wall time)
    return f"'{_as_utc(value):%Y-%m-%d %H:%M:%S.%f}+00:00'"


def count_between_sql(table: str, start: datetime, end: datetime) -> str:
    return (
        f"select count(*) from {table} "
        f"where valid_ts >= {_utc_literal(start)} and valid_ts < {_utc_literal(end)}"
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
    # PostgreSQL `timestamp` holds UTC wall-clock time (sources/products)
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


def _products_freshness(
    query: Query, source_latest: Callable[[], datetime | None], max_lag_hours: float
) -> Check:
    loaded = query(latest_valid_ts_sql())[0][0]
    try:
        newest = source_latest()
    except Exception as error:  # the source is part of the check: say why it could not run
        return Check("freshness", PRODUCTS, False, f"cannot read the source: {_first_line(error)}")
    if newest is None:
        return Check("freshness", PRODUCTS, True, "the source has no rows")
    if loaded is None:
        return Check("freshness", PRODUCTS, False, f"no valid_ts loaded; source has {newest}")
    lag = _as_utc(newest) - _as_utc(loaded)
    hours = max(lag, timedelta(0)).total_seconds() / 3600
    detail = (
        f"latest valid_ts {_as_utc(loaded):%Y-%m-%d %H:%M:%S} is {hours:.1f} h behind the "
        f"source's {_as_utc(newest):%Y-%m-%d %H:%M:%S} (max {max_lag_hours:g} h)"
    )
    return Check("freshness", PRODUCTS, hours <= max_lag_hours, detail)


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


def _products_reconciliation(query: Query, source: ProductsSourceReader, days: int) -> Check:
    """Audit rows per day: source vs warehouse, up to the cursor minus the lookback.

    The audit log only grows, so a day with fewer rows in the warehouse lost rows: most often
    rows committed with a `valid_ts` further behind the cursor than the lookback re-reads.
    """
    loaded = query(latest_valid_ts_sql())[0][0]
    if loaded is None:
        return Check("reconcile", PRODUCTS, True, "nothing loaded yet")
    cutoff = _as_utc(loaded) - source.lookback
    gaps = []
    compared = 0
    try:
        for start, end in _day_windows(cutoff, days):
            expected = source.count_between(start, end)
            found = int(query(count_between_sql(PRODUCTS, start, end))[0][0])
            compared += expected
            if expected != found:
                gaps.append(f"{start:%Y-%m-%d}: source {expected}, warehouse {found}")
    except Exception as error:  # the source is part of the check: say why it could not run
        return Check("reconcile", PRODUCTS, False, f"cannot compare: {_first_line(error)}")
    window = f"{days} day(s) up to {cutoff:%Y-%m-%d %H:%M} UTC (cursor minus lookback)"
    if not gaps:
        return Check("reconcile", PRODUCTS, True, f"{compared} audit rows match over {window}")
    return Check(
        "reconcile",
        PRODUCTS,
        False,
        f"row counts differ over {window}: {'; '.join(gaps[:5])}. Rows the warehouse lacks "
        "committed later than the lookback re-reads: run products-full-refresh, or widen "
        "[sources.products] lookback",
    )


def _dropped_columns(query: Query, source: ProductsSourceReader) -> Check:
    """Warehouse columns the source no longer has: they hold NULL for every new row."""
    try:
        source_columns = {c.lower() for c in source.columns()}
        warehouse = {str(r[0]).lower() for r in query(warehouse_columns_sql(PRODUCTS))}
    except Exception as error:
        return Check("columns", PRODUCTS, False, f"cannot compare: {_first_line(error)}")
    dropped = sorted(c for c in warehouse - source_columns if not c.startswith("_dlt"))
    if not dropped:
        return Check("columns", PRODUCTS, True, "every warehouse column exists in the source")
    return Check(
        "columns",
        PRODUCTS,
        False,
        f"dropped in the source, NULL in every new row: {', '.join(dropped)}. If the drop is "
        "intended, drop the column in the warehouse (or run products-full-refresh after "
        "`dlt pipeline products drop products`); else restore it in PostgreSQL",
    )


def check_warehouse(
    query: Query,
    *,
    environment: str,
    monitors_snowpipe: bool,
    source_latest_valid_ts: Callable[[], datetime | None],
    products_source: ProductsSourceReader | None = None,
    thresholds: Thresholds | None = None,
    now: datetime | None = None,
) -> VerifyReport:
    """Run every check with `query` (one SQL string -> rows); never raises for a failed check."""
    thresholds = thresholds or Thresholds()
    now = now or datetime.now(UTC)
    report = VerifyReport(environment=environment, checked_at=now)
    readable: dict[str, bool] = {}
    for table, _ in TARGET_TABLES:
        check, readable[table] = _rows_check(query, table)
        report.checks.append(check)
    if readable[EXCHANGE_RATES_LATEST]:
        report.checks.append(_rate_freshness(query, now.date(), thresholds.max_rate_age_days))
    if readable[PRODUCTS]:
        report.checks.append(
            _products_freshness(query, source_latest_valid_ts, thresholds.max_products_lag_hours)
        )
        if products_source is not None:
            report.checks.append(
                _products_reconciliation(query, products_source, thresholds.reconcile_days)
            )
            report.checks.append(_dropped_columns(query, products_source))
    for table, key in TARGET_TABLES:
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


def products_source_query(environment: Environment) -> Query:
    """SQL against the products source; the DSN is resolved at the first query, once.

    Lazily, so that a source that cannot be reached (or configured) fails the checks that read
    it, with the reason, instead of the whole report. Errors are classified as the pipeline's.
    """
    from pipelines.products import products_dsn
    from sources.products.postgres import connect, endpoint_of, fetch_all

    dsn: list[str] = []

    def run(sql: str) -> list[tuple[Any, ...]]:
        if not dsn:
            dsn.append(products_dsn(environment))
        with connect(dsn[0]) as connection:
            return fetch_all(connection, sql, endpoint_of(dsn[0]))

    return run


def _scalar(query: Query, sql: str) -> Any:
    rows = query(sql)
    return rows[0][0] if rows else None


def source_latest_valid_ts(source: Query) -> datetime | None:
    """The newest `valid_ts` in the products audit log (the source of the products table)."""
    from sources.products import configured_table

    return _scalar(source, source_latest_valid_ts_sql(*configured_table()))


def products_source_reader(source: Query) -> ProductsSourceReader:
    """Counts and columns of the products audit log."""
    import dlt

    from sources.products import DEFAULT_LOOKBACK, configured_table, parse_lookback
    from sources.products.postgres import quote_identifier, table_columns_sql

    schema, table = configured_table()
    qualified = f"{quote_identifier(schema)}.{quote_identifier(table)}"
    lookback = dlt.config.get("sources.products.lookback") or DEFAULT_LOOKBACK
    return ProductsSourceReader(
        count_between=lambda start, end: int(
            _scalar(source, count_between_sql(qualified, start, end))
        ),
        columns=lambda: {row[0] for row in source(table_columns_sql(schema, table))},
        lookback=timedelta(seconds=parse_lookback(lookback)),
    )


def verify(environment: Environment, thresholds: Thresholds | None = None) -> VerifyReport:
    """All checks against the environment's warehouse and the products source."""
    source = products_source_query(environment)
    return check_warehouse(
        environment.warehouse_query(),
        environment=environment.name,
        monitors_snowpipe=environment.monitors_snowpipe,
        source_latest_valid_ts=lambda: source_latest_valid_ts(source),
        products_source=products_source_reader(source),
        thresholds=thresholds or Thresholds.from_config(),
    )
