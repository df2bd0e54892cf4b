"""The one place where benchmarks call the pipelines.

Every benchmark runs a pipeline through these functions, never through `pipelines.*` itself, so
a change of the pipelines' run API means changing this module only. Each function returns the
rows the run loaded (per table, or a total), read from the run's summary.

Written for the API of this tree: `pipelines.<name>.run(environment, **params)` (a one-line
`runner.execute(environment, SPEC, **params)`) returns a `PipelineRun` whose typed
`summary.rows` maps table -> rows. `_rows` also reads an older tree's
answer (`run` returned dlt's `LoadInfo`), so `bench_products --base-python/--base-path` can time
an older commit's pipeline code with this driver (scripts/bench_commit.sh).

Imports are inside the functions: a benchmark child pays only for the pipeline it runs.
`preload(name)` does those imports up front, for a benchmark that times imports and the call
apart (bench_latency's bare calls).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Any

# what each pipeline call below imports, for `preload`
MODULES = {
    "products": ("environments", "pipelines.products"),
    "currencies": ("environments", "pipelines.currencies"),
    "exchange_rates": (
        "environments",
        "pipelines.exchange_rates",
        "sources.exchange_rate_dates",
    ),
    "verify": ("environments", "verify"),
}


def preload(*names: str) -> None:
    """Import what the named pipeline calls need (so a timer can leave imports out)."""
    for name in names:
        for module in MODULES[name]:
            importlib.import_module(module)


def load_environment(name: str | None = "local") -> Any:
    from environments import load_environment as load

    return load(name)


def _rows(result: Any) -> dict[str, int]:
    """Rows per table from what a pipeline's run returned."""
    summary = getattr(result, "summary", None)
    if summary is None or callable(summary):  # an older tree: run returned dlt's LoadInfo
        from pipelines.runner import load_summary

        summary = load_summary(result)
    rows = summary.rows if hasattr(summary, "rows") else summary["rows"]
    return dict(rows)


def run_products(environment: Any, *, full_refresh: bool = False) -> int:
    """One products run (daily, or a full refresh); the rows loaded into `products`."""
    from pipelines import products

    return _rows(products.run(environment, full_refresh=full_refresh)).get("products", 0)


def run_currencies(environment: Any) -> int:
    """One currencies run; the rows loaded in all."""
    from pipelines import currencies

    return sum(_rows(currencies.run(environment)).values())


def run_exchange_rates_latest(environment: Any) -> int:
    """`latest.json` into the bucket (then the local pipe); the rows loaded in all."""
    from pipelines import exchange_rates

    return sum(_rows(exchange_rates.run(environment)).values())


def run_exchange_rates_backfill(environment: Any, start: Any, end: Any) -> int:
    """A backfill of `start..end` (dates or ISO strings, inclusive); the days loaded."""
    from pipelines import exchange_rates
    from sources.exchange_rate_dates import DateRange

    days = DateRange.parse(start, end)
    return sum(_rows(exchange_rates.run(environment, days=days)).values())


def last_complete_day() -> Any:
    """The day the daily flow backfills after the latest rates."""
    from pipelines.exchange_rates import last_complete_day as day

    return day()


def load_fetched_days(environment: Any, fetched: Iterable[Any]) -> None:
    """Days already fetched (`sources.exchange_rates.FetchedDay`) written by our pipeline in
    one load: the tutorial's sequential design with our writer (bench_exchange_rates)."""
    import dataclasses

    from pipelines import exchange_rates
    from pipelines.exchange_rates.bucket import Bucket
    from pipelines.runner import execute
    from sources.exchange_rates import historical_resource

    days = list(fetched)
    spec = dataclasses.replace(
        exchange_rates.SPEC,
        prepare=None,
        summarize=None,
        extract_load=lambda context: Bucket(context).load(historical_resource(days)),
    )
    execute(environment, spec)


def run_verify(environment: Any) -> Any:
    """The data-freshness checks (their report)."""
    from verify import verify

    return verify(environment)
