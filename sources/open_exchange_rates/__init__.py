"""The Open Exchange Rates client shared by every OXR source (auth, error classes, retries)."""

from sources.open_exchange_rates.client import (
    DEFAULT_BASE_URL,
    OpenExchangeRatesClient,
    OXRDayNotAvailable,
    OXRPermanentError,
    OXRTransientError,
    resolve_api_key,
)
from sources.open_exchange_rates.contract import (
    DEFAULT_MAX_CURRENCIES_SHRINK,
    OXRDataError,
    check_currencies_shrink,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_MAX_CURRENCIES_SHRINK",
    "OXRDataError",
    "OXRDayNotAvailable",
    "OXRPermanentError",
    "OXRTransientError",
    "OpenExchangeRatesClient",
    "check_currencies_shrink",
    "resolve_api_key",
]
