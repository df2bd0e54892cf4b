"""Every pipeline, by its dlt name: the one list the rest of the project derives from.

`runner.execute` runs these specs (pipelines/spec.py); from the same list come the Prefect
limits (infra/prefect_setup.py), the flows and their timeouts (flows/, pipelines/timeouts.py),
the CLI's `run` choices and up-front checks, `verify`'s checks of every application table, the
local stack's seeding, and the checks that prefect.yaml deploys each flow exactly once and that
every deployment alerts (tests/test_registry.py). Adding a pipeline: docs/architecture.md.
"""

from __future__ import annotations

from pipelines import currencies, exchange_rates, products
from pipelines.spec import FlowSpec, PipelineSpec

PIPELINES: dict[str, PipelineSpec] = {
    spec.name: spec for spec in (currencies.SPEC, exchange_rates.SPEC, products.SPEC)
}

# Not a pipeline: the daily check of what users read (verify/), deployed and timed
# like one.
VERIFY_FLOW = FlowSpec(
    "data-freshness",
    "Verify tables, row counts, freshness and duplicate keys; fail (and alert) if not",
    ("verify_warehouse",),
)
VERIFY_TASK_TIMEOUTS = {"verify_warehouse": 600.0}


def pipeline_flows() -> dict[str, tuple[PipelineSpec, FlowSpec]]:
    """Every pipeline flow by its name, with the pipeline it runs."""
    return {flow.name: (spec, flow) for spec in PIPELINES.values() for flow in spec.flows}


def all_flows() -> dict[str, FlowSpec]:
    """Every flow the project deploys, by name (the pipelines' and `data-freshness`)."""
    named = {name: flow for name, (_, flow) in pipeline_flows().items()}
    return {**named, VERIFY_FLOW.name: VERIFY_FLOW}


def task_timeouts() -> dict[str, float]:
    """The default seconds of one attempt of every task, by its timeout key."""
    defaults: dict[str, float] = dict(VERIFY_TASK_TIMEOUTS)
    for spec in PIPELINES.values():
        defaults.update(spec.task_timeouts)
    return defaults


def application_tables() -> list[PipelineSpec]:
    """The pipelines that copy an application table (PostgreSQL), in registry order."""
    return [spec for spec in PIPELINES.values() if spec.table is not None]


def by_command_name(command_name: str) -> PipelineSpec:
    """The pipeline `data-pipelines run <command_name>` names (`exchange-rates`, ...)."""
    return next(spec for spec in PIPELINES.values() if spec.command_name == command_name)
