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

from pipelines.environment import Environment
from verify.checks import check_warehouse, copy_history_check, pipe_status_check
from verify.report import Check, VerificationFailed, VerifyReport
from verify.sources import source_query, table_source_reader
from verify.sql import (
    copy_errors_sql,
    count_between_sql,
    duplicates_sql,
    latest_cursor_sql,
    latest_rate_date_sql,
    pipe_status_sql,
    warehouse_columns_sql,
)
from verify.targets import (
    CURRENCIES,
    EXCHANGE_RATES,
    EXCHANGE_RATES_LATEST,
    EXCHANGE_RATES_PIPE,
    PRODUCTS,
    TableSourceReader,
    Thresholds,
    target_tables,
    user_tables,
    warehouse_table,
)

__all__ = [
    "CURRENCIES",
    "EXCHANGE_RATES",
    "EXCHANGE_RATES_LATEST",
    "EXCHANGE_RATES_PIPE",
    "PRODUCTS",
    "Check",
    "TableSourceReader",
    "Thresholds",
    "VerificationFailed",
    "VerifyReport",
    "check_warehouse",
    "copy_errors_sql",
    "copy_history_check",
    "count_between_sql",
    "duplicates_sql",
    "latest_cursor_sql",
    "latest_rate_date_sql",
    "pipe_status_check",
    "pipe_status_sql",
    "target_tables",
    "user_tables",
    "verify",
    "warehouse_columns_sql",
    "warehouse_table",
]


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
