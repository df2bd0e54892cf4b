"""Currencies: OXR `currencies.json` -> `DLT.OPEN_EXCHANGE_RATES.CURRENCIES` (replace)."""

from __future__ import annotations

from functools import partial

import dlt
from dlt.destinations.exceptions import DatabaseUndefinedRelation

from pipelines.environment import Environment
from pipelines.names import CURRENCIES_PIPELINE
from pipelines.pipeline_run import PipelineRun
from pipelines.runner import (
    extract_normalize_load,
    load_summary,
    make_pipeline,
    persist_run_audit,
    start_from_destination,
)
from sources.currencies import currencies

PIPELINE_NAME = CURRENCIES_PIPELINE
DATASET_NAME = "open_exchange_rates"
TABLE_NAME = "currencies"


def current_row_count(environment: Environment, pipeline: dlt.Pipeline) -> int | None:
    """Rows in the CURRENCIES table this run will replace; None before the first load.

    The source refuses an answer that would shrink the table too much, but a source knows no
    destination: the count is read here and passed in.
    """
    try:
        with environment.warehouse_lock(), pipeline.sql_client() as client:
            table = client.make_qualified_table_name(TABLE_NAME)
            rows = client.execute_sql(f"select count(*) from {table}")
    except DatabaseUndefinedRelation:
        return None
    return int(rows[0][0]) if rows else None


def run(environment: Environment) -> PipelineRun:
    """Load the currency list into the environment's warehouse."""
    with environment.run_guard(PIPELINE_NAME):
        pipeline = start_from_destination(
            make_pipeline(PIPELINE_NAME, environment.warehouse(), DATASET_NAME),
            environment.warehouse_lock,
        )
        source = currencies(previous_count=current_row_count(environment, pipeline))
        load_info = extract_normalize_load(pipeline, source, load_lock=environment.warehouse_lock)
    # the audit goes beside the table: `_load_info` / `_trace` of the same dataset
    audit = partial(persist_run_audit, load_lock=environment.warehouse_lock)
    return PipelineRun(load_info, load_summary(load_info), audit)
