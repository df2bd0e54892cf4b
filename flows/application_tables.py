"""The flows of every application table in the registry: `<name>-daily`, `<name>-full-refresh`.

Generated from `pipelines.registry`, one pair per `application_table_pipeline` spec, so a new
table needs no flow code: each becomes a module attribute (`products_daily_flow`, ...) that
prefect.yaml names as its entrypoint (`flows/application_tables.py:products_daily_flow`);
Prefect imports this module to load it. Each flow runs one task, `load-<name>`, with the shared
retry policy and the task's timeout (`[data_pipelines.timeouts] load_<name>`).
"""

from __future__ import annotations

from typing import Any

from prefect import Flow, Task, flow

from environments import load_environment
from flows.pipeline_flow import pipeline_flow
from flows.reporting import finish_flow, run_pipeline
from flows.retry_policy import pipeline_task
from pipelines.environment import Environment
from pipelines.pipeline_run import RunSummary
from pipelines.registry import application_tables
from pipelines.runner import execute
from pipelines.spec import FlowSpec, PipelineSpec


def flow_attribute(flow_name: str) -> str:
    """The attribute prefect.yaml's entrypoint names: `products-daily` -> `products_daily_flow`."""
    return flow_name.replace("-", "_") + "_flow"


def _load_task(spec: PipelineSpec) -> Task[Any, RunSummary]:
    assert spec.table is not None
    source = f"{spec.table.schema_name}.{spec.table.table_name}"

    @pipeline_task(f"load-{spec.name.replace('_', '-')}", dlt_pipeline=spec.name)
    def load(environment: Environment, full_refresh: bool = False) -> RunSummary:
        """Run the pipeline (incremental, or a full reload) and return its summary."""
        kind = "full refresh" if full_refresh else "incremental"
        return run_pipeline(
            f"Loading {spec.name} from PostgreSQL {source} ({kind})",
            lambda: execute(environment, spec, full_refresh=full_refresh),
        )

    return load


def _table_flow(spec: PipelineSpec, flow_spec: FlowSpec, load: Task[Any, RunSummary]) -> Flow:
    full_refresh = flow_spec.command == "full-refresh"

    def run() -> dict[str, Any]:
        environment = load_environment()
        return finish_flow(flow_spec.name, [load(environment, full_refresh=full_refresh)])

    run.__name__ = run.__qualname__ = flow_attribute(flow_spec.name)
    run.__doc__ = flow_spec.description
    return pipeline_flow(flow(run, name=flow_spec.name, description=flow_spec.description))


def table_flows(spec: PipelineSpec) -> dict[str, Flow]:
    """The flows of one application table's pipeline, by module attribute name."""
    load = _load_task(spec)
    return {flow_attribute(f.name): _table_flow(spec, f, load) for f in spec.flows}


for _spec in application_tables():
    globals().update(table_flows(_spec))
