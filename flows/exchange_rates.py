"""`exchange-rates-daily` (09:00 UTC) and `exchange-rates-backfill` (on demand).

Both write files under the bucket's `exchange-rates/` prefix; Snowpipe (or, locally, its
stand-in) loads them into `SNOWPIPE.OPEN_EXCHANGE_RATES.EXCHANGE_RATES`, and users read
`SNOWPIPE.OPEN_EXCHANGE_RATES.EXCHANGE_RATES_LATEST` (one row per rate date and base).

Logs: the pipeline and source modules log through the standard `logging` module (progress as
"N/M days"); `flows.pipeline_flow` puts those lines and dlt's in the flow run's logs. The
backfill also publishes a progress artifact (days in the bucket / days in the range).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from environments import load_environment
from flows.pipeline_flow import pipeline_flow
from flows.reporting import finish_flow, run_pipeline
from flows.retry_policy import pipeline_task
from pipelines import exchange_rates
from pipelines.environment import Environment
from pipelines.pipeline_run import RunSummary
from sources.exchange_rate_dates import DateRange


@pipeline_task("load-exchange-rates", dlt_pipeline=exchange_rates.PIPELINE_NAME)
def load_exchange_rates(environment: Environment) -> RunSummary:
    """Fetch `latest.json` into the bucket and return the load summary."""
    return run_pipeline(
        "Loading the latest exchange rates from Open Exchange Rates",
        lambda: exchange_rates.run(environment),
    )


@pipeline_flow
@flow(
    name="exchange-rates-daily",
    description="OXR latest.json, and yesterday's final historical rates when missing, to the "
    "bucket under exchange-rates/ (Snowpipe auto-ingests)",
)
def exchange_rates_daily_flow() -> dict[str, Any]:
    """Daily snapshot of the latest rates, and yesterday's final rates if not in the bucket."""
    environment = load_environment()
    latest = load_exchange_rates(environment)
    # The 09:00 snapshot is not a day's final value: fetch yesterday's end-of-day rates
    # (historical/<day>, which the view prefers) unless a run or backfill already has them.
    day = exchange_rates.last_complete_day()
    final_rates = backfill_exchange_rates.with_options(name="load-final-rates")(
        environment, DateRange(day, day)
    )
    return finish_flow("exchange-rates-daily", [latest, final_rates])


def _progress_artifact(days: DateRange) -> Callable[[int, int], None]:
    """A callback for the backfill: the run's progress artifact, days in the bucket / total.

    Created at the first call (when the total is known) and updated at each chunk; Prefect shows
    it on the run page while the backfill runs.
    """
    artifact_id = None
    description = f"exchange-rates-backfill {days}: days done"

    def report(done: int, total: int) -> None:
        nonlocal artifact_id
        percent = 100.0 * done / total if total else 100.0
        if artifact_id is None:
            artifact_id = create_progress_artifact(percent, description=description)
        else:
            update_progress_artifact(
                artifact_id, percent, description=f"{description} {done}/{total}"
            )

    return report


@pipeline_task("backfill-exchange-rates", dlt_pipeline=exchange_rates.PIPELINE_NAME)
def backfill_exchange_rates(environment: Environment, days: DateRange) -> RunSummary:
    """Historical days of `days` (inclusive), only those not in the bucket yet.

    Resumable: a retry (or a rerun after a crash) asks OXR only for the days still missing.
    """
    progress = _progress_artifact(days)
    summary = run_pipeline(
        f"Backfilling exchange rates {days}",
        lambda: exchange_rates.run(environment, days=days, on_progress=progress),
    )
    backfill = summary.details["backfill"]
    get_run_logger().info(
        "Backfill %s..%s: %d day(s) in range, %d skipped (already in the bucket), "
        "%d requested, %d loaded in %.1fs",
        backfill["start_date"],
        backfill["end_date"],
        backfill["days_total"],
        backfill["days_skipped"],
        backfill["days_requested"],
        backfill["days_loaded"],
        summary.duration_seconds,
    )
    return summary


@pipeline_flow
@flow(
    name="exchange-rates-backfill",
    description="OXR historical rates for an inclusive date range (quota-checked, resumable)",
)
def exchange_rates_backfill_flow(
    start_date: str = "2026-01-01", end_date: str | None = None
) -> dict[str, Any]:
    """Backfill `start_date..end_date` (YYYY-MM-DD; `end_date` defaults to yesterday, UTC)."""
    # Checked here at the edge, as every deployment run's parameters arrive (the CLI hands over
    # the range its preflight resolved, so both ends are the ones it checked): bad dates fail
    # the flow with a permanent error before any task, request or retry; the task and the
    # pipeline get the typed range.
    days = DateRange.parse(start_date, end_date)
    environment = load_environment()
    summary = backfill_exchange_rates(environment, days)
    return finish_flow("exchange-rates-backfill", [summary])
