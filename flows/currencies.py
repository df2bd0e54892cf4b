"""`currencies-weekly`: reload the currency reference list (Sundays 00:00 UTC)."""

from __future__ import annotations

from typing import Any

from prefect import flow

from environments import load_environment
from flows.pipeline_flow import pipeline_flow
from flows.reporting import finish_flow, run_pipeline
from flows.retry_policy import pipeline_task
from pipelines import currencies
from pipelines.environment import Environment
from pipelines.pipeline_run import RunSummary


@pipeline_task("load-currencies", dlt_pipeline=currencies.PIPELINE_NAME)
def load_currencies(environment: Environment) -> RunSummary:
    """Run the currencies pipeline and return its summary."""
    return run_pipeline(
        "Loading currencies from Open Exchange Rates", lambda: currencies.run(environment)
    )


@pipeline_flow
@flow(
    name="currencies-weekly",
    description="Load OXR currencies.json into OPEN_EXCHANGE_RATES.CURRENCIES",
)
def currencies_weekly_flow() -> dict[str, Any]:
    """Weekly refresh of the currency reference table."""
    environment = load_environment()
    return finish_flow("currencies-weekly", [load_currencies(environment)])
