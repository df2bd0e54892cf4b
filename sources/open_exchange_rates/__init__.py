"""The Open Exchange Rates client shared by every OXR source (auth, error classes, retries)."""

from sources.open_exchange_rates.client import (
    DEFAULT_BASE_URL,
    OpenExchangeRatesClient,
    OXRPermanentError,
    OXRTransientError,
    resolve_api_key,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "OXRPermanentError",
    "OXRTransientError",
    "OpenExchangeRatesClient",
    "resolve_api_key",
]
