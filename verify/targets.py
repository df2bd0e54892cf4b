"""What `verify` checks: the tables users read, each with its unique key, and the thresholds.

Application tables come from the registry, so a new one is checked without a line here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pipelines import names
from pipelines.spec import PipelineSpec

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
