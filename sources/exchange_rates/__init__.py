"""Exchange rates from Open Exchange Rates: `latest.json` and `historical/YYYY-MM-DD.json`.

Table shape (the same in the files, the Snowflake DDL and the local warehouse): one row per
(rate date, base) with the whole rate table in a JSON `rates` column:

| column       | type            | meaning                                                  |
|--------------|-----------------|----------------------------------------------------------|
| `rate_date`  | date            | the UTC day the rates describe                           |
| `timestamp`  | timestamp (UTC) | OXR's `timestamp`: when the rates were published         |
| `base`       | text            | the base currency (USD on the free plan)                 |
| `rates`      | json            | currency code -> units per 1 `base`                      |
| `_loaded_at` | timestamp (UTC) | when this run fetched the row                            |

A source knows no destination: where rows land and under which file names is the pipeline's
business (`pipelines/exchange_rates.py`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime
from typing import Any

import dlt
from dlt.common.configuration import configspec, resolve_configuration
from dlt.common.configuration.specs import BaseConfiguration
from dlt.common.typing import TSecretStrValue
from dlt.sources import DltResource

from sources.exchange_rate_dates import (
    FIRST_HISTORICAL_DATE,
    DateRange,
    InvalidDateError,
    days_between,
    parse_date,
    utc_today,
    validate_date_range,
)
from sources.exchange_rates.fetch import (
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_REQUESTS_PER_SECOND,
    DayProblems,
    FetchedDay,
    QuotaExceededError,
    RefusedDaysError,
    RequestRateLimiter,
    check_quota,
    fetch_historical_days,
    remaining_requests,
)
from sources.open_exchange_rates import DEFAULT_BASE_URL, OpenExchangeRatesClient, resolve_api_key

__all__ = [
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_MAX_REQUESTS_PER_SECOND",
    "FIRST_HISTORICAL_DATE",
    "HISTORICAL_TABLE",
    "LATEST_TABLE",
    "RATE_COLUMNS",
    "RATE_CONTRACT",
    "DateRange",
    "DayProblems",
    "ExchangeRatesSettings",
    "FetchedDay",
    "InvalidDateError",
    "QuotaExceededError",
    "RefusedDaysError",
    "RequestRateLimiter",
    "check_quota",
    "days_between",
    "exchange_rates",
    "fetch_historical_days",
    "historical_resource",
    "latest_resource",
    "make_client",
    "parse_date",
    "rate_row",
    "remaining_requests",
    "resolve_settings",
    "utc_today",
    "validate_date_range",
]

LATEST_TABLE = "latest"
HISTORICAL_TABLE = "historical"

# The dlt schema contract of both tables, matching the hand validation (contract.py, `rate_row`):
# the table may be created, but no column beyond RATE_COLUMNS and no other data type may appear.
# A row that breaks it fails the run (dlt's DataValidationError, permanent) before a file lands.
RATE_CONTRACT: dict[str, Any] = {"tables": "evolve", "columns": "freeze", "data_type": "freeze"}

# dlt column hints shared by both resources, so both produce the same file shape.
RATE_COLUMNS: dict[str, Any] = {
    "rate_date": {"data_type": "date", "nullable": False},
    "timestamp": {"data_type": "timestamp", "timezone": True, "nullable": False},
    "base": {"data_type": "text", "nullable": False},
    "rates": {"data_type": "json", "nullable": False},
    "_loaded_at": {"data_type": "timestamp", "timezone": True, "nullable": False},
}


@configspec
class ExchangeRatesSettings(BaseConfiguration):
    """`[sources.open_exchange_rates]`: key, API address and the backfill's politeness limits.

    Environment overrides follow dlt: SOURCES__OPEN_EXCHANGE_RATES__MAX_CONCURRENCY=8,
    SOURCES__OPEN_EXCHANGE_RATES__MAX_REQUESTS_PER_SECOND=10.
    """

    api_key: TSecretStrValue | None = None
    base_url: str = DEFAULT_BASE_URL
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    max_requests_per_second: float = DEFAULT_MAX_REQUESTS_PER_SECOND


def resolve_settings() -> ExchangeRatesSettings:
    """The settings as dlt resolves them (config.toml, secrets.toml, environment, providers)."""
    return resolve_configuration(
        ExchangeRatesSettings(), sections=("sources", "open_exchange_rates")
    )


def check_configured_key() -> None:
    """The configured OXR key: set, shaped like an app id, and accepted by OXR (one
    `usage.json` request, no retries); the CLI's up-front check of every OXR pipeline."""
    from sources.open_exchange_rates.client import check_api_key

    settings = resolve_settings()
    check_api_key(settings.api_key, settings.base_url)


def make_client(settings: ExchangeRatesSettings) -> OpenExchangeRatesClient:
    """The shared OXR client for these settings (a missing key fails here, permanently)."""
    return OpenExchangeRatesClient(resolve_api_key(settings.api_key), settings.base_url)


def rate_row(payload: dict[str, Any], rate_date: date, loaded_at: datetime) -> dict[str, Any]:
    """One table row from an OXR rates body."""
    return {
        "rate_date": rate_date,
        "timestamp": datetime.fromtimestamp(int(payload["timestamp"]), UTC),
        "base": str(payload["base"]),
        "rates": dict(payload["rates"]),
        "_loaded_at": loaded_at,
    }


def latest_resource(client: OpenExchangeRatesClient) -> DltResource:
    """`latest.json` as one row; its rate date is the UTC day of OXR's `timestamp`.

    Fetched and checked when the resource is made, so a refusal reaches the operator as itself,
    not wrapped in dlt's extract-step error.
    """
    payload = client.latest()
    published = datetime.fromtimestamp(int(payload["timestamp"]), UTC)
    row = rate_row(payload, published.date(), datetime.now(UTC))

    @dlt.resource(
        name=LATEST_TABLE,
        write_disposition="append",
        columns=RATE_COLUMNS,
        schema_contract=RATE_CONTRACT,
    )
    def latest() -> Iterator[dict[str, Any]]:
        yield row

    return latest


def historical_resource(fetched: Iterable[FetchedDay]) -> DltResource:
    """Rows for days already fetched (see `fetch_historical_days`), one per day."""

    @dlt.resource(
        name=HISTORICAL_TABLE,
        write_disposition="append",
        columns=RATE_COLUMNS,
        schema_contract=RATE_CONTRACT,
    )
    def historical() -> Iterator[dict[str, Any]]:
        loaded_at = datetime.now(UTC)
        for day in fetched:
            yield rate_row(day.payload, day.day, loaded_at)

    return historical
