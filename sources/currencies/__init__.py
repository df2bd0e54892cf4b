"""Currencies reference data from Open Exchange Rates `currencies.json`."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import dlt
from dlt.common.typing import TSecretStrValue
from dlt.sources import DltResource

from sources.open_exchange_rates import (
    DEFAULT_BASE_URL,
    DEFAULT_MAX_CURRENCIES_SHRINK,
    OpenExchangeRatesClient,
    check_currencies_shrink,
    resolve_api_key,
)


@dlt.source(name="currencies", section="open_exchange_rates")
def currencies(
    api_key: TSecretStrValue | None = dlt.secrets.value,
    base_url: str = DEFAULT_BASE_URL,
    previous_count: int | None = None,
    max_currencies_shrink: float = DEFAULT_MAX_CURRENCIES_SHRINK,
) -> DltResource:
    """The `currencies` resource, configured under `[sources.open_exchange_rates]`.

    `previous_count` is the row count of the table this answer will replace (the pipeline
    reads it from its destination; a source knows none); an answer with more than
    `max_currencies_shrink` (a share) fewer currencies is refused before anything is written.
    """
    client = OpenExchangeRatesClient(resolve_api_key(api_key), base_url)
    return currencies_resource(client, previous_count, max_currencies_shrink)


def currencies_resource(
    client: OpenExchangeRatesClient,
    previous_count: int | None = None,
    max_currencies_shrink: float = DEFAULT_MAX_CURRENCIES_SHRINK,
) -> DltResource:
    """One row per currency code; the table is replaced on every run (it is reference data).

    The answer is fetched and checked here, when the resource is made, not inside its generator:
    dlt wraps a generator's exception in its own step error, and the operator's failure message
    would then start with dlt's wrapper instead of the refusal.
    """
    loaded_at = datetime.now(UTC)
    answer = client.currencies()  # validated: codes, names, non-empty
    check_currencies_shrink(len(answer), previous_count, max_currencies_shrink)
    rows = [
        {"code": code, "name": name, "_loaded_at": loaded_at}
        for code, name in sorted(answer.items())
    ]

    @dlt.resource(
        name="currencies",
        write_disposition="replace",
        primary_key="code",
        columns={
            "code": {"data_type": "text", "nullable": False},
            "name": {"data_type": "text"},
            "_loaded_at": {"data_type": "timestamp", "timezone": True},
        },
        # as validate_currencies allows: code and name only, as text (no column, no type drift)
        schema_contract={"tables": "evolve", "columns": "freeze", "data_type": "freeze"},
    )
    def _currencies() -> Iterator[list[dict[str, Any]]]:
        yield rows

    return _currencies
