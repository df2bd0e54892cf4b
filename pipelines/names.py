"""Names that must hold everywhere: databases, tables users read, dlt pipelines, Prefect tags.

Defined once; the pipelines, `verify`, the flows, the CLI, the local pipe and `infra/` import
them. The
local DuckDB files are named after the production databases, so every three-part name here is
a valid query in both environments.
"""

from __future__ import annotations

# Snowflake databases (locally: one DuckDB file each, `warehouse/<name>.duckdb`)
WAREHOUSE_DATABASE = "DLT"
SNOWPIPE_DATABASE = "SNOWPIPE"

# The bucket prefix Snowpipe watches; nothing but data files may live under it.
EXCHANGE_RATES_PREFIX = "exchange-rates"

# dlt pipeline names of the API pipelines (also the folders under the pipelines dir:
# `dlt pipeline <name> info`); application tables are named by their configuration, and every
# pipeline is listed in pipelines/registry.py
CURRENCIES_PIPELINE = "currencies"
EXCHANGE_RATES_PIPELINE = "exchange_rates"

# What users read, by the names they use in Snowflake
CURRENCIES_TABLE = f"{WAREHOUSE_DATABASE}.OPEN_EXCHANGE_RATES.CURRENCIES"
PRODUCTS_TABLE = f"{WAREHOUSE_DATABASE}.APPLICATION_DATA.PRODUCTS"
EXCHANGE_RATES_TABLE = f"{SNOWPIPE_DATABASE}.OPEN_EXCHANGE_RATES.EXCHANGE_RATES"
EXCHANGE_RATES_LATEST_VIEW = f"{SNOWPIPE_DATABASE}.OPEN_EXCHANGE_RATES.EXCHANGE_RATES_LATEST"
EXCHANGE_RATES_PIPE = f"{SNOWPIPE_DATABASE}.OPEN_EXCHANGE_RATES.EXCHANGE_RATES_PIPE"


# The Failed-typed state of a run refused for its input (a bad backfill date): it alerts Slack but
# never counts toward a page (flows/pipeline_flow.py sets it, infra/alerting.py routes it).
REFUSED_STATE_NAME = "Refused"

# Prefect events for schema changes (flows/schema_events.py emits them, infra/alerting.py's
# automation sends the Slack ones): the event names and the table resource's id prefix.
SCHEMA_EVENT_PREFIX = "data-pipelines.schema."
TABLE_RESOURCE_PREFIX = "data-pipelines.table."
COLUMNS_ADDED = SCHEMA_EVENT_PREFIX + "columns-added"
COLUMNS_DROPPED = SCHEMA_EVENT_PREFIX + "columns-dropped"
COLUMN_RETYPED = SCHEMA_EVENT_PREFIX + "column-retyped"
# Of these, the schema-change automation sends Slack messages (a retyped column fails its run,
# whose failure alert already carries the cause and the fix).
SLACK_SCHEMA_EVENTS = frozenset({COLUMNS_ADDED, COLUMNS_DROPPED})


def pipeline_concurrency_tag(dlt_pipeline: str) -> str:
    """`dlt-pipeline:<name>`: the pipeline's global concurrency limit (the run guard,
    environments/run_guard.py) and the tag on the tasks that run it (a label)."""
    return f"dlt-pipeline:{dlt_pipeline}"


# The table cell of a run that loaded nothing (no new activity, every day already there).
NOTHING_NEW = "nothing new"
