"""`currencies-weekly`: reload the currency reference list (Sundays 00:00 UTC)."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from flows.reporting import persist_audit, publish_run_report
from flows.retry_policy import pipeline_task
from pipelines.currencies import PIPELINE_NAME, run
from pipelines.runner import load_summary


@pipeline_task("load-currencies", dlt_pipeline=PIPELINE_NAME)
def load_currencies() -> dict[str, Any]:
    """Run the currencies pipeline and return its summary."""
    logger = get_run_logger()
    logger.info("Loading currencies from Open Exchange Rates")
    load_info = run()
    summary = load_summary(load_info)
    persist_audit(load_info)
    logger.info(
        "Loaded %s rows into %s.%s in %ss",
        summary["rows"].get("currencies", 0),
        summary["destination"],
        summary["dataset"],
        summary["duration_seconds"],
    )
    return summary


@flow(
    name="currencies-weekly",
    description="Load OXR currencies.json into OPEN_EXCHANGE_RATES.CURRENCIES",
)
def currencies_weekly_flow() -> dict[str, Any]:
    """Weekly refresh of the currency reference table."""
    summary = load_currencies()
    publish_run_report("currencies-weekly", [summary])
    return {"status": "success", "load_info": summary}
