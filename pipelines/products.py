"""Products: PostgreSQL `raw_data.products` audit log -> `DLT.APPLICATION_DATA.PRODUCTS`.

An application table by configuration (pipelines/application_table.py says how every such
table loads: incremental merge, atomic full refresh, schema contract, state in the warehouse):
incremental on `valid_ts`, merged on `audit_id`, append-only (sources/products).
"""

from __future__ import annotations

from typing import Any

import dlt

from pipelines import application_table
from pipelines.application_table import (
    APPLICATION_DATASET,
    SCHEMA_CONTRACT,
    application_table_pipeline,
)
from pipelines.environment import Environment
from pipelines.errors import SchemaContractViolation
from pipelines.pipeline_run import PipelineRun
from pipelines.runner import execute, make_pipeline
from sources.products import PRODUCTS

__all__ = [
    "DATASET_NAME",
    "PIPELINE_NAME",
    "SCHEMA_CONTRACT",
    "SPEC",
    "TABLE_NAME",
    "SchemaContractViolation",
    "cursor_value",
    "make_products_pipeline",
    "products_dsn",
    "run",
]

SPEC = application_table_pipeline(PRODUCTS, dataset=APPLICATION_DATASET, timeout=3600)
PIPELINE_NAME = SPEC.name
DATASET_NAME = SPEC.dataset
TABLE_NAME = PRODUCTS.name


def products_dsn(environment: Environment) -> str:
    """The application database's DSN, as products reads it (`[sources.products] credentials`)."""
    return application_table.application_dsn(environment, PRODUCTS)


def make_products_pipeline(environment: Environment) -> dlt.Pipeline:
    """The `products` pipeline into the environment's warehouse (atomic swaps: runner)."""
    return make_pipeline(PIPELINE_NAME, environment.warehouse(), DATASET_NAME)


def cursor_value(pipeline: dlt.Pipeline) -> Any:
    """The stored `valid_ts` cursor (None before the first load or after a reset)."""
    return application_table.cursor_value(pipeline, PRODUCTS)


def run(environment: Environment, *, full_refresh: bool = False) -> PipelineRun:
    """Load new audit rows (or, with `full_refresh`, all of them) into the warehouse.

    The summary also names the warehouse columns the source table no longer has
    (`dropped_columns`: NULL in every row this run loaded); the flows report them.
    """
    return execute(environment, SPEC, full_refresh=full_refresh)
