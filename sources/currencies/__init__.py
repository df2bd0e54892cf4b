"""Currencies reference data from Open Exchange Rates `currencies.json`."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import dlt
from dlt.common.typing import TSecretStrValue
from dlt.sources import DltResource

from sources.open_exchange_rates import DEFAULT_BASE_URL, OpenExchangeRatesClient, resolve_api_key


@dlt.source(name="currencies", section="open_exchange_rates")
def currencies(
    api_key: TSecretStrValue | None = dlt.secrets.value,
    base_url: str = DEFAULT_BASE_URL,
) -> DltResource:
    """The `currencies` resource, configured under `[sources.open_exchange_rates]`."""
    client = OpenExchangeRatesClient(resolve_api_key(api_key), base_url)
    return currencies_resource(client)


def currencies_resource(client: OpenExchangeRatesClient) -> DltResource:
    """One row per currency code; the table is replaced on every run (it is reference data)."""

    @dlt.resource(
        name="currencies",
        write_disposition="replace",
        primary_key="code",
        columns={
            "code": {"data_type": "text", "nullable": False},
            "name": {"data_type": "text"},
            "_loaded_at": {"data_type": "timestamp", "timezone": True},
        },
    )
    def _currencies() -> Iterator[list[dict[str, Any]]]:
        loaded_at = datetime.now(UTC)
        yield [
            {"code": code, "name": name, "_loaded_at": loaded_at}
            for code, name in sorted(client.currencies().items())
        ]

    return _currencies
