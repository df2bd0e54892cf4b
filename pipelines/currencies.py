"""Currencies: OXR `currencies.json` -> `DLT.OPEN_EXCHANGE_RATES.CURRENCIES` (replace)."""

from __future__ import annotations

from dlt.common.pipeline import LoadInfo

from pipelines.environment import Environment
from pipelines.names import CURRENCIES_PIPELINE
from pipelines.runner import extract_normalize_load, make_pipeline, persist_run_audit
from sources.currencies import currencies

PIPELINE_NAME = CURRENCIES_PIPELINE
DATASET_NAME = "open_exchange_rates"


def run(environment: Environment) -> LoadInfo:
    """Load the currency list into the environment's warehouse."""
    pipeline = make_pipeline(PIPELINE_NAME, environment.warehouse(), DATASET_NAME)
    return extract_normalize_load(pipeline, currencies(), load_lock=environment.warehouse_lock)


def persist_audit(environment: Environment, load_info: LoadInfo) -> LoadInfo:
    """This run's load info and trace into `_load_info` / `_trace` beside the table."""
    return persist_run_audit(load_info, load_lock=environment.warehouse_lock)
