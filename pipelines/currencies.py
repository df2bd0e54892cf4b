"""Currencies: OXR `currencies.json` -> `DLT.OPEN_EXCHANGE_RATES.CURRENCIES` (replace)."""

from __future__ import annotations

import json

from dlt.common.pipeline import LoadInfo

from pipelines.environment import current_environment
from pipelines.runner import extract_normalize_load, load_summary, make_pipeline
from sources.currencies import currencies

PIPELINE_NAME = "currencies"
DATASET_NAME = "open_exchange_rates"


def run() -> LoadInfo:
    """Load the currency list into the warehouse of the current environment."""
    pipeline = make_pipeline(PIPELINE_NAME, current_environment().warehouse(), DATASET_NAME)
    return extract_normalize_load(pipeline, currencies())


if __name__ == "__main__":
    print(json.dumps(load_summary(run()), indent=2, default=str))
