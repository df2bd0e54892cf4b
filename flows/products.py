"""`products-daily` (06:00 UTC, incremental) and `products-full-refresh` (on demand)."""

from __future__ import annotations

from typing import Any

from prefect import flow

from environments import load_environment
from flows.pipeline_flow import pipeline_flow
from flows.reporting import finish_flow, run_pipeline
from flows.retry_policy import pipeline_task
from pipelines import products
from pipelines.environment import Environment
from pipelines.pipeline_run import RunSummary


@pipeline_task("load-products", dlt_pipeline=products.PIPELINE_NAME)
def load_products(environment: Environment, full_refresh: bool = False) -> RunSummary:
    """Run the products pipeline (incremental, or a full reload) and return its summary."""
    return run_pipeline(
        "Loading products from PostgreSQL ("
        + ("full refresh" if full_refresh else "incremental")
        + ")",
        lambda: products.run(environment, full_refresh=full_refresh),
    )


@pipeline_flow
@flow(
    name="products-daily",
    description="Merge new raw_data.products audit rows into APPLICATION_DATA.PRODUCTS",
)
def products_daily_flow() -> dict[str, Any]:
    """Daily incremental load on `valid_ts`, merged on `audit_id`."""
    environment = load_environment()
    return finish_flow("products-daily", [load_products(environment, full_refresh=False)])


@pipeline_flow
@flow(
    name="products-full-refresh",
    description="Reload all of raw_data.products into APPLICATION_DATA.PRODUCTS (atomic swap)",
)
def products_full_refresh_flow() -> dict[str, Any]:
    """Reload every row and reset the cursor; readers keep the old table until the swap."""
    environment = load_environment()
    return finish_flow("products-full-refresh", [load_products(environment, full_refresh=True)])
