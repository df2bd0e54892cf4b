"""Currencies: OXR `currencies.json` -> `DLT.OPEN_EXCHANGE_RATES.CURRENCIES` (replace)."""

from __future__ import annotations

import dlt
from dlt.destinations.exceptions import DatabaseUndefinedRelation

from pipelines.environment import Environment
from pipelines.names import CURRENCIES_PIPELINE
from pipelines.pipeline_run import PipelineRun
from pipelines.runner import RunContext, execute
from pipelines.spec import FlowSpec, PipelineSpec
from sources.currencies import currencies
from sources.exchange_rates import check_configured_key

PIPELINE_NAME = CURRENCIES_PIPELINE
DATASET_NAME = "open_exchange_rates"
TABLE_NAME = "currencies"


def current_row_count(pipeline: dlt.Pipeline) -> int | None:
    """Rows in the CURRENCIES table this run will replace; None before the first load.

    The source refuses an answer that would shrink the table too much, but a source knows no
    destination: the count is read here and passed in.
    """
    try:
        with pipeline.sql_client() as client:
            table = client.make_qualified_table_name(TABLE_NAME)
            rows = client.execute_sql(f"select count(*) from {table}")
    except DatabaseUndefinedRelation:
        return None
    return int(rows[0][0]) if rows else None


def _extract_load(context: RunContext) -> None:
    with context.locked():
        previous = current_row_count(context.pipeline)
    context.load(currencies(previous_count=previous))


SPEC = PipelineSpec(
    name=PIPELINE_NAME,
    dataset=DATASET_NAME,
    extract_load=_extract_load,
    check=lambda environment: check_configured_key(),
    task_timeouts={"load_currencies": 600},
    flows=(
        FlowSpec(
            "currencies-weekly",
            "Load OXR currencies.json into OPEN_EXCHANGE_RATES.CURRENCIES",
            ("load_currencies",),
            command="run",
        ),
    ),
)


def run(environment: Environment) -> PipelineRun:
    """Load the currency list into the environment's warehouse."""
    return execute(environment, SPEC)
