"""Names that must hold everywhere: databases, tables users read, dlt pipelines, Prefect tags.

Defined once; the pipelines, `verify`, the CLI, the local pipe and `infra/` import them. The
local DuckDB files are named after the production databases, so every three-part name here is
a valid query in both environments.
"""

from __future__ import annotations

# Snowflake databases (locally: one DuckDB file each, `warehouse/<name>.duckdb`)
WAREHOUSE_DATABASE = "DLT"
SNOWPIPE_DATABASE = "SNOWPIPE"

# The bucket prefix Snowpipe watches; nothing but data files may live under it.
EXCHANGE_RATES_PREFIX = "exchange-rates"

# dlt pipeline names (also the folders under the pipelines dir: `dlt pipeline <name> info`)
CURRENCIES_PIPELINE = "currencies"
EXCHANGE_RATES_PIPELINE = "exchange_rates"
PRODUCTS_PIPELINE = "products"
DLT_PIPELINES: tuple[str, ...] = (CURRENCIES_PIPELINE, EXCHANGE_RATES_PIPELINE, PRODUCTS_PIPELINE)

# What users read, by the names they use in Snowflake
CURRENCIES_TABLE = f"{WAREHOUSE_DATABASE}.OPEN_EXCHANGE_RATES.CURRENCIES"
PRODUCTS_TABLE = f"{WAREHOUSE_DATABASE}.APPLICATION_DATA.PRODUCTS"
EXCHANGE_RATES_TABLE = f"{SNOWPIPE_DATABASE}.OPEN_EXCHANGE_RATES.EXCHANGE_RATES"
EXCHANGE_RATES_LATEST_VIEW = f"{SNOWPIPE_DATABASE}.OPEN_EXCHANGE_RATES.EXCHANGE_RATES_LATEST"
EXCHANGE_RATES_PIPE = f"{SNOWPIPE_DATABASE}.OPEN_EXCHANGE_RATES.EXCHANGE_RATES_PIPE"
USER_TABLES: tuple[str, ...] = (
    CURRENCIES_TABLE,
    PRODUCTS_TABLE,
    EXCHANGE_RATES_TABLE,
    EXCHANGE_RATES_LATEST_VIEW,
)


def pipeline_concurrency_tag(dlt_pipeline: str) -> str:
    """`dlt-pipeline:<name>`: the pipeline's global concurrency limit (the run guard,
    environments/run_guard.py) and the tag on the tasks that run it (a label)."""
    return f"dlt-pipeline:{dlt_pipeline}"
