"""Every pipeline, by its dlt name: the specs `runner.execute` runs (pipelines/spec.py)."""

from __future__ import annotations

from pipelines import currencies, exchange_rates, products
from pipelines.spec import PipelineSpec

PIPELINES: dict[str, PipelineSpec] = {
    spec.name: spec for spec in (currencies.SPEC, exchange_rates.SPEC, products.SPEC)
}
