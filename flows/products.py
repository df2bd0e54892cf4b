"""`products-daily` (06:00 UTC, incremental) and `products-full-refresh` (on demand)."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from flows.reporting import persist_audit, publish_run_report
from flows.retry_policy import pipeline_task
from pipelines.products import PIPELINE_NAME, run
from pipelines.runner import load_summary


@pipeline_task("load-products", dlt_pipeline=PIPELINE_NAME)
def load_products(full_refresh: bool = False) -> dict[str, Any]:
    """Run the products pipeline (incremental, or a full reload) and return its summary."""
    logger = get_run_logger()
    logger.info(
        "Loading products from PostgreSQL (%s)", "full refresh" if full_refresh else "incremental"
    )
    load_info = run(full_refresh=full_refresh)
    summary = load_summary(load_info)
    persist_audit(load_info)
    logger.info(
        "Loaded %s rows into %s.%s in %ss",
        summary["rows"].get("products", 0),
        summary["destination"],
        summary["dataset"],
        summary["duration_seconds"],
    )
    if summary["schema_changes"]:
        logger.info("New columns: %s", summary["schema_changes"])
    return summary


@flow(
    name="products-daily",
    description="Merge new raw_data.products audit rows into APPLICATION_DATA.PRODUCTS",
)
def products_daily_flow() -> dict[str, Any]:
    """Daily incremental load on `valid_ts`, merged on `audit_id`."""
    summary = load_products(full_refresh=False)
    publish_run_report("products-daily", [summary])
    return {"status": "success", "load_info": summary}


@flow(
    name="products-full-refresh",
    description="Reload all of raw_data.products into APPLICATION_DATA.PRODUCTS (atomic swap)",
)
def products_full_refresh_flow() -> dict[str, Any]:
    """Reload every row and reset the cursor; readers keep the old table until the swap."""
    summary = load_products(full_refresh=True)
    publish_run_report("products-full-refresh", [summary])
    return {"status": "success", "load_info": summary}
